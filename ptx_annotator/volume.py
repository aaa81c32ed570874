"""The CT volume that flows through the tool: HU voxels plus patient geometry."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ptx_annotator.errors import GeometryMismatchError
from ptx_annotator.geometry import voxel_volume_ml


@dataclass
class Volume:
    """A 3D image in Hounsfield units with its place in patient space.

    Attributes
    ----------
    hu : ndarray, shape (z, y, x)
        Voxel values in HU (int16 when the modality LUT is integral, else float32).
        Index 0 along z is the first slice along the slice normal (inferior for axial).
    spacing : tuple of float
        Voxel size in mm as (z, y, x); z comes from the slice positions.
    affine : ndarray, shape (4, 4)
        Maps array indices ``(z, y, x, 1)`` to DICOM patient coordinates (LPS, mm).
    series_uid : str or None
        SeriesInstanceUID, or None for volumes read from NIfTI / NRRD.
    slice_uids : list of str
        SOPInstanceUID of each z slice, in array order (empty for NIfTI / NRRD).
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    series_uid: str | None = None
    slice_uids: list[str] = field(default_factory=list)
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    description: str = ""
    modality: str = "CT"
    transfer_syntax: str = ""
    source: str = ""
    source_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    patient_position: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def key(self) -> str:
        """A stable identifier for the annotation store."""
        if self.series_uid:
            return self.series_uid
        return series_key_for_file(self.source, self.shape, self.affine)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (:func:`ptx_annotator.geometry.voxel_volume_ml` of the affine)."""
        return voxel_volume_ml(self.affine)

    @property
    def orientation(self) -> str:
        """Three-letter code of the patient directions of increasing x, y, z (e.g. ``LPS``)."""
        return orientation_code(self.affine)


def series_key_for_file(source: str, shape, affine: np.ndarray) -> str:
    """A filesystem-safe key for a volume that carries no SeriesInstanceUID."""
    import hashlib
    import os

    stem = os.path.basename(str(source)) or "volume"
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "volume"
    digest = hashlib.sha1(repr((tuple(shape), np.round(affine, 3).tolist())).encode()).hexdigest()[:10]
    return f"{safe[:48]}-{digest}"


def orientation_code(affine: np.ndarray) -> str:
    """Patient direction letters (LPS convention) of the x, y and z array axes."""
    letters = {0: ("L", "R"), 1: ("P", "A"), 2: ("S", "I")}
    code = ""
    for column in (2, 1, 0):  # array axes x, y, z are affine columns 2, 1, 0
        direction = affine[:3, column]
        axis = int(np.argmax(np.abs(direction)))
        code += letters[axis][0] if direction[axis] >= 0 else letters[axis][1]
    return code


def check_same_geometry(shape_a, affine_a, shape_b, affine_b, what_a="A", what_b="B", atol_mm=0.01) -> None:
    """Raise :class:`GeometryMismatchError` unless two grids coincide in patient space."""
    if tuple(shape_a) != tuple(shape_b):
        raise GeometryMismatchError(
            f"{what_a} has shape {tuple(shape_a)} (z, y, x) but {what_b} has {tuple(shape_b)}: "
            "they are not on the same voxel grid. Resample one onto the other first."
        )
    if not np.allclose(np.asarray(affine_a), np.asarray(affine_b), atol=atol_mm):
        raise GeometryMismatchError(
            f"{what_a} and {what_b} have the same shape but different positions or orientations in "
            f"patient space (affines differ by up to {np.abs(np.asarray(affine_a) - np.asarray(affine_b)).max():.3g} mm). "
            "Were they made from different series?"
        )
