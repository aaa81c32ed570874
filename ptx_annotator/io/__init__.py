"""Reading CT studies (DICOM series, NIfTI, NRRD) into :class:`~ptx_annotator.volume.Volume`."""

from __future__ import annotations

import os

from ptx_annotator.errors import StudyError
from ptx_annotator.volume import Volume
from ptx_annotator.io.dicom_series import load_series, read_series_files
from ptx_annotator.io.discovery import SeriesFiles, StudyScan, scan_study
from ptx_annotator.io.volume_files import (
    is_volume_file,
    load_mask_nifti,
    load_nifti,
    load_nrrd,
    save_mask_nifti,
)

__all__ = [
    "SeriesFiles", "StudyScan", "Volume", "load_mask_nifti", "load_nifti", "load_nrrd", "load_series",
    "load_volume", "read_series_files", "save_mask_nifti", "scan_study",
]


def load_volume(path, series_uid: str | None = None, *, allow_non_ct: bool = False) -> Volume:
    """Load a CT from a DICOM folder or file, a NIfTI file (.nii, .nii.gz) or a NRRD file."""
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return load_nifti(path)
    if lower.endswith((".nrrd", ".nhdr")):
        return load_nrrd(path)
    if not os.path.exists(path):
        raise StudyError(f"'{path}' does not exist: give a DICOM folder, a NIfTI (.nii.gz) or a NRRD file.")
    return load_series(path, series_uid, allow_non_ct=allow_non_ct)
