"""Read one DICOM CT series into a :class:`~ptx_annotator.volume.Volume` in HU."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from ptx_annotator.errors import NotCTError, SeriesError, StudyError
from ptx_annotator.volume import Volume
from ptx_annotator.io.discovery import SeriesFiles, StudyScan, group_series, iter_candidate_files, short_reason
from ptx_annotator.io.volume_files import nonfinite_warnings

#: Relative deviation of one slice step from the median step that counts as uneven.
UNEVEN_TOLERANCE = 0.05


def load_series(path, series_uid: str | None = None, *, allow_non_ct: bool = False) -> Volume:
    """Load a CT series from a folder (or one file) into HU.

    Parameters
    ----------
    path : str, PathLike or SeriesFiles
        A folder holding the series (searched recursively), a single DICOM file, or a
        :class:`SeriesFiles` from :func:`scan_study`.
    series_uid : str, optional
        Which series to load when the folder holds several.
    allow_non_ct : bool
        Load MR, PT, CR ... too (the values are then not HU).
    """
    if isinstance(path, SeriesFiles):
        volume = read_series_files(path.files, allow_non_ct=allow_non_ct)
    else:
        scan, datasets = _read_study(path)
        series = _pick_series(scan.series, series_uid, path)
        volume = _volume_from_datasets([datasets[f] for f in series.files], series.files, allow_non_ct)
        if scan.skipped:
            volume.warnings.insert(0, scan.skipped_summary())
    volume.source = str(path.files[0] if isinstance(path, SeriesFiles) else path)
    return volume


def _pick_series(series: list[SeriesFiles], series_uid: str | None, path) -> SeriesFiles:
    if series_uid is not None:
        for entry in series:
            if entry.series_uid == series_uid:
                return entry
        raise StudyError(f"No series with UID {series_uid} under '{path}'. Run 'ptx-annotate info {path}' to list them.")
    if len(series) > 1:
        listing = "; ".join(f"{s.series_uid} ({s.modality or '?'}, {len(s.files)} files, '{s.description}')" for s in series)
        raise StudyError(
            f"'{path}' holds {len(series)} series: {listing}. Choose one with its series UID "
            "(--series UID), or point at that series' own folder."
        )
    return series[0]


def _read_study(path) -> tuple[StudyScan, dict]:
    """Read every DICOM image under ``path`` once, fully, grouped like :func:`scan_study`."""
    root = Path(path)
    if not root.exists():
        raise StudyError(f"'{path}' does not exist: give the folder that holds the DICOM series.")
    candidates = [str(root)] if root.is_file() else list(iter_candidate_files(root))
    if not candidates:
        raise StudyError(f"'{path}' is empty: no files in it or its subfolders. "
                         "Copy the DICOM series into it, or point at the folder that holds it.")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_try_read, candidates))
    scan, datasets = StudyScan(root=str(root)), {}
    for candidate, (ds, reason) in zip(candidates, results):
        if ds is None:
            scan.skipped.append((candidate, reason))
        else:
            datasets[candidate] = ds
    scan.series = group_series(datasets, scan.skipped)
    if not scan.series:
        raise StudyError(f"No DICOM image series found under '{path}': {scan.skipped_summary()}. "
                         "Point at the folder that holds the CT's DICOM files, or at a NIfTI / NRRD file.")
    return scan, datasets


def _try_read(path: str):
    try:
        return pydicom.dcmread(path), ""
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        if _has_dicom_preamble(path):
            raise SeriesError(f"'{os.path.basename(path)}' ({path}) is a DICOM file but is truncated or damaged "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). "
                              "Re-copy it from the source, or remove it.") from exc
        return None, short_reason(exc, "not a DICOM file")
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"


def _has_dicom_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _read_one(path: str):
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise SeriesError(f"Cannot read '{path}': {exc}. The file is damaged or not DICOM; re-copy or remove it.") from exc
    return ds


def _raw_pixels(ds, path: str) -> np.ndarray:
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise SeriesError(
            f"'{os.path.basename(path)}' ({path}) is a colour image ({samples} samples per pixel, "
            f"{getattr(ds, 'PhotometricInterpretation', '?')}), not a greyscale CT slice: it is a screenshot or a "
            "secondary capture. Choose the CT series of the study.")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise SeriesError(f"'{os.path.basename(path)}' ({path}) has no pixel data: it is incomplete. "
                          "Re-copy it from the source, or remove it.")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # truncated data, missing decoder, bad header
        raise SeriesError(
            f"Cannot decode the pixels of '{os.path.basename(path)}' ({path}): {str(exc).splitlines()[0]}. "
            "The file is probably truncated or damaged; re-copy it from the source."
        ) from exc
    if raw.ndim != 2:
        raise SeriesError(
            f"'{path}' holds {raw.shape[0] if raw.ndim == 3 else '?'} frames in one file (multi-frame / enhanced CT), "
            "which this reader does not stack. Export the series as single-frame slices."
        )
    return raw


def _linear_lut(ds) -> tuple[float, float] | None:
    """(slope, intercept) when the modality LUT is linear, None when it is a LUT sequence."""
    if "ModalityLUTSequence" in ds:
        return None
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return slope, intercept


def _stack_hu(datasets: list, files: list[str]) -> np.ndarray:
    """HU of every slice in one preallocated array: int16 when whole numbers fit, float32 otherwise."""
    luts = [_linear_lut(ds) for ds in datasets]
    integral = all(lut is not None and lut[0].is_integer() and lut[1].is_integer() for lut in luts)
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    out = np.empty((len(datasets), rows, cols), dtype=np.int16 if integral else np.float32)
    for k, (ds, path, lut) in enumerate(zip(datasets, files, luts)):
        raw = _raw_pixels(ds, path)
        if lut is None:
            out[k] = apply_modality_lut(raw, ds)
            continue
        slope, intercept = lut
        if integral:
            values = raw.astype(np.int32)
            if slope != 1:
                values *= int(slope)
            values += int(intercept)
            if values.min() < -32768 or values.max() > 32767:
                return _stack_float(datasets, files)
            out[k] = values
        else:
            out[k] = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return out


def _stack_float(datasets: list, files: list[str]) -> np.ndarray:
    return np.stack([apply_modality_lut(_raw_pixels(ds, f), ds).astype(np.float32) for ds, f in zip(datasets, files)])


def read_series_files(files: list[str], *, allow_non_ct: bool = False) -> Volume:
    """Stack the slices of one series along the slice normal and convert them to HU."""
    if not files:
        raise StudyError("The series has no files.")
    with ThreadPoolExecutor(max_workers=min(2, len(files))) as pool:
        datasets = list(pool.map(_read_one, files))
    return _volume_from_datasets(datasets, list(files), allow_non_ct)


def _volume_from_datasets(datasets: list, files: list[str], allow_non_ct: bool) -> Volume:
    warnings: list[str] = []
    first = datasets[0]
    series_uid = str(getattr(first, "SeriesInstanceUID", "") or "") or None
    modality = str(getattr(first, "Modality", "") or "")
    if not modality:
        warnings.append("The series has no Modality tag; it is read as CT. Check the values are HU.")
        modality = "CT"
    elif modality.upper() != "CT":
        message = (
            f"Series {series_uid} is {modality}, not CT: its values are not Hounsfield units and the "
            "lung window, proposers and models assume CT."
        )
        if not allow_non_ct:
            raise NotCTError(message + " Choose the CT series of the study.")
        warnings.append(message)

    _check_uniform(datasets, files, "Rows", "Columns", what="image sizes", fmt=lambda v: f"{v[1]}x{v[0]}")
    orientations = [_orientation(ds) for ds in datasets]
    _check_uniform_values(orientations, files, what="orientations (ImageOrientationPatient)",
                          fmt=lambda v: "[" + ", ".join(f"{x:g}" for x in v) + "]")
    row_dir, col_dir = np.array(orientations[0][:3]), np.array(orientations[0][3:])
    normal = np.cross(row_dir, col_dir)

    positions = np.array([_position(ds, i) for i, ds in enumerate(datasets)], dtype=float)
    along_normal = positions @ normal
    order = np.argsort(along_normal, kind="stable")
    datasets = [datasets[i] for i in order]
    files = [files[i] for i in order]
    positions, along_normal = positions[order], along_normal[order]
    datasets, files, positions, along_normal = _drop_duplicates(datasets, files, positions, along_normal, warnings)

    steps = np.diff(along_normal)
    row_spacing, col_spacing = _pixel_spacing(first)
    if len(datasets) == 1:
        thickness = float(getattr(first, "SliceThickness", 0) or 0) or 1.0
        z_spacing = thickness
        z_vector = normal * thickness
        warnings.append(
            f"Series {series_uid} has a single slice: its z spacing ({thickness:g} mm) comes from SliceThickness, "
            "and 3D measurements (volumes in mL) are approximate."
        )
    else:
        regular = steps <= 1.5 * steps.min()  # steps that are not gaps left by missing slices
        z_spacing = float(np.median(steps[regular]))
        z_vector = np.median(np.diff(positions, axis=0)[regular], axis=0)
        _check_steps(steps, along_normal, z_spacing, warnings)

    hu = _stack_hu(datasets, files)
    warnings += nonfinite_warnings(hu, f"Series {series_uid}")

    affine = np.eye(4)
    affine[:3, 0] = z_vector
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = row_dir * col_spacing
    affine[:3, 3] = positions[0]
    meta = first.file_meta if hasattr(first, "file_meta") else None
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    ts_name = getattr(getattr(meta, "TransferSyntaxUID", None), "name", "") or transfer_syntax
    return Volume(
        hu=hu,
        spacing=(float(z_spacing), float(row_spacing), float(col_spacing)),
        affine=affine,
        series_uid=series_uid,
        slice_uids=[str(getattr(ds, "SOPInstanceUID", "")) for ds in datasets],
        study_uid=str(getattr(first, "StudyInstanceUID", "") or "") or None,
        frame_of_reference_uid=str(getattr(first, "FrameOfReferenceUID", "") or "") or None,
        description=str(getattr(first, "SeriesDescription", "") or ""),
        modality=modality,
        transfer_syntax=ts_name,
        source=os.path.dirname(files[0]),
        source_files=list(files),
        warnings=warnings,
        patient_position=str(getattr(first, "PatientPosition", "") or ""),
    )


def _orientation(ds) -> tuple[float, ...]:
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None or len(iop) != 6:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    return tuple(round(float(v), 4) for v in iop)


def _position(ds, index: int) -> tuple[float, float, float]:
    ipp = getattr(ds, "ImagePositionPatient", None)
    if ipp is None or len(ipp) != 3:
        location = getattr(ds, "SliceLocation", None)
        z = float(location) if location is not None else float(index)
        return (0.0, 0.0, z)
    return tuple(float(v) for v in ipp)  # type: ignore[return-value]


def _pixel_spacing(ds) -> tuple[float, float]:
    spacing = getattr(ds, "PixelSpacing", None)
    try:
        row, col = float(spacing[0]), float(spacing[1])
        if row > 0 and col > 0:
            return row, col
    except (TypeError, ValueError, IndexError):
        pass
    return 1.0, 1.0


def _check_uniform(datasets, files, *tags, what: str, fmt) -> None:
    values = [tuple(getattr(ds, t, None) for t in tags) for ds in datasets]
    _check_uniform_values(values, files, what=what, fmt=fmt)


def _check_uniform_values(values, files, *, what: str, fmt) -> None:
    counts = Counter(values)
    if len(counts) <= 1:
        return
    parts = []
    for value, n in counts.most_common():
        example = os.path.basename(files[values.index(value)])
        parts.append(f"{fmt(value)} in {n} file(s), e.g. '{example}'")
    raise SeriesError(
        f"One series mixes {what}: " + "; ".join(parts) + ". A volume needs them all alike: "
        "remove the odd files or split them into their own series."
    )


def _drop_duplicates(datasets, files, positions, along_normal, warnings):
    keep = [0]
    for i in range(1, len(datasets)):
        if abs(along_normal[i] - along_normal[keep[-1]]) > 1e-3:
            keep.append(i)
            continue
        same_uid = getattr(datasets[i], "SOPInstanceUID", None) == getattr(datasets[keep[-1]], "SOPInstanceUID", None)
        if not same_uid:
            raise SeriesError(
                f"Two different slices, '{os.path.basename(files[keep[-1]])}' and '{os.path.basename(files[i])}', "
                f"lie at the same position ({along_normal[i]:.2f} mm along the slice normal). The folder mixes "
                "two acquisitions or reconstructions; keep one of them."
            )
        warnings.append(f"'{os.path.basename(files[i])}' is a copy of '{os.path.basename(files[keep[-1]])}' (same SOPInstanceUID); it was ignored.")
    if len(keep) == len(datasets):
        return datasets, files, positions, along_normal
    return [datasets[i] for i in keep], [files[i] for i in keep], positions[keep], along_normal[keep]


def _check_steps(steps: np.ndarray, along_normal: np.ndarray, spacing: float, warnings: list[str]) -> None:
    if spacing <= 0:
        return
    ratio = steps / spacing
    gaps = np.nonzero(ratio > 1.5)[0]
    for i in gaps[:3]:
        missing = int(round(ratio[i])) - 1
        warnings.append(
            f"Missing slices: a gap of {steps[i]:.2f} mm between positions {along_normal[i]:.2f} and "
            f"{along_normal[i + 1]:.2f} mm, where the series steps {spacing:.2f} mm (about {missing} slice(s) missing). "
            "Re-export the complete series; volumes across the gap are underestimated."
        )
    if len(gaps) > 3:
        warnings.append(f"... and {len(gaps) - 3} more gaps in slice positions.")
    uneven = np.abs(ratio - 1) > UNEVEN_TOLERANCE
    uneven[gaps] = False
    if uneven.any():
        warnings.append(
            f"Uneven slice spacing: steps range from {steps.min():.3f} to {steps.max():.3f} mm "
            f"(median {spacing:.3f} mm, {int(uneven.sum())} step(s) off by more than {UNEVEN_TOLERANCE:.0%}). "
            "The volume uses the median step; resample the series if exact z distances matter."
        )
