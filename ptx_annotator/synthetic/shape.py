"""Where simulated pleural air gathers: a relative thickness field over the hemithorax.

Patient directions come from the affine (LPS), never from image axes. ``anterior`` is the
non-dependent side of a supine patient (from PatientPosition: prone puts the air posterior), so a
pneumothorax of a prone CT at ``location="anterior"`` gathers at the back, as air does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.volume import Volume

#: Where the air gathers: the direction (patient space) its thickness grows towards.
LOCATIONS = ("anterior", "apical", "basal", "lateral", "medial", "posterior", "diffuse")
#: Extents of a thin rim: the whole surface facing ``location``, or only the apex.
RIM_EXTENTS = ("surface", "apex")
#: Smoothing (mm) of the seed-dependent irregularity of the thickness.
IRREGULARITY_MM = 25.0
#: Smoothing (mm) of the adhesion patches that hold the lung to the wall (loculated pneumothorax).
ADHESION_MM = 10.0


def patient_coordinates(volume: Volume, box) -> np.ndarray:
    """LPS mm of every voxel of ``box``, shape (3, z, y, x)."""
    grids = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box], indexing="ij")
    affine = np.asarray(volume.affine, dtype=np.float32)
    return np.stack([affine[a, 0] * grids[0] + affine[a, 1] * grids[1] + affine[a, 2] * grids[2] + affine[a, 3]
                     for a in range(3)])


def nondependent_direction(volume: Volume) -> np.ndarray:
    """Unit LPS vector pointing up (away from the table) from the DICOM PatientPosition."""
    position = (volume.patient_position or "HFS").upper()
    if position.endswith("P"):  # prone: the back is up
        return np.array([0.0, 1.0, 0.0])
    if position.endswith("DR"):  # right side down: the left is up
        return np.array([1.0, 0.0, 0.0])
    if position.endswith("DL"):
        return np.array([-1.0, 0.0, 0.0])
    return np.array([0.0, -1.0, 0.0])  # supine (HFS, FFS, unknown): anterior is up


def location_direction(volume: Volume, side: str, location: str) -> np.ndarray | None:
    """Unit LPS vector the air gathers towards at ``location`` (None for ``diffuse``)."""
    if location not in LOCATIONS:
        raise ValueError(f"location must be one of {', '.join(LOCATIONS)}, not {location!r}")
    up = nondependent_direction(volume)
    lateral = np.array([-1.0, 0.0, 0.0]) if side == "right" else np.array([1.0, 0.0, 0.0])
    return {"anterior": up, "posterior": -up, "apical": np.array([0.0, 0.0, 1.0]),
            "basal": np.array([0.0, 0.0, -1.0]), "lateral": lateral, "medial": -lateral, "diffuse": None}[location]


def normalised_along(coords: np.ndarray, direction: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Position along ``direction`` scaled to [0, 1] over ``region`` (1st to 99th percentile)."""
    values = np.tensordot(direction.astype(np.float32), coords, axes=1)
    lo, hi = np.percentile(values[region], [1, 99])
    return np.clip((values - lo) / max(hi - lo, 1e-3), 0, 1).astype(np.float32)


def thickness_weight(volume: Volume, hemi: np.ndarray, box, side: str, location: str, bias: float,
                     apical_bias: float, rng) -> np.ndarray:
    """Relative air thickness over ``hemi``: larger towards ``location`` (and apically), smoothly irregular.

    ``bias`` in [0, 1] is how strongly the air gathers towards ``location``; ``apical_bias`` adds
    the apical gathering of an upright or supine lung (ignored for ``basal``).
    """
    coords = patient_coordinates(volume, box)
    direction = location_direction(volume, side, location)
    weight = np.ones(hemi.shape, dtype=np.float32)
    if direction is not None:
        weight *= 1 - bias + bias * normalised_along(coords, direction, hemi) ** 2
    if location not in ("basal", "apical") and apical_bias > 0:
        weight *= 1 - apical_bias + apical_bias * normalised_along(coords, np.array([0.0, 0.0, 1.0]), hemi) ** 2
    del coords
    weight *= np.exp(0.25 * smooth_noise(hemi.shape, volume.spacing, IRREGULARITY_MM, rng))
    return np.maximum(weight, 0.03).astype(np.float32)


def rim_region(volume: Volume, hemi: np.ndarray, box, side: str, location: str, extent: str) -> np.ndarray:
    """The part of the hemithorax a thin rim covers: the half facing ``location``, or the apex."""
    if extent not in RIM_EXTENTS:
        raise ValueError(f"rim extent must be one of {', '.join(RIM_EXTENTS)}, not {extent!r}")
    coords = patient_coordinates(volume, box)
    if extent == "apex":
        return normalised_along(coords, np.array([0.0, 0.0, 1.0]), hemi) >= 0.75
    direction = location_direction(volume, side, location)
    if direction is None:
        return np.ones(hemi.shape, dtype=bool)
    return normalised_along(coords, direction, hemi) >= 0.5


def adhesion_patches(shape, spacing, share: float, rng) -> np.ndarray:
    """Boolean patches (about ``share`` of the volume) where adhesions hold the lung to the wall."""
    if share <= 0:
        return np.zeros(shape, dtype=bool)
    noise = smooth_noise(shape, spacing, ADHESION_MM, rng)
    return noise < np.quantile(noise, share)


def smooth_noise(shape, spacing, scale_mm: float, rng) -> np.ndarray:
    """Unit-SD noise smoothed over ``scale_mm``, made on a coarse grid and zoomed up (fast)."""
    sigma = scale_mm / np.asarray(spacing, dtype=float)
    coarse = [max(n // 4, 2) for n in shape]
    noise = ndi.gaussian_filter(rng.standard_normal(coarse), sigma / 4, mode="wrap")
    noise = ndi.zoom(noise / max(float(noise.std()), 1e-6), [n / c for n, c in zip(shape, coarse)], order=1)
    return fit_shape(noise, shape).astype(np.float32)


def fit_shape(array: np.ndarray, shape) -> np.ndarray:
    """``array`` cropped or edge-extended to ``shape``."""
    out = np.zeros(shape, dtype=array.dtype)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(array.shape, shape))
    out[sl] = array[sl]
    for axis in range(3):  # repeat the last plane where zoom came out short
        n = array.shape[axis]
        if n < shape[axis]:
            index = [slice(None)] * 3
            index[axis] = slice(n, None)
            source = [slice(None)] * 3
            source[axis] = slice(n - 1, n)
            out[tuple(index)] = out[tuple(source)]
    return out
