"""Post-processing of model output: threshold, drop small components, fill small holes.

Two doors over the same rules:

* :func:`postprocess_mask` works on a whole volume ``(z, y, x)``: connected components are 3D
  (full 26-connectivity, so thin oblique air pockets across 5 mm slices stay one component) and
  sized in mm³ from the voxel spacing.
* :func:`postprocess_slice` works on one axial slice ``(y, x)`` inside the slice generator, where
  the neighbours are not known yet: components are 2D (8-connectivity) and sized in mm² from the
  in-plane spacing.

Holes are filled **slice-wise and only when small** (``max_hole_mm2``). A large pneumothorax can
wrap all the way round a collapsed lung in an axial slice or in 3D; unlimited hole filling would
paint that lung as air. Pinholes from noise inside a pleural air pocket are what we want gone.

When the CT slice is given, air **outside the patient** is dropped first (``drop_outside_air``):
a pneumothorax lies inside the chest wall, and a model that has seen little data calls the air
around the patient pleural air. "Inside" is everything enclosed by tissue (HU >= ``body_hu``)
after a small closing, so the lungs and any pleural air stay in; a slice on which the field of
view cuts through the chest wall loses what the cut opens to the outside (turn it off there).

Order: outside air -> threshold -> fill small holes -> drop small components. The parameters
travel with every proposal as :meth:`PostprocessParams.to_json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import ndimage

from ptx_annotator.geometry import bounding_box, voxel_volume_mm3

#: Components smaller than this (mm³) are dropped from a volume: 100 mm³ = 0.1 mL, far below a
#: clinically reported pneumothorax, but above isolated noise voxels (3.5 mm³ at 0.84x0.84x5 mm).
DEFAULT_MIN_COMPONENT_MM3 = 100.0
#: Components smaller than this (mm²) are dropped from one slice (about 28 px at 0.84 mm).
DEFAULT_MIN_COMPONENT_MM2 = 20.0
#: Enclosed holes up to this area (mm²) are filled; larger enclosed regions (a lung) are kept out.
DEFAULT_MAX_HOLE_MM2 = 100.0
#: Tissue (HU at or above this) encloses the inside of the patient; outside air is far below.
DEFAULT_BODY_HU = -500.0

_FULL_3D = np.ones((3, 3, 3), dtype=bool)
_FULL_2D = np.ones((3, 3), dtype=bool)


@dataclass
class PostprocessParams:
    """Settings of :func:`postprocess_mask` / :func:`postprocess_slice`, recorded with each proposal."""

    threshold: float = 0.5
    min_component_mm3: float = DEFAULT_MIN_COMPONENT_MM3
    min_component_mm2: float = DEFAULT_MIN_COMPONENT_MM2
    fill_holes: bool = True
    max_hole_mm2: float = DEFAULT_MAX_HOLE_MM2
    drop_outside_air: bool = True
    body_hu: float = DEFAULT_BODY_HU

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        for name in ("min_component_mm3", "min_component_mm2", "max_hole_mm2"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def to_json(self) -> dict:
        payload = asdict(self)
        payload.update(method="threshold+fill_small_holes_2d+drop_small_components",
                       connectivity_3d=26, connectivity_2d=8, comparison=">=")
        return payload

    @classmethod
    def from_json(cls, payload: dict) -> "PostprocessParams":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in names})

    def apply_volume(self, probability_or_mask: np.ndarray, spacing_zyx, hu: np.ndarray | None = None) -> np.ndarray:
        return postprocess_mask(probability_or_mask, spacing_zyx, threshold=self.threshold,
                                min_component_mm3=self.min_component_mm3, fill_holes=self.fill_holes,
                                max_hole_mm2=self.max_hole_mm2, hu=hu if self.drop_outside_air else None,
                                body_hu=self.body_hu)

    def apply_slice(self, probability_or_mask: np.ndarray, spacing_yx, hu: np.ndarray | None = None) -> np.ndarray:
        return postprocess_slice(probability_or_mask, spacing_yx, threshold=self.threshold,
                                 min_component_mm2=self.min_component_mm2, fill_holes=self.fill_holes,
                                 max_hole_mm2=self.max_hole_mm2, hu=hu if self.drop_outside_air else None,
                                 body_hu=self.body_hu)


def binarize(probability_or_mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask: floats are compared ``>= threshold``; integer and bool arrays mean ``!= 0``."""
    array = np.asarray(probability_or_mask)
    if array.dtype == bool:
        return array.copy()
    if np.issubdtype(array.dtype, np.floating):
        return array >= threshold
    return array != 0


def postprocess_mask(probability_or_mask: np.ndarray, spacing_zyx, threshold: float = 0.5,
                     min_component_mm3: float = DEFAULT_MIN_COMPONENT_MM3, fill_holes: bool = True,
                     max_hole_mm2: float = DEFAULT_MAX_HOLE_MM2, hu: np.ndarray | None = None,
                     body_hu: float = DEFAULT_BODY_HU) -> np.ndarray:
    """Threshold a ``(z, y, x)`` probability map (or clean a mask) into a uint8 mask.

    Parameters
    ----------
    probability_or_mask : ndarray, shape (z, y, x)
        Probabilities in [0, 1] (float) or a mask (bool / integer, non-zero = foreground).
    spacing_zyx : sequence of 3 floats
        Voxel size in mm, (z, y, x).
    threshold : float
        Probabilities ``>= threshold`` are foreground.
    min_component_mm3 : float
        3D components (26-connected) with a smaller volume are removed; 0 keeps all.
    fill_holes : bool
        Fill enclosed holes slice by slice, each up to ``max_hole_mm2``.
    hu : ndarray, shape (z, y, x), optional
        The CT in HU; when given, voxels outside the patient (see :func:`inside_patient`) are dropped.
    """
    mask = binarize(probability_or_mask, threshold)
    if mask.ndim != 3:
        raise ValueError(f"postprocess_mask expects a (z, y, x) array, got shape {mask.shape}")
    spacing = _spacing(spacing_zyx, 3)
    if hu is not None:
        _check_same_shape(hu, mask)
        for index in range(mask.shape[0]):
            if mask[index].any():
                mask[index] &= inside_patient(hu[index], body_hu)
    if fill_holes:
        pixel_mm2 = spacing[1] * spacing[2]
        for index in range(mask.shape[0]):
            if mask[index].any():
                mask[index] = _fill_small_holes(mask[index], max_hole_mm2 / pixel_mm2)
    if min_component_mm3 > 0:
        mask = _drop_small_components(mask, min_component_mm3 / voxel_volume_mm3(spacing), _FULL_3D)
    return mask.astype(np.uint8)


def postprocess_slice(probability_or_mask: np.ndarray, spacing_yx, threshold: float = 0.5,
                      min_component_mm2: float = DEFAULT_MIN_COMPONENT_MM2, fill_holes: bool = True,
                      max_hole_mm2: float = DEFAULT_MAX_HOLE_MM2, hu: np.ndarray | None = None,
                      body_hu: float = DEFAULT_BODY_HU) -> np.ndarray:
    """The per-slice variant of :func:`postprocess_mask` for one ``(y, x)`` slice.

    Components are 8-connected and sized in mm² from ``spacing_yx`` (in-plane spacing, mm).
    """
    mask = binarize(probability_or_mask, threshold)
    if mask.ndim != 2:
        raise ValueError(f"postprocess_slice expects a (y, x) array, got shape {mask.shape}")
    if hu is not None and mask.any():
        _check_same_shape(hu, mask)
        mask &= inside_patient(hu, body_hu)
    spacing = _spacing(spacing_yx, 2)
    pixel_mm2 = spacing[0] * spacing[1]
    if fill_holes and mask.any():
        mask = _fill_small_holes(mask, max_hole_mm2 / pixel_mm2)
    if min_component_mm2 > 0:
        mask = _drop_small_components(mask, min_component_mm2 / pixel_mm2, _FULL_2D)
    return mask.astype(np.uint8)


def inside_patient(hu_slice: np.ndarray, body_hu: float = DEFAULT_BODY_HU) -> np.ndarray:
    """Boolean ``(y, x)``: pixels enclosed by the patient's tissue (lungs and pleural air included).

    The patient is the largest 8-connected region of tissue (``hu >= body_hu``), so the scanner
    table and the arms stay out; a closing (3x3, twice) bridges thin gaps in its chest wall before
    the enclosed holes are filled. Air connected to the image border stays outside.
    """
    tissue = np.asarray(hu_slice) >= body_hu
    labels, count = ndimage.label(tissue, structure=_FULL_2D)
    if count == 0:
        return tissue
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    patient = np.pad(labels == int(np.argmax(sizes)), 2)
    closed = ndimage.binary_closing(patient, _FULL_2D, iterations=2) | patient
    return ndimage.binary_fill_holes(closed)[2:-2, 2:-2]


def _check_same_shape(hu: np.ndarray, mask: np.ndarray) -> None:
    if np.shape(hu) != mask.shape:
        raise ValueError(f"the CT given for the outside-air rule has shape {np.shape(hu)}, the mask {mask.shape}")


def _spacing(spacing, n: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in spacing)
    if len(values) != n or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be {n} positive numbers in mm, got {spacing}")
    return values


def _fill_small_holes(mask2d: np.ndarray, max_hole_pixels: float) -> np.ndarray:
    """Fill background regions not connected to the border whose area is at most ``max_hole_pixels``.

    Worked in the mask's bounding box grown by one pixel: the background ring round it reaches the
    border outside the box, so the holes inside are the same as over the whole slice, found faster.
    """
    box = bounding_box(mask2d, margin=1)
    if box is None:
        return mask2d
    part = mask2d[box]
    holes = ndimage.binary_fill_holes(part) & ~part
    if not holes.any():
        return mask2d
    labels, count = ndimage.label(holes)  # 4-connected holes: the complement of 8-connected foreground
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = sizes <= max_hole_pixels
    small[0] = False
    filled = mask2d.copy()
    filled[box] |= small[labels]
    return filled


def _drop_small_components(mask: np.ndarray, min_voxels: float, structure: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]
