"""Re-acquire a (simulated) CT: another slice thickness, more noise (low dose), a smoother or sharper kernel.

:func:`reacquire` turns one CT and its masks into what another protocol would have recorded:

* ``slice_mm`` (0.6-8 mm): each new slice averages the old ones over its thickness (a box
  profile: partial volume, so a thin rim on 8 mm slices reads above pure air) and is sampled at
  a new spacing equal to its thickness; masks (booleans, or the shares of each voxel they cover)
  are averaged the same way and kept where at least half of the new voxel is covered
  (:data:`ptx_annotator.synthetic.slab.COVERED_SHARE`, the one truth rule). Thinner than the
  source is interpolation (linear), not information: it tests a proposer on thin-slice geometry, not thin-slice detail.
* ``noise_hu``: added correlated noise of this SD (a low-dose series has 30-80 HU).
* ``kernel``: ``smooth`` (Gaussian, sigma 0.8 pixel), ``standard`` (unchanged) or ``sharp``
  (unsharp masking: edges and noise enhanced, as a lung kernel does).

The new Volume has no DICOM source files (its slices are new) and a warning naming the protocol.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.synthetic.slab import COVERED_SHARE
from ptx_annotator.volume import Volume

KERNELS = ("smooth", "standard", "sharp")
SLICE_MM_RANGE = (0.6, 8.0)
#: Added noise beyond this SD (HU) is no CT protocol.
NOISE_HU_MAX = 500.0
#: Gaussian sigma (pixels) of the smooth kernel and of the unsharp mask's blur.
SMOOTH_SIGMA_PX = 0.8
#: Weight of the edge term of the sharp kernel (output = image + weight x (image - blurred)).
SHARP_WEIGHT = 0.8


def reacquire(volume: Volume, masks: dict | None = None, slice_mm: float | None = None, noise_hu: float = 0.0,
              kernel: str = "standard", seed: int = 0) -> tuple[Volume, dict]:
    """``volume`` (and ``masks``, name -> (z, y, x) array) as another protocol would have recorded them."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
    if slice_mm is not None and not SLICE_MM_RANGE[0] <= slice_mm <= SLICE_MM_RANGE[1]:
        raise ValueError(f"slice_mm must be in [{SLICE_MM_RANGE[0]}, {SLICE_MM_RANGE[1]}] mm, not {slice_mm}")
    if not 0 <= noise_hu <= NOISE_HU_MAX:
        raise ValueError(f"noise_hu must be in [0, {NOISE_HU_MAX:g}] HU, not {noise_hu}")
    masks = {k: np.asarray(v) for k, v in (masks or {}).items() if v is not None}
    hu = volume.hu.astype(np.float32)
    affine = np.array(volume.affine, dtype=float)
    spacing = tuple(float(s) for s in volume.spacing)
    if slice_mm is not None and abs(slice_mm - spacing[0]) > 1e-3:
        positions = _new_positions(hu.shape[0], spacing[0], slice_mm)
        hu = _resample_z(hu, spacing[0], slice_mm, positions)
        masks = {k: _resample_z(m.astype(np.float32), spacing[0], slice_mm, positions) for k, m in masks.items()}
        affine[:3, 0] *= slice_mm / spacing[0]
        spacing = (float(slice_mm), spacing[1], spacing[2])
    rng = np.random.default_rng(seed)
    floor = float(volume.hu.min())
    padding = volume.hu == floor if hu.shape == volume.hu.shape else hu <= floor + 0.5
    if kernel == "smooth":
        hu = ndi.gaussian_filter(hu, (0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX))
    elif kernel == "sharp":
        hu = hu + SHARP_WEIGHT * (hu - ndi.gaussian_filter(hu, (0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX)))
    if noise_hu > 0:
        noise = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), (0, 0.7, 0.7))
        hu = hu + noise_hu * noise / max(float(noise.std()), 1e-6)
    hu = np.where(padding, floor, hu)
    if volume.hu.dtype.kind in "iu":
        info = np.iinfo(volume.hu.dtype)
        hu = np.rint(np.clip(hu, max(floor, info.min), info.max)).astype(volume.hu.dtype)
    protocol = {"slice_mm": spacing[0], "noise_hu": float(noise_hu), "kernel": kernel, "seed": seed}
    new = dataclasses.replace(volume, hu=hu, spacing=spacing, affine=affine, source_files=[], slice_uids=[],
                              warnings=list(volume.warnings) + [f"Re-acquired: {protocol}."])
    return new, {k: (np.asarray(m, dtype=np.float32) >= COVERED_SHARE).astype(np.uint8) for k, m in masks.items()}


def _new_positions(n: int, old_mm: float, new_mm: float) -> np.ndarray:
    """Centres (in old slice indices) of the new slices, covering the same extent."""
    extent = (n - 1) * old_mm
    count = max(int(np.floor(extent / new_mm)) + 1, 1)
    return np.arange(count) * new_mm / old_mm


def _resample_z(data: np.ndarray, old_mm: float, new_mm: float, positions: np.ndarray) -> np.ndarray:
    """Box-profile average over ``new_mm`` around each position, linear in between."""
    width = new_mm / old_mm
    if width > 1:
        data = ndi.uniform_filter1d(data, size=max(int(round(width)), 1), axis=0, mode="nearest")
    low = np.clip(np.floor(positions).astype(int), 0, data.shape[0] - 1)
    high = np.clip(low + 1, 0, data.shape[0] - 1)
    t = (positions - low).astype(np.float32)[:, None, None]
    return data[low] * (1 - t) + data[high] * t
