"""A procedural chest CT phantom with a simulated pneumothorax and its exact mask.

It needs no data files, so napari's sample data, demos and tests work on a fresh install.
Anatomy (all in realistic HU): air outside the body, subcutaneous fat, chest-wall muscle, ribs,
two lungs (parenchyma with a gravity gradient and branching vessels), mediastinum with heart and
aorta, trachea at the apex and a vertebral body. The pneumothorax is a crescent of free air
between the chest wall and the collapsed lung, anterior-lateral (non-dependent in a supine
patient), on the requested side. Array index 0 along z is the lung base; +x of the array is
patient left (LPS), as in the DICOM series this tool reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ptx_annotator.volume import Volume

AIR_HU = -1000.0
FAT_HU = -100.0
MUSCLE_HU = 45.0
BONE_HU = 750.0
BLOOD_HU = 40.0
LUNG_HU = -860.0

DEFAULT_SHAPE = (24, 192, 192)
DEFAULT_SPACING = (5.0, 1.5, 1.5)


@dataclass
class PhantomCase:
    """A phantom CT, its pneumothorax truth mask and the lung (parenchyma) mask."""

    volume: Volume
    truth: np.ndarray
    lungs: np.ndarray
    side: str
    fraction: float

    @property
    def truth_volume_ml(self) -> float:
        return float(self.truth.sum()) * self.volume.voxel_volume_ml


def phantom_affine(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING) -> np.ndarray:
    """A (z, y, x index to LPS mm) affine of an axial scan centred on the patient."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    affine = np.eye(4)
    affine[:3, :3] = [[0, 0, sx], [0, sy, 0], [sz, 0, 0]]
    affine[:3, 3] = [-(nx - 1) * sx / 2.0, -(ny - 1) * sy / 2.0, -(nz - 1) * sz / 2.0]
    return affine


def make_chest_phantom(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING, side: str = "right",
                       fraction: float = 0.3, seed: int = 0, noise_hu: float = 18.0) -> PhantomCase:
    """Build the phantom; the same arguments always give the same voxels.

    Parameters
    ----------
    shape, spacing : tuple
        Array shape and voxel size in mm, both (z, y, x).
    side : {'right', 'left', 'none'}
        Patient side of the pneumothorax ('none' for a normal chest).
    fraction : float
        Share of that hemithorax's cross-section taken by free air (0 to 0.8).
    seed : int
        Seed of the noise and vessel layout.
    """
    if side not in ("right", "left", "none"):
        raise ValueError(f"side must be 'right', 'left' or 'none', not {side!r}.")
    if not 0.0 <= fraction <= 0.8:
        raise ValueError(f"fraction must lie in 0..0.8, not {fraction}.")
    nz, ny, nx = (int(n) for n in shape)
    sz, sy, sx = (float(s) for s in spacing)
    rng = np.random.default_rng(seed)
    # Physical coordinates (mm) from the image centre: X to patient left, Y to posterior.
    yy, xx = np.meshgrid((np.arange(ny) - (ny - 1) / 2.0) * sy, (np.arange(nx) - (nx - 1) / 2.0) * sx, indexing="ij")
    half_width = min(0.45 * nx * sx, 150.0)
    half_depth = min(0.42 * ny * sy, 110.0)
    vessel_seeds = {name: _vessel_seeds(rng) for name in ("right", "left")}
    hu = np.empty((nz, ny, nx), dtype=np.float32)
    truth = np.zeros((nz, ny, nx), dtype=np.uint8)
    lungs = np.zeros((nz, ny, nx), dtype=np.uint8)
    for z in range(nz):
        t = (z + 0.5) / nz  # 0 at the base, 1 at the apex
        slice_hu, slice_ptx, slice_lung = _chest_slice(
            xx, yy, t, half_width, half_depth, side, fraction, vessel_seeds, (sy + sx) / 2.0)
        hu[z], truth[z], lungs[z] = slice_hu, slice_ptx, slice_lung
    hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    np.clip(hu, -1024, 3071, out=hu)
    affine = phantom_affine((nz, ny, nx), (sz, sy, sx))
    digest = int(hashlib.sha1(repr((nz, ny, nx, sz, sy, sx, side, fraction, seed)).encode()).hexdigest()[:15], 16)
    volume = Volume(
        hu=np.round(hu).astype(np.int16),
        spacing=(sz, sy, sx),
        affine=affine,
        series_uid=f"2.25.{digest}",
        description=f"ptx-annotator chest phantom ({side} pneumothorax {fraction:.0%})" if side != "none"
        else "ptx-annotator chest phantom (no pneumothorax)",
        modality="CT",
        source="phantom",
    )
    return PhantomCase(volume=volume, truth=truth, lungs=lungs, side=side, fraction=fraction)


def _ellipse(xx, yy, cx, cy, ax, ay) -> np.ndarray:
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


def _vessel_seeds(rng: np.random.Generator, count: int = 70) -> np.ndarray:
    """Vessel positions in unit-disc coordinates (u, v), radius (mm) and drift along z."""
    radius = np.sqrt(rng.uniform(0.0, 0.85, count))
    angle = rng.uniform(0, 2 * np.pi, count)
    size = 0.8 + 2.6 * (1.0 - radius) ** 1.5  # thicker towards the hilum
    drift = rng.normal(0.0, 0.12, (count, 2))
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle), size, drift])


def _chest_slice(xx, yy, t, half_width, half_depth, side, fraction, vessel_seeds, pixel_mm):
    """One axial slice: (HU, pneumothorax mask, lung mask)."""
    out = np.full(xx.shape, AIR_HU, dtype=np.float32)
    body = _ellipse(xx, yy, 0.0, 0.0, half_width, half_depth)
    out[body] = FAT_HU
    muscle = _ellipse(xx, yy, 0.0, 0.0, half_width - 12.0, half_depth - 10.0)
    out[muscle] = MUSCLE_HU
    # Lung size along z: small at the apex, largest just above the base.
    extent = float(np.clip(1.0 - ((t - 0.42) / 0.68) ** 2, 0.0, 1.0)) ** 0.6
    spine_cy = half_depth - 38.0
    out[_ellipse(xx, yy, 0.0, spine_cy, 17.0, 15.0)] = BONE_HU * 0.55
    out[_ellipse(xx, yy, 0.0, spine_cy + 22.0, 6.0, 9.0)] = BONE_HU * 0.7  # spinous process
    _draw_ribs(out, xx, yy, half_width - 17.0, half_depth - 14.0, t)
    ptx = np.zeros(xx.shape, dtype=bool)
    lung_all = np.zeros(xx.shape, dtype=bool)
    if extent > 0.05:
        mediastinum = _ellipse(xx, yy, 0.0, -8.0, 22.0 + 14.0 * (1 - t), half_depth - 10.0)
        heart = _ellipse(xx, yy, 12.0, -20.0, 48.0, 42.0) if t < 0.55 else np.zeros(xx.shape, bool)
        for name, sign in (("right", -1.0), ("left", 1.0)):
            ax, ay = 0.40 * half_width * extent, 0.72 * half_depth * max(extent, 0.35)
            cx, cy = sign * (0.47 * half_width), 2.0
            cavity = _ellipse(xx, yy, cx, cy, ax, ay) & ~mediastinum & ~heart
            lung_cx, lung_cy, lung_ax, lung_ay = cx, cy, ax, ay
            if name == side and fraction > 0:
                k = float(np.sqrt(1.0 - fraction))  # collapsed lung: scaled, pushed posterior-medial
                lung_ax, lung_ay = ax * k, ay * k
                lung_cx = cx - sign * (ax - lung_ax) * 0.9
                lung_cy = cy + (ay - lung_ay) * 0.9
            lung = cavity & _ellipse(xx, yy, lung_cx, lung_cy, lung_ax, lung_ay)
            gradient = 70.0 * np.clip((yy - (cy - ay)) / (2 * ay), 0, 1)  # denser posteriorly (supine)
            out[cavity] = AIR_HU
            out[lung] = (LUNG_HU + gradient)[lung]
            vessels = _vessels(xx, yy, lung_cx, lung_cy, lung_ax, lung_ay, vessel_seeds[name], t, pixel_mm) & lung
            out[vessels] = BLOOD_HU - 60.0
            lung_all |= lung
            if name == side and fraction > 0:
                ptx |= cavity & ~lung
        out[mediastinum & muscle] = BLOOD_HU - 10.0
        out[heart] = BLOOD_HU
        out[_ellipse(xx, yy, 14.0, -5.0, 14.0, 14.0) & muscle] = BLOOD_HU + 10.0  # descending aorta region
    if t > 0.6:  # trachea in the upper chest
        out[_ellipse(xx, yy, 0.0, -10.0, 9.0, 8.0)] = AIR_HU
    return out, ptx.astype(np.uint8), lung_all.astype(np.uint8)


def _draw_ribs(out, xx, yy, ax, ay, t) -> None:
    """Rib cross-sections as small bony ovals spaced around the chest wall."""
    phase = 0.35 * t * 2 * np.pi / 12
    for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False) + phase:
        if np.sin(angle) > 0.85:  # no ribs over the spine itself
            continue
        cx, cy = ax * np.cos(angle), ay * np.sin(angle)
        out[_ellipse(xx, yy, cx, cy, 6.0, 4.5)] = BONE_HU


def _vessels(xx, yy, cx, cy, ax, ay, seeds, t, pixel_mm) -> np.ndarray:
    mask = np.zeros(xx.shape, dtype=bool)
    for u, v, size, du, dv in seeds:
        px = cx + (u + du * t) * ax
        py = cy + (v + dv * t) * ay
        radius = max(size, pixel_mm * 0.75)
        mask |= (xx - px) ** 2 + (yy - py) ** 2 <= radius**2
    return mask


def save_phantom(case: PhantomCase, folder) -> tuple[str, str]:
    """Write the phantom CT and its truth mask as NIfTI files; returns their paths (CT, truth)."""
    import os

    import nibabel as nib

    from ptx_annotator.io.volume_files import nifti_affine_from_lps, save_mask_nifti

    os.makedirs(folder, exist_ok=True)
    ct_path = os.path.join(folder, "phantom_ct.nii.gz")
    truth_path = os.path.join(folder, "phantom_truth.nii.gz")
    affine = nifti_affine_from_lps(case.volume.affine)
    image = nib.Nifti1Image(np.asarray(case.volume.hu, dtype=np.int16).transpose(2, 1, 0), affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, ct_path)
    save_mask_nifti(case.truth, case.volume.affine, truth_path)
    return ct_path, truth_path
