"""napari reader: DICOM folders (or one of their files), NIfTI and NRRD chest CTs, in mm."""

from __future__ import annotations

import os

from ptx_annotator.errors import PtxError

from ._layers import image_layer_data

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")


def get_reader(path):
    """The reader function for ``path``, or None when it is not something this plugin opens."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = os.fspath(path)
    if path.lower().endswith(VOLUME_SUFFIXES) and os.path.isfile(path):
        return read_volume_file
    if os.path.isdir(path):
        return read_dicom_folder if _folder_has_dicom(path) else None
    if os.path.isfile(path) and _is_dicom_file(path):
        return read_dicom_folder
    return None


def read_volume_file(path):
    """Layer data of a NIfTI or NRRD volume."""
    from ptx_annotator.io import load_volume

    path = path[0] if isinstance(path, (list, tuple)) else path
    return [image_layer_data(load_volume(path))]


def read_dicom_folder(path):
    """Layer data of every CT series in a DICOM folder (or the series of one DICOM file)."""
    from ptx_annotator.io import read_series_files, scan_study

    path = path[0] if isinstance(path, (list, tuple)) else path
    folder = os.path.dirname(path) if os.path.isfile(path) else path
    scan = scan_study(folder)
    layers, errors = [], []
    for series in scan.series:
        try:
            layers.append(image_layer_data(read_series_files(series.files)))
        except PtxError as exc:
            errors.append(str(exc))
    if not layers:
        raise PtxError(f"No CT series could be read from '{folder}': {'; '.join(errors) or 'no image series'}")
    return layers


def _is_dicom_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _folder_has_dicom(folder: str, limit: int = 50) -> bool:
    """Whether one of the first ``limit`` files under ``folder`` is DICOM."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if _is_dicom_file(os.path.join(dirpath, name)):
                return True
            seen += 1
            if seen >= limit:
                return False
    return False
