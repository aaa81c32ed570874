"""Writing a modified CT back out: a new DICOM series beside its source, or a NIfTI volume."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptx_annotator.atomic import atomic_path
from ptx_annotator.errors import StudyError
from ptx_annotator.volume import Volume

#: SeriesDescription suffix of written series, so nobody mistakes them for an acquisition.
SIMULATED_TAG = "SIMULATED"


def write_dicom_series(volume: Volume, hu: np.ndarray, source_files: list[str], out_dir,
                       description: str | None = None) -> list[Path]:
    """Write ``hu`` as a new DICOM series with the geometry and headers of ``source_files``.

    Every header field is copied from the source slice at the same z, except: new Study, Series
    and SOP Instance UIDs (one study and one series for the whole output), the SeriesDescription,
    and the pixel data, re-encoded uncompressed (explicit VR little endian) with the source's
    rescale slope and intercept.

    Parameters
    ----------
    volume : Volume
        The source CT (gives the slice order the files are in).
    hu : ndarray, shape (z, y, x)
        New values in HU on the same grid.
    source_files : list of str
        The source DICOM files in z order (``volume.source_files``).
    out_dir : path
        Folder to write ``slice_0000.dcm`` ... into (created).

    Returns
    -------
    list of Path
        The written files, in z order.
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if len(source_files) != hu.shape[0]:
        raise StudyError(f"{len(source_files)} source DICOM files for a volume of {hu.shape[0]} slices: "
                         "write the series from the volume it was loaded from.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    written = []
    for index, source in enumerate(source_files):
        ds = pydicom.dcmread(source)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        bits = int(getattr(ds, "BitsAllocated", 16))
        signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
        bits_stored = int(getattr(ds, "BitsStored", bits))
        low = -(2 ** (bits_stored - 1)) if signed else 0
        high = 2 ** (bits_stored - 1) - 1 if signed else 2 ** bits_stored - 1
        stored = np.clip(np.rint((hu[index].astype(np.float64) - intercept) / slope), low, high).astype(dtype)

        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        base = description if description is not None else str(getattr(ds, "SeriesDescription", "") or "")
        ds.SeriesDescription = f"{base} {SIMULATED_TAG}".strip()[:64]
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OW"
        ds["PixelData"].is_undefined_length = False
        target = out_dir / f"slice_{index:04d}.dcm"
        with atomic_path(target, ".dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(target)
    return written


def write_ct_nifti(volume: Volume, hu: np.ndarray, path) -> Path:
    """Write ``hu`` as a NIfTI volume with ``volume``'s geometry (int16 when the values allow)."""
    import nibabel as nib

    from ptx_annotator.io.volume_files import nifti_affine_from_lps

    data = np.asarray(hu)
    if data.dtype.kind == "f" and np.all(np.mod(data, 1) == 0) and data.min() >= -32768 and data.max() <= 32767:
        data = data.astype(np.int16)
    affine = nifti_affine_from_lps(volume.affine)
    image = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    path = Path(path)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_path(path, suffix) as tmp:
        nib.save(image, os.fspath(tmp))
    return path
