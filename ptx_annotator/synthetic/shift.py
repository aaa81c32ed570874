"""Mediastinal shift of a tension pneumothorax: the mediastinum pushed away from the pneumothorax side.

A smooth, seeded displacement field along the patient's left-right axis moves the mediastinum
(heart, great vessels, trachea: the soft tissue between the two pleural cavities, in front of the
spine) by ``shift_mm`` towards the other side. The chest wall, the spine and everything outside
the body stay put; in between (across both lungs) the displacement falls off smoothly, so the
pneumothorax side is stretched and the opposite lung is compressed, and compressed lung gets
denser as its tissue mass is kept.

The field is ``shift_mm * D_fixed / (D_fixed + D_core)``, ``D`` being distances to the fixed
tissue and to the mediastinum's core, measured with the left-right axis counted short so that the
displacement never changes faster than :data:`MAX_STRAIN` per mm along it (no tissue is folded
over); a seeded smooth variation of +-:data:`IRREGULARITY` makes each shift its own. The CT is
resampled along the field (linear), and every mask (the truth or its air shares, the fluid, the
thorax anatomy) by the nearest source voxel, so all masks move together and keep their relations
exactly (a pneumothorax stays inside its hemithorax, masks that did not overlap still do not).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.anatomy import ThoraxAnatomy, left_coordinate, patient_axis_coordinate
from ptx_annotator.synthetic.shape import fit_shape, smooth_noise
from ptx_annotator.volume import Volume

#: Shifts accepted (mm): a tension pneumothorax moves the mediastinum by up to a few cm.
SHIFT_MM_RANGE = (1.0, 40.0)
#: The mediastinum this far (mm) from the fixed tissue moves by the full shift.
CORE_MM = 8.0
#: Largest change of the displacement per mm along the left-right axis (1 would fold tissue over).
MAX_STRAIN = 0.4
#: Seeded smooth variation of the shift (relative SD) and its smoothing scale (mm).
IRREGULARITY = 0.1
IRREGULARITY_MM = 60.0
#: In-plane pixel (mm) of the coarse grid the field is computed on.
FIELD_PIXEL_MM = 3.0
#: Bone (HU) of the spine, which stays put, within this distance (mm) of the midline.
BONE_HU = 200.0
SPINE_HALF_WIDTH_MM = 15.0
#: Compressed lung is not made denser than this (HU).
MAX_COMPRESSED_HU = -200.0


@dataclass
class MediastinalShift:
    """A shifted CT, its masks and anatomy moved by the same field, and the options used."""

    volume: Volume
    masks: dict
    anatomy: ThoraxAnatomy
    displacement_mm: np.ndarray  # (z, y, x) float32, towards patient left when positive
    options: dict


def shift_mediastinum(volume: Volume, anatomy: ThoraxAnatomy, shift_mm: float, away_from: str, seed: int = 0,
                      masks: dict | None = None) -> MediastinalShift:
    """Push the mediastinum of ``volume`` ``shift_mm`` away from the ``away_from`` side.

    Parameters
    ----------
    volume : Volume
        A chest CT (usually with a simulated pneumothorax on ``away_from``).
    anatomy : ThoraxAnatomy
        Its thorax segmentation; returned moved with the CT.
    shift_mm : float
        How far (mm) the mediastinum moves, in :data:`SHIFT_MM_RANGE`.
    away_from : {'right', 'left'}
        The pneumothorax side; the mediastinum moves towards the other one.
    seed : int
        Seeds the smooth variation of the shift.
    masks : dict, optional
        name -> (z, y, x) masks (boolean, integer or float shares) to move with the CT.
    """
    if away_from not in ("right", "left"):
        raise ValueError(f"the mediastinum moves away from 'right' or 'left' (the pneumothorax side), not {away_from!r}")
    if not SHIFT_MM_RANGE[0] <= shift_mm <= SHIFT_MM_RANGE[1]:
        raise ValueError(f"mediastinal shift must be in [{SHIFT_MM_RANGE[0]:g}, {SHIFT_MM_RANGE[1]:g}] mm, "
                         f"not {shift_mm:g}")
    axis, mm_per_index = _left_right_axis(volume)
    towards = 1.0 if away_from == "right" else -1.0  # + is the patient's left
    field, core = displacement_field(volume, anatomy, shift_mm, axis, np.random.default_rng(seed))
    field *= towards
    strain = np.gradient(field, abs(mm_per_index), axis=axis) * np.sign(mm_per_index)  # d(shift)/d(left mm)
    stretch = 1.0 - strain  # source mm per new mm: > 1 where tissue is compressed
    shift_index = field / mm_per_index
    hu = _resample_along(volume.hu.astype(np.float32), shift_index, axis, linear=True)
    moved = {name: _move_mask(np.asarray(m), shift_index, axis) for name, m in (masks or {}).items()}
    new_anatomy = ThoraxAnatomy(**{f.name: _move_mask(getattr(anatomy, f.name), shift_index, axis)
                                   for f in dataclasses.fields(ThoraxAnatomy)})
    # compressed lung keeps its tissue mass: its excess over air grows with the compression
    lung = new_anatomy.lungs & (hu < MAX_COMPRESSED_HU) & (stretch > 1.0)
    for name in ("mask", "fluid"):
        if name in moved:
            lung &= ~(np.asarray(moved[name]) > 0)
    hu[lung] = np.minimum(-1000.0 + (hu[lung] + 1000.0) * stretch[lung], MAX_COMPRESSED_HU)
    if volume.hu.dtype.kind in "iu":
        info = np.iinfo(volume.hu.dtype)
        hu = np.rint(np.clip(hu, max(float(volume.hu.min()), info.min), info.max))
    hu = hu.astype(volume.hu.dtype)
    options = {"shift_mm": float(shift_mm), "away_from": away_from, "seed": int(seed),
               "core_shift_mm": round(float(np.median(np.abs(field[core]))) if core.any() else 0.0, 2),
               "min_stretch": round(float(stretch.min()), 3)}
    new_volume = dataclasses.replace(
        volume, hu=hu, description=f"{volume.description} + mediastinal shift {shift_mm:g} mm".strip(),
        warnings=list(volume.warnings) + [f"Simulated mediastinal shift of {shift_mm:g} mm away from the "
                                          f"{away_from} (seed {seed}); not a real finding."])
    return MediastinalShift(volume=new_volume, masks=moved, anatomy=new_anatomy, displacement_mm=field,
                            options=options)


def displacement_field(volume: Volume, anatomy: ThoraxAnatomy, shift_mm: float, axis: int,
                       rng) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned displacement (mm): ``shift_mm`` in the mediastinum's core, 0 in fixed tissue; and the core."""
    factor = max(1, int(round(FIELD_PIXEL_MM / max(min(volume.spacing[1:]), 1e-3))))
    small = (slice(None), slice(None, None, factor), slice(None, None, factor))
    affine = np.array(volume.affine, dtype=float)
    affine[:3, 1:3] *= factor
    spacing = np.array([volume.spacing[0], volume.spacing[1] * factor, volume.spacing[2] * factor], dtype=float)
    mediastinum, fixed = _regions(volume.hu[small], affine, anatomy.body[small], anatomy.hemithorax_right[small],
                                  anatomy.hemithorax_left[small])
    # the left-right axis counts short: along it the ramp from core to fixed tissue is long (no folding)
    metric = spacing.copy()
    metric[axis] *= min(1.0, CORE_MM * MAX_STRAIN / shift_mm)
    to_fixed = ndi.distance_transform_edt(~fixed, sampling=metric)
    core = mediastinum & (to_fixed >= CORE_MM)
    if not core.any():
        raise ValueError("no mediastinum found between the two lungs to shift (a chest CT with both lungs is needed)")
    to_core = ndi.distance_transform_edt(~core, sampling=metric)
    share = (to_fixed / np.maximum(to_fixed + to_core, 1e-6)).astype(np.float32)
    variation = 1.0 + IRREGULARITY * np.clip(smooth_noise(share.shape, spacing, IRREGULARITY_MM, rng), -2, 2)
    share *= variation / float(np.median(variation[core]))
    zoom = [n / s for n, s in zip(volume.shape, share.shape)]
    field = fit_shape(ndi.zoom(share, zoom, order=1), volume.shape)
    core_full = fit_shape(ndi.zoom(core.astype(np.uint8), zoom, order=0), volume.shape) > 0
    return (shift_mm * np.clip(field, 0.0, None)).astype(np.float32), core_full


def _regions(hu, affine, body, right, left_cavity) -> tuple[np.ndarray, np.ndarray]:
    """The mediastinum (moves) and the fixed tissue (chest wall, spine, outside the body) of one grid."""
    from skimage.morphology import convex_hull_image

    cavities = right | left_cavity
    both = right.any(axis=(1, 2)) & left_cavity.any(axis=(1, 2))
    hull = np.zeros(hu.shape, dtype=bool)
    for z in np.flatnonzero(both):
        hull[z] = convex_hull_image(cavities[z])
    posterior = np.broadcast_to(patient_axis_coordinate(affine, hu.shape, 1), hu.shape)
    left = np.broadcast_to(left_coordinate(affine, hu.shape), hu.shape)
    mediastinum = hull & body & ~cavities
    for z in np.flatnonzero(both):  # the spine (and what lies behind its front) stays put
        middle = float(np.mean(left[z][hull[z]]))
        bone = mediastinum[z] & (hu[z] > BONE_HU) & (np.abs(left[z] - middle) < SPINE_HALF_WIDTH_MM)
        bone &= posterior[z] > float(np.percentile(posterior[z][hull[z]], 50))
        if bone.any():
            mediastinum[z] &= posterior[z] < float(posterior[z][bone].min()) - 2.0
    return mediastinum, ~(mediastinum | cavities)


def _left_right_axis(volume: Volume) -> tuple[int, float]:
    """The in-plane index axis along the patient's left-right, and mm of patient-left per index step."""
    step = np.asarray(volume.affine, dtype=float)[0, :3]
    axis = 1 + int(np.argmax(np.abs(step[1:])))
    if abs(step[axis]) < 0.9 * float(np.linalg.norm(np.asarray(volume.affine, dtype=float)[:3, axis])):
        raise ValueError("the CT's rows are oblique to the patient's left-right axis; a mediastinal shift needs an "
                         "axial CT whose rows or columns run left-right")
    return axis, float(step[axis])


def _source_index(shift_index: np.ndarray, axis: int) -> np.ndarray:
    shape = [1, 1, 1]
    shape[axis] = shift_index.shape[axis]
    return np.arange(shift_index.shape[axis], dtype=np.float32).reshape(shape) - shift_index


def _resample_along(data: np.ndarray, shift_index: np.ndarray, axis: int, linear: bool) -> np.ndarray:
    """``data`` sampled at ``index - shift_index`` along ``axis`` (the pull-back of the displacement)."""
    source = np.clip(_source_index(shift_index, axis), 0, data.shape[axis] - 1)
    if not linear:
        return np.take_along_axis(data, np.rint(source).astype(np.intp), axis=axis)
    low = np.floor(source).astype(np.intp)
    high = np.minimum(low + 1, data.shape[axis] - 1)
    t = source - low
    return np.take_along_axis(data, low, axis=axis) * (1 - t) + np.take_along_axis(data, high, axis=axis) * t


def _move_mask(mask: np.ndarray, shift_index: np.ndarray, axis: int) -> np.ndarray:
    """A mask moved by the field: each voxel takes its nearest source voxel's value."""
    return _resample_along(mask, shift_index, axis, linear=False)
