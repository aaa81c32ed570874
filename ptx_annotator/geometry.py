"""Geometry of a voxel grid, one rule each: bounding boxes, voxel volume, patient side, reorientation.

Every module that needs one of these asks here, so the viewer, ``quantify``, the report and the
proposers cannot disagree.

Voxel volume
    ``|det|`` of the affine's 3x3 part (mm³; exact for oblique and sheared grids, equal to the
    product of the spacings on an orthogonal grid). Code that knows only the spacing passes it and
    gets the same rule on the axis-aligned grid of that spacing.
Patient side of a voxel
    Patient sides come from the affine (LPS: +x is patient left), never from image columns. A voxel
    in the right (left) hemithorax of :func:`ptx_annotator.anatomy.segment_thorax` is right (left);
    a voxel in neither lies on the side of the mid-sagittal plane, the patient-left coordinate
    halfway between the two hemithorax centroids (or the body's centroid when a hemithorax is
    missing, or the grid's centre when no body was found). :class:`PatientSides` applies the rule
    slice by slice (the viewer's running count), :func:`split_sides` to a whole mask (``quantify``).
Bounding boxes
    :func:`bounding_box` via :func:`scipy.ndimage.find_objects`, grown by a margin and clipped.
Reorientation
    :func:`reorient_onto` permutes and flips axes with :mod:`nibabel.orientations` (no resampling);
    :func:`place_on_grid` puts a mask stored that way (or cropped, or padded) onto the CT's grid.
"""

from __future__ import annotations

import numpy as np

SIDES = ("right", "left")
#: Every n-th voxel of a region enters its centroid (the centroid of a lung needs no more).
CENTROID_STEP = 50


# -- bounding boxes -------------------------------------------------------------------------------
def bounding_box(mask, margin=0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of the non-zero voxels, grown by ``margin`` and clipped to the grid.

    ``margin`` is one number of voxels, or one per axis. Returns None when the mask is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise ValueError("bounding_box needs an array of at least one dimension")
    mask = mask if mask.dtype == bool else mask != 0
    # projections, not a labelling: the first axis's extent, then the others' within it
    rows = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if rows.size == 0:
        return None
    plane = mask[rows[0]: rows[-1] + 1].any(axis=0)
    extents = [(int(rows[0]), int(rows[-1]) + 1)]
    for axis in range(plane.ndim):
        held = np.flatnonzero(plane.any(axis=tuple(a for a in range(plane.ndim) if a != axis)))
        extents.append((int(held[0]), int(held[-1]) + 1))
    pads = np.broadcast_to(np.asarray(margin, dtype=int), (mask.ndim,))
    return tuple(slice(max(0, start - int(pad)), min(n, stop + int(pad)))
                 for (start, stop), pad, n in zip(extents, pads, mask.shape))


def union_box(*boxes) -> tuple[slice, ...] | None:
    """The smallest box holding every given box (None entries, from empty masks, are skipped)."""
    boxes = [box for box in boxes if box is not None]
    if not boxes:
        return None
    return tuple(slice(min(s.start for s in axis), max(s.stop for s in axis)) for axis in zip(*boxes))


# -- voxel volume ---------------------------------------------------------------------------------
def voxel_volume_mm3(grid) -> float:
    """Volume of one voxel in mm³: ``|det|`` of the affine's 3x3 part.

    ``grid`` is a (4, 4) or (3, 3) affine, or the voxel spacing (z, y, x) of an axis-aligned grid
    (whose affine is the diagonal of the spacings, see :func:`affine_from_spacing`).
    """
    grid = np.asarray(grid, dtype=float)
    if grid.ndim == 1:
        grid = affine_from_spacing(grid)
    return abs(float(np.linalg.det(grid[:3, :3])))


def voxel_volume_ml(grid) -> float:
    """Volume of one voxel in mL (exact for oblique grids too); ``grid`` as in :func:`voxel_volume_mm3`."""
    return voxel_volume_mm3(grid) / 1000.0


def affine_from_spacing(spacing) -> np.ndarray:
    """The axial LPS affine of a grid known only by its voxel spacing (z, y, x) in mm.

    Array x runs to patient left, y to posterior, z to superior; the origin is voxel (0, 0, 0).
    """
    sz, sy, sx = (float(s) for s in spacing)
    return np.array([[0, 0, sx, 0], [0, sy, 0, 0], [sz, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def head_step(affine) -> int:
    """The step along array z (+1 or -1) that moves towards the patient's head (LPS superior grows).

    +1 when z has no superior component (not an axial series): the one convention for every caller.
    """
    return -1 if float(np.asarray(affine, dtype=float)[2, 0]) < 0 else 1


# -- patient side ---------------------------------------------------------------------------------
def patient_left_mm(affine, indices) -> np.ndarray:
    """Patient-left coordinate (LPS x, mm) of (n, 3) voxel indices (z, y, x)."""
    affine = np.asarray(affine, dtype=float)
    return np.asarray(indices, dtype=float) @ affine[0, :3] + affine[0, 3]


def midline_left_mm(anatomy, affine, notes: list | None = None) -> float:
    """Patient-left coordinate (mm) of the mid-sagittal plane (see the module doc).

    ``anatomy`` has ``hemithorax_right``, ``hemithorax_left`` and ``body`` masks. A sentence
    is appended to ``notes`` when a stand-in is used.
    """
    notes = [] if notes is None else notes
    centres = [float(patient_left_mm(affine, np.argwhere(region)[::CENTROID_STEP]).mean())
               for region in (anatomy.hemithorax_right, anatomy.hemithorax_left) if region.any()]
    if len(centres) == 2:
        return (centres[0] + centres[1]) / 2
    if anatomy.body.any():
        notes.append("Only one hemithorax was found; the body's centre stands in for the midline.")
        return float(patient_left_mm(affine, np.argwhere(anatomy.body)[::CENTROID_STEP]).mean())
    notes.append("No body was found; the volume's centre stands in for the midline.")
    centre = (np.array(anatomy.body.shape, dtype=float) - 1) / 2
    return float(patient_left_mm(affine, centre[None])[0])


class PatientSides:
    """Which voxels are on the patient's left, by the one side rule, a slice at a time.

    Parameters
    ----------
    anatomy : ThoraxAnatomy
        Its ``hemithorax_right``, ``hemithorax_left`` and ``body`` masks.
    affine : ndarray, shape (4, 4)
        The grid's (z, y, x) -> LPS affine.
    midline : float, optional
        The mid-sagittal plane (patient-left mm); :func:`midline_left_mm` when not given.
    """

    def __init__(self, anatomy, affine, midline: float | None = None, notes: list | None = None):
        self.anatomy = anatomy
        self.affine = np.asarray(affine, dtype=float)
        self.notes: list = [] if notes is None else notes
        self.midline = midline_left_mm(anatomy, self.affine, self.notes) if midline is None else float(midline)
        self.shape = tuple(anatomy.hemithorax_right.shape)
        self._left_of: dict[int, np.ndarray] = {}  # per slice, computed once (a viewer counts a slice per stroke)

    def left_of_slice(self, z: int) -> np.ndarray:
        """Bool (y, x): the voxels of slice ``z`` that count as patient left."""
        z = int(z)
        left_of = self._left_of.get(z)
        if left_of is None:
            _, ny, nx = self.shape
            row = self.affine[0]
            lps_x = row[0] * z + row[1] * np.arange(ny)[:, None] + row[2] * np.arange(nx)[None, :] + row[3]
            right, left = self.anatomy.hemithorax_right[z], self.anatomy.hemithorax_left[z]
            left_of = self._left_of[z] = left | (~right & (lps_x > self.midline))
        return left_of

    def count_slice(self, mask_slice, z: int) -> tuple[int, int]:
        """(right, left) voxel counts of one (y, x) mask slice."""
        painted = np.asarray(mask_slice) != 0
        if not painted.any():
            return 0, 0
        left = int(np.count_nonzero(painted & self.left_of_slice(z)))
        return int(np.count_nonzero(painted)) - left, left

    def split(self, mask) -> dict[str, np.ndarray]:
        """``{'right': bool mask, 'left': bool mask}`` of a whole (z, y, x) mask."""
        mask = np.asarray(mask) != 0
        left = mask & self.anatomy.hemithorax_left
        rest = mask & ~self.anatomy.hemithorax_right & ~left
        if rest.any():
            indices = np.argwhere(rest)
            on_left = indices[patient_left_mm(self.affine, indices) > self.midline]
            left[tuple(on_left.T)] = True
        return {"right": mask & ~left, "left": left}


def split_sides(mask, anatomy, affine, midline: float | None = None) -> dict[str, np.ndarray]:
    """The right and left parts of ``mask`` by the one side rule (see the module doc)."""
    return PatientSides(anatomy, affine, midline).split(mask)


# -- reorientation --------------------------------------------------------------------------------
def reorient_onto(data: np.ndarray, affine, target_affine) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip ``data``'s axes so its index axes run like ``target_affine``'s.

    Only axis permutations and flips are done (:mod:`nibabel.orientations`, no resampling). When
    the axes are not a signed permutation of the target's, ``data`` and ``affine`` come back
    unchanged and the caller's geometry check refuses them.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    affine = np.asarray(affine, dtype=float)
    target = np.asarray(target_affine, dtype=float)
    data = np.asarray(data)
    try:
        transform = ornt_transform(io_orientation(affine), io_orientation(target))
        out_affine = affine @ inv_ornt_aff(transform, data.shape)
        relation = np.linalg.solve(target[:3, :3], out_affine[:3, :3])  # target-index steps per data axis
    except (ValueError, np.linalg.LinAlgError):  # a degenerate affine has no orientation
        return data, affine
    if not np.allclose(relation, np.eye(3), atol=1e-3):
        return data, affine
    return np.ascontiguousarray(apply_orientation(data, transform)), out_affine


def place_on_grid(data: np.ndarray, affine, volume, what: str) -> np.ndarray:
    """``data`` (any axis order, same voxels as the CT, possibly cropped or padded) on the CT's grid.

    ``volume`` is the CT (its ``affine`` and ``shape``). Raises
    :class:`~ptx_annotator.errors.GeometryMismatchError` when the voxels do not coincide with the
    CT's, or when voxels with content fall outside the CT.
    """
    from ptx_annotator.errors import GeometryMismatchError

    data, affine = reorient_onto(data, affine, volume.affine)
    target = np.asarray(volume.affine, dtype=float)
    if data.shape == volume.shape and np.allclose(affine, target, atol=0.01):
        return np.asarray(data)
    if not np.allclose(affine[:3, :3], target[:3, :3], atol=1e-3):
        raise GeometryMismatchError(
            f"{what[0].upper()}{what[1:]} has shape {data.shape} (z, y, x) and other voxel sizes or axes than the "
            f"CT {volume.shape}: it was made on another image grid. Resample it onto the CT first.")
    offset = np.linalg.solve(target, affine[:, 3])[:3]
    start = np.round(offset).astype(int)
    if np.linalg.norm(target[:3, :3] @ (offset - start)) > 0.01:
        raise GeometryMismatchError(
            f"{what[0].upper()}{what[1:]} is shifted by {np.round(offset - start, 3).tolist()} voxels against the "
            "CT: its voxels fall between the CT's. Were they made from different series?")
    low = np.maximum(start, 0)
    high = np.minimum(start + np.array(data.shape), volume.shape)
    inside = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(low, high, start))
    kept = int(np.count_nonzero(data[inside])) if np.all(high > low) else 0
    if kept != int(np.count_nonzero(data)):
        raise GeometryMismatchError(
            f"{int(np.count_nonzero(data)) - kept} voxels with content of {what} lie outside the CT "
            f"(the mask's grid starts at CT index {start.tolist()}, shape {data.shape}, the CT has {volume.shape}): "
            "it was made on another series or reconstruction.")
    mask = np.zeros(volume.shape, dtype=data.dtype)
    if kept:
        mask[tuple(slice(int(a), int(b)) for a, b in zip(low, high))] = data[inside]
    return mask
