"""Pneumothorax size from a mask: volume in mL per side, hemithorax share, and the widest pleural rim.

Definitions
-----------
Side
    The one side rule of :mod:`ptx_annotator.geometry`: patient sides from the volume's affine,
    never from image columns. A pneumothorax voxel inside the right (left) hemithorax of
    :func:`ptx_annotator.anatomy.segment_thorax` is right (left); a voxel in neither is assigned by
    the mid-sagittal plane, the patient-left coordinate halfway between the two hemithorax
    centroids (or the body centroid when a hemithorax is missing).
Hemithorax share (Do et al. 2012)
    Pneumothorax volume of one side divided by that side's hemithorax volume, where the
    hemithorax is the pleural cavity (lung + pleural space) united with the pneumothorax voxels
    of that side, so the share lies in [0, 1].
Rim (the BTS "2 cm" rule, measured in 3D)
    The distance from the lung edge to the chest wall. The aerated lung is the anatomy's lung of
    that side minus the pneumothorax mask; the chest wall is every voxel that is neither aerated
    intrathoracic (the anatomy's lungs, pleural air included) nor pneumothorax: chest wall,
    diaphragm, mediastinum (the parietal pleura lines them all). A pneumothorax voxel with a face
    neighbour in the aerated lung lies on the visceral pleura; the rim there is the Euclidean
    distance in mm (anisotropic voxel spacing) from that voxel's centre to the nearest chest-wall
    voxel centre, i.e. the thickness of the air layer the lung edge has retracted by (n voxels of
    air across the gap measure n voxel steps). Measured from the lung edge, narrow recesses filled
    with air do not inflate it. ``max_rim_mm`` is the largest rim over both sides and
    ``max_rim_slice`` the z index (array order, 0-based) where it occurs. ``bts_large`` is
    ``max_rim_mm >= 20``. The BTS measures at the hilum on a chest X-ray; this 3D figure is the
    largest gap anywhere along the lung edge, apex included. Pleural air left out of the mask
    counts as lung, so an incomplete mask under-reads. A side whose lung is fully collapsed (no
    aerated lung left) has no rim (None) and a note. Mask voxels outside the body are counted in
    the volumes (with a note) but not in the rim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.errors import GeometryMismatchError
from ptx_annotator.geometry import SIDES, PatientSides, bounding_box, voxel_volume_ml
from ptx_annotator.volume import Volume

BTS_LARGE_RIM_MM = 20.0
#: Margin (mm) around a side's pneumothorax within which the nearest chest wall is searched first.
SEARCH_MARGIN_MM = 40.0


@dataclass
class Quantification:
    """The numbers of one mask. ``to_json()`` gives the documented JSON keys."""

    volume_ml: float
    volume_right_ml: float
    volume_left_ml: float
    hemithorax_share_right: float | None
    hemithorax_share_left: float | None
    max_rim_mm: float | None
    max_rim_slice: int | None
    bts_large: bool | None
    max_rim_side: str | None = None
    max_rim_index_zyx: list | None = None
    max_rim_position_lps_mm: list | None = None
    max_rim_right_mm: float | None = None
    max_rim_left_mm: float | None = None
    hemithorax_volume_right_ml: float | None = None
    hemithorax_volume_left_ml: float | None = None
    outside_hemithorax_ml: float = 0.0
    n_voxels: int = 0
    n_components: int = 0
    voxel_volume_ml: float = 0.0
    midline_left_mm: float | None = None
    orientation: str = ""
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def quantify(mask: np.ndarray, volume: Volume, anatomy=None) -> Quantification:
    """Measure a pneumothorax mask on its CT (see the module doc for the definitions).

    Parameters
    ----------
    mask : ndarray, shape (z, y, x)
        Non-zero voxels are pneumothorax.
    volume : Volume
        The CT the mask was drawn on.
    anatomy : ThoraxAnatomy, optional
        From :func:`ptx_annotator.anatomy.segment_thorax`; computed when not given (pass it in
        when measuring several masks of one CT).
    """
    mask = np.asarray(mask) > 0
    if mask.shape != volume.shape:
        raise GeometryMismatchError(f"The mask has shape {mask.shape} but the CT has {volume.shape}.")
    if anatomy is None:
        from ptx_annotator.anatomy import segment_thorax

        anatomy = segment_thorax(volume)
    voxel_ml = voxel_volume_ml(volume.affine)
    notes: list[str] = []
    patient_sides = PatientSides(anatomy, volume.affine, notes=notes)
    midline = patient_sides.midline
    sides = patient_sides.split(mask)
    hemithorax = {"right": anatomy.hemithorax_right, "left": anatomy.hemithorax_left}
    result = Quantification(
        volume_ml=float(mask.sum()) * voxel_ml,
        volume_right_ml=float(sides["right"].sum()) * voxel_ml,
        volume_left_ml=float(sides["left"].sum()) * voxel_ml,
        hemithorax_share_right=None, hemithorax_share_left=None,
        max_rim_mm=None, max_rim_slice=None, bts_large=None,
        outside_hemithorax_ml=float((mask & ~anatomy.hemithorax_right & ~anatomy.hemithorax_left).sum()) * voxel_ml,
        n_voxels=int(mask.sum()), n_components=int(ndi.label(mask)[1]) if mask.any() else 0,
        voxel_volume_ml=voxel_ml, midline_left_mm=midline, orientation=volume.orientation, notes=notes,
    )
    outside_body_ml = float((mask & ~anatomy.body).sum()) * voxel_ml if anatomy.body.any() else 0.0
    if outside_body_ml > 0:
        notes.append(f"{outside_body_ml:.1f} mL of the mask lies outside the body; the rim ignores it.")
    wall = ~(anatomy.lungs | mask)
    best = None
    for side in SIDES:
        cavity_ml = float((hemithorax[side] | sides[side]).sum()) * voxel_ml
        setattr(result, f"hemithorax_volume_{side}_ml", cavity_ml)
        if cavity_ml > 0:
            setattr(result, f"hemithorax_share_{side}", getattr(result, f"volume_{side}_ml") / cavity_ml)
        else:
            notes.append(f"No {side} hemithorax was found on this CT; its share is not defined.")
        in_body = sides[side] & anatomy.body if anatomy.body.any() else sides[side]
        if not in_body.any():
            continue
        rim = widest_rim(in_body, anatomy.lung(side) & ~mask, wall, volume.spacing)
        if rim is None:
            notes.append(f"No aerated {side} lung touches the pneumothorax (complete collapse, or the mask "
                         "covers the lung): the rim is not defined.")
            continue
        setattr(result, f"max_rim_{side}_mm", rim[0])
        if best is None or rim[0] > best[0]:
            best = (rim[0], rim[1], side)
    if best is not None:
        distance, index, side = best
        result.max_rim_mm, result.max_rim_slice, result.max_rim_side = distance, int(index[0]), side
        result.max_rim_index_zyx = [int(i) for i in index]
        position = np.asarray(volume.affine, dtype=float) @ np.append(np.asarray(index, dtype=float), 1.0)
        result.max_rim_position_lps_mm = [round(float(v), 2) for v in position[:3]]
        result.bts_large = bool(distance >= BTS_LARGE_RIM_MM)
    return result


def widest_rim(pneumothorax: np.ndarray, lung: np.ndarray, wall: np.ndarray, spacing) -> tuple[float, tuple] | None:
    """The largest lung-edge-to-chest-wall distance (mm) of a pneumothorax and its (z, y, x) voxel.

    ``lung`` is the aerated lung (pneumothorax excluded), ``wall`` what is neither aerated nor
    pneumothorax. Returns None when no pneumothorax voxel touches the lung, or there is no wall.
    """
    if not lung.any() or not wall.any():
        return None
    spacing = np.asarray(spacing, dtype=float)
    margin = np.ceil(SEARCH_MARGIN_MM / spacing).astype(int)
    box = bounding_box(pneumothorax, margin)
    found = _rim_in_box(pneumothorax, lung, wall, spacing, box)
    if (found is None and not wall[box].any()) or (found is not None and found[0] > SEARCH_MARGIN_MM):
        # the nearest chest wall may lie outside the box
        found = _rim_in_box(pneumothorax, lung, wall, spacing, tuple(slice(0, n) for n in pneumothorax.shape))
    return found


def _rim_in_box(pneumothorax, lung, wall, spacing, box):
    ptx, lung, wall = pneumothorax[box], lung[box], wall[box]
    if not wall.any():
        return None
    face = ndi.generate_binary_structure(3, 1)
    visceral = ptx & ndi.binary_dilation(lung, face, border_value=0)
    if not visceral.any():
        return None
    to_wall = ndi.distance_transform_edt(~wall, sampling=spacing)
    values = np.where(visceral, to_wall, -1.0)
    local = np.unravel_index(int(np.argmax(values)), values.shape)
    index = tuple(int(i + s.start) for i, s in zip(local, box))
    return float(values[local]), index
