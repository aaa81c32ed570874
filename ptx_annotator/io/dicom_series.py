"""Read one DICOM CT series into a :class:`~ptx_annotator.volume.Volume` in HU."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from ..errors import NotCTError, SeriesError, StudyError
from ..volume import Volume
from .discovery import SeriesFiles, scan_study

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
        series, notes = path, []
    else:
        scan = scan_study(path)
        notes = [scan.skipped_summary()] if scan.skipped else []
        series = _pick_series(scan.series, series_uid, path)
    volume = read_series_files(series.files, allow_non_ct=allow_non_ct)
    volume.warnings[:0] = notes
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


def _read_one(path: str):
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise SeriesError(f"Cannot read '{path}': {exc}. The file is damaged or not DICOM; re-copy or remove it.") from exc
    return ds


def _pixels_hu(ds, path: str) -> np.ndarray:
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
    return apply_modality_lut(raw, ds)


def read_series_files(files: list[str], *, allow_non_ct: bool = False) -> Volume:
    """Stack the slices of one series along the slice normal and convert them to HU."""
    if not files:
        raise StudyError("The series has no files.")
    workers = min(4, len(files), (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        datasets = list(pool.map(_read_one, files))
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
        z_spacing = float(np.median(steps))
        z_vector = np.median(np.diff(positions, axis=0), axis=0)
        _check_steps(steps, along_normal, z_spacing, warnings)

    slices = [_pixels_hu(ds, f) for ds, f in zip(datasets, files)]
    hu = np.stack(slices).astype(np.float32, copy=False) if any(s.dtype.kind == "f" for s in slices) else np.stack(slices)
    hu = _compact(hu)

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


def _compact(hu: np.ndarray) -> np.ndarray:
    """int16 when the values are whole numbers in range, to halve memory; float32 otherwise."""
    if hu.dtype.kind == "f":
        if np.all(np.mod(hu, 1) == 0) and hu.min() >= -32768 and hu.max() <= 32767:
            return hu.astype(np.int16)
        return hu.astype(np.float32)
    if hu.dtype != np.int16 and hu.size and hu.min() >= -32768 and hu.max() <= 32767:
        return hu.astype(np.int16)
    return hu


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
