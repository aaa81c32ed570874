"""Thoracic anatomy from HU alone: body, lungs (per side), airways, hemithoraces, outside air.

The heavy morphology runs on an in-plane down-sampled copy (about 1.7 mm pixels) and the lung
masks are refined at full resolution. Left and right are patient sides, read from the volume's
affine (LPS: +x of patient space is the patient's left), never from image columns.

On a CT with a pneumothorax, ``lungs`` holds every aerated intrathoracic voxel connected to the
lungs, pleural air included; ``hemithorax_*`` is the pleural cavity (lung + pleural space) that a
pneumothorax share is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.geometry import head_step, voxel_volume_ml
from ptx_annotator.volume import Volume

#: Voxels below this HU count as air-filled (lung parenchyma, airways, pleural or outside air).
AIR_HU = -400
#: Voxels below this HU are the open lumen of the trachea and bronchi.
AIRWAY_LUMEN_HU = -900
#: Target in-plane pixel size (mm) of the down-sampled grid the morphology works on.
WORK_PIXEL_MM = 1.7
#: Radius (mm) of the in-plane closing that turns a lung into its hemithorax.
HEMITHORAX_CLOSING_MM = 12.0
#: An air component smaller than this share of the largest one is not a lung (bowel gas, artefacts).
MIN_LUNG_SHARE = 0.2
MIN_LUNG_ML = 50.0
#: How far below the carina (mm) the main bronchi are followed.
CARINA_DEPTH_MM = 40.0
#: A branch at the carina has at least this share of the trachea's lumen area just above it.
CARINA_BRANCH_SHARE = 0.2

_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


@dataclass
class ThoraxAnatomy:
    """Boolean (z, y, x) masks of the thorax on the CT's own grid."""

    body: np.ndarray
    lungs: np.ndarray
    lung_right: np.ndarray
    lung_left: np.ndarray
    airways: np.ndarray
    hemithorax_right: np.ndarray
    hemithorax_left: np.ndarray
    outside_air: np.ndarray

    def lung(self, side: str) -> np.ndarray:
        """The lung of ``side`` ('right' or 'left', patient sides)."""
        return {"right": self.lung_right, "left": self.lung_left}[_check_side(side)]

    def hemithorax(self, side: str) -> np.ndarray:
        """The pleural cavity of ``side`` ('right' or 'left', patient sides)."""
        return {"right": self.hemithorax_right, "left": self.hemithorax_left}[_check_side(side)]

    @property
    def hemithoraces(self) -> np.ndarray:
        return self.hemithorax_right | self.hemithorax_left


def _check_side(side: str) -> str:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left' (patient sides), not {side!r}")
    return side


def patient_axis_coordinate(affine: np.ndarray, shape, axis: int) -> np.ndarray:
    """Patient coordinate (mm, LPS axis 0=L, 1=P, 2=S) of every voxel, broadcastable to ``shape``."""
    affine = np.asarray(affine, dtype=float)
    z = np.arange(shape[0], dtype=np.float32)[:, None, None] * affine[axis, 0]
    y = np.arange(shape[1], dtype=np.float32)[None, :, None] * affine[axis, 1]
    x = np.arange(shape[2], dtype=np.float32)[None, None, :] * affine[axis, 2]
    return (z + y + x + affine[axis, 3]).astype(np.float32)


def left_coordinate(affine: np.ndarray, shape) -> np.ndarray:
    """Patient-left coordinate (mm) of every voxel, broadcastable to ``shape``."""
    return patient_axis_coordinate(affine, shape, 0)


def segment_thorax(volume: Volume) -> ThoraxAnatomy:
    """Segment body, lungs, airways and hemithoraces of a chest CT.

    Parameters
    ----------
    volume : Volume
        An axial chest CT in HU.

    Returns
    -------
    ThoraxAnatomy
        Boolean masks on the volume's (z, y, x) grid.
    """
    hu = volume.hu
    factor = max(1, int(round(WORK_PIXEL_MM / max(min(volume.spacing[1:]), 1e-3))))
    small = _block_mean(hu, factor)
    pixel_mm = (volume.spacing[1] * factor, volume.spacing[2] * factor)
    small_affine = np.array(volume.affine, dtype=float)
    small_affine[:3, 1:3] *= factor
    small_affine[:3, 3] += (factor - 1) / 2 * (volume.affine[:3, 1] + volume.affine[:3, 2])

    body_s = _body(small)
    air_s = (small < AIR_HU) & body_s
    airways_s = _airways(small, body_s, small_affine, pixel_mm, volume.spacing[0])
    lung_r_s, lung_l_s = _lungs(air_s & ~ndi.binary_dilation(airways_s, _IN_PLANE_4), small_affine,
                                voxel_volume_ml(small_affine))
    hemi_r_s = _hemithorax(lung_r_s, body_s, pixel_mm)
    hemi_l_s = _hemithorax(lung_l_s, body_s, pixel_mm) & ~hemi_r_s

    shape = hu.shape
    body = _upsample(body_s, factor, shape)
    air = hu < AIR_HU
    airways = _upsample(airways_s, factor, shape) & (hu < -500)
    lung_right = _refine_lung(lung_r_s, air & ~airways, factor, shape) & ~airways
    lung_left = _refine_lung(lung_l_s, air & ~airways, factor, shape) & ~(lung_right | airways)
    hemithorax_right = (_upsample(hemi_r_s, factor, shape) | lung_right) & ~(airways | lung_left)
    hemithorax_left = (_upsample(hemi_l_s, factor, shape) | lung_left) & ~(hemithorax_right | airways)
    outside_air = ~body & air
    return ThoraxAnatomy(body=body, lungs=lung_right | lung_left, lung_right=lung_right, lung_left=lung_left,
                         airways=airways, hemithorax_right=hemithorax_right, hemithorax_left=hemithorax_left,
                         outside_air=outside_air)


def _block_mean(hu: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return hu.astype(np.float32)
    z, y, x = hu.shape
    ny, nx = y // factor, x // factor
    cropped = hu[:, : ny * factor, : nx * factor].astype(np.float32)
    return cropped.reshape(z, ny, factor, nx, factor).mean(axis=(2, 4))


def _upsample(mask: np.ndarray, factor: int, shape) -> np.ndarray:
    if factor == 1:
        return mask.copy()
    big = np.repeat(np.repeat(mask, factor, axis=1), factor, axis=2)
    out = np.zeros(shape, dtype=bool)
    out[:, : big.shape[1], : big.shape[2]] = big
    return out


def _body(small: np.ndarray) -> np.ndarray:
    """The patient: the largest soft-tissue component per slice, holes filled (drops the table)."""
    tissue = small > -500
    tissue = ndi.binary_opening(tissue, _IN_PLANE_4, iterations=2)
    labels, _ = ndi.label(tissue, _IN_PLANE_4)
    largest = np.zeros(tissue.shape[0], dtype=labels.dtype)
    for z in range(tissue.shape[0]):
        sizes = np.bincount(labels[z].ravel())
        sizes[0] = 0
        largest[z] = int(np.argmax(sizes)) if sizes.size > 1 else 0
    body = (labels == largest[:, None, None]) & (labels > 0)
    return fill_slice_holes(body)


def _airways(small, body, affine, pixel_mm, z_mm) -> np.ndarray:
    """Trachea and main bronchi: tracked slice by slice downwards from the trachea at the top."""
    up = head_step(affine)
    order = range(small.shape[0] - 1, -1, -1) if up > 0 else range(small.shape[0])
    lumen = (small < AIRWAY_LUMEN_HU) & body
    pixel_cm2 = pixel_mm[0] * pixel_mm[1] / 100.0
    left = left_coordinate(affine, small.shape[:1] + small.shape[1:])
    airways = np.zeros_like(lumen)
    previous = None
    max_component_cm2 = 8.0
    carina_z, max_slices_below_carina = None, int(round(CARINA_DEPTH_MM / z_mm))
    for z in order:
        labels, n = ndi.label(lumen[z])
        if n == 0:
            if previous is not None:
                break
            continue
        areas = np.bincount(labels.ravel()) * pixel_cm2
        if previous is None:
            seed = _trachea_seed(labels, n, areas, body[z], left[z] if left.shape[0] > 1 else left[0])
            if seed is None:
                continue
            current = labels == seed
        else:
            near = ndi.binary_dilation(previous, iterations=2)
            touched = np.unique(labels[near & (labels > 0)])
            previous_cm2 = previous.sum() * pixel_cm2
            overlap = ndi.sum(near, labels, touched) * pixel_cm2 if touched.size else []
            # an airway continues the lumen above it: mostly overlapping it, never much wider
            keep = [i for i, shared in zip(touched, overlap)
                    if areas[i] <= min(max_component_cm2, 1.5 * previous_cm2 + 0.5) and shared >= 0.3 * areas[i]]
            # a lumen merged with neighbouring air (pleural air beside a bronchus): keep only
            # its part that continues the lumen above
            merged = [i for i in touched if i not in keep and areas[i] > max_component_cm2 / 4]
            if not keep and not merged:
                break
            # the carina: two bronchi of real size (a speck of oesophageal air beside the trachea is not one)
            if carina_z is None and sum(areas[i] >= CARINA_BRANCH_SHARE * previous_cm2 for i in keep) >= 2:
                carina_z = z
            if carina_z is not None and abs(z - carina_z) > max_slices_below_carina:
                break
            current = np.isin(labels, keep)
            if merged:
                current |= np.isin(labels, merged) & ndi.binary_dilation(previous)
        airways[z] = current
        previous = current
    return airways


def _trachea_seed(labels, n, areas, body_slice, left_mm) -> int | None:
    """The roughly round 0.8-8 cm² air blob nearest the body's left-right middle."""
    if not body_slice.any():
        return None
    middle = float(left_mm[body_slice].mean()) if left_mm.ndim == 2 else float(np.mean(left_mm))
    best, best_offset = None, 30.0
    centres = ndi.mean(np.broadcast_to(left_mm, labels.shape), labels, range(1, n + 1))
    for i in range(1, n + 1):
        if not 0.8 <= areas[i] <= 8.0:
            continue
        offset = abs(float(centres[i - 1]) - middle)
        if offset < best_offset:
            best, best_offset = i, offset
    return best


def _lungs(air: np.ndarray, affine: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, np.ndarray]:
    """Right and left lungs (patient sides) from the intrathoracic air without the airways."""
    labels, n = ndi.label(air)
    if n == 0:
        empty = np.zeros_like(air)
        return empty, empty.copy()
    sizes = np.bincount(labels.ravel()).astype(float)
    sizes[0] = 0
    largest = sizes.max()
    keep = [i for i in range(1, n + 1) if sizes[i] >= max(MIN_LUNG_SHARE * largest, MIN_LUNG_ML / voxel_ml)]
    left = left_coordinate(affine, air.shape)
    lungs = np.isin(labels, keep)
    if not lungs.any():
        empty = np.zeros_like(air)
        return empty, empty.copy()
    midline = _midline(lungs, left)
    centres = ndi.mean(np.broadcast_to(left, air.shape), labels, keep)
    sides = {i: ("left" if c > midline else "right") for i, c in zip(keep, centres)}
    if len(set(sides.values())) == 2 and len(keep) >= 2:
        right = np.isin(labels, [i for i in keep if sides[i] == "right"])
        left_lung = np.isin(labels, [i for i in keep if sides[i] == "left"])
        joined = [i for i in keep if _straddles(labels == i, left, midline)]
        for i in joined:  # one component holding both lungs (joined at the anterior junction)
            component = labels == i
            right |= component & (left <= midline)
            left_lung &= ~(component & (left <= midline))
            left_lung |= component & (left > midline)
            right &= ~(component & (left > midline))
        return _fill_slices(right), _fill_slices(left_lung)
    return _fill_slices(lungs & (left <= midline)), _fill_slices(lungs & (left > midline))


def _midline(lungs: np.ndarray, left: np.ndarray) -> float:
    """Left-right coordinate between the two lungs: the emptiest column band near the centre."""
    coordinates = np.broadcast_to(left, lungs.shape)[lungs]
    lo, hi = np.percentile(coordinates, [2, 98])
    bins = np.linspace(lo, hi, 41)
    counts, _ = np.histogram(coordinates, bins)
    centre = slice(12, 29)  # middle ~40% of the lung field
    k = int(np.argmin(counts[centre])) + centre.start
    return float((bins[k] + bins[k + 1]) / 2)


def _straddles(component: np.ndarray, left: np.ndarray, midline: float) -> bool:
    coordinates = np.broadcast_to(left, component.shape)[component]
    share_left = float(np.mean(coordinates > midline))
    return 0.15 < share_left < 0.85


def fill_slice_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every axial slice of a boolean (z, y, x) mask (fast: one labelling)."""
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    ys = np.nonzero(mask.any(axis=(0, 2)))[0]
    xs = np.nonzero(mask.any(axis=(0, 1)))[0]
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    crop = mask[zs[0]: zs[-1] + 1, ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1]
    padded = np.pad(crop, ((0, 0), (1, 1), (1, 1)))
    labels, _ = ndi.label(~padded, _IN_PLANE_4)
    outside = labels == labels[:, :1, :1]
    out[zs[0]: zs[-1] + 1, ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1] = ~outside[:, 1:-1, 1:-1]
    return out


_fill_slices = fill_slice_holes


def _refine_lung(lung_small, air, factor, shape) -> np.ndarray:
    """Full-resolution lung: air inside the slightly grown coarse lung, vessels filled per slice."""
    if not lung_small.any():
        return np.zeros(shape, dtype=bool)
    zone = _upsample(ndi.binary_dilation(lung_small, _IN_PLANE_4), factor, shape)
    return _fill_slices(zone & air)


def _hemithorax(lung: np.ndarray, body: np.ndarray, pixel_mm) -> np.ndarray:
    """The pleural cavity of one side: the lung closed in-plane over the chest wall's curve."""
    radius = HEMITHORAX_CLOSING_MM / float(np.mean(pixel_mm))
    out = np.zeros_like(lung)
    pad = int(np.ceil(radius)) + 2
    for z in np.nonzero(lung.any(axis=(1, 2)))[0]:
        ys, xs = np.nonzero(lung[z])
        y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, lung.shape[1])
        x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, lung.shape[2])
        tile = lung[z, y0:y1, x0:x1]
        grown = ndi.distance_transform_edt(~tile) <= radius
        closed = ndi.distance_transform_edt(grown) > radius
        out[z, y0:y1, x0:x1] = closed | tile
    return fill_slice_holes(out) & body
