"""Find the DICOM image series under a study folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from ptx_annotator.errors import StudyError

#: Objects that share a study with the CT but carry no image to annotate.
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"}

#: Tags read during discovery (pixel data is left on disk).
_HEADER_TAGS = [
    "SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
    "SeriesDescription", "SeriesNumber", "ImagePositionPatient", "ImageOrientationPatient",
    "Rows", "Columns", "NumberOfFrames",
]


@dataclass
class SeriesFiles:
    """The files of one series as found on disk (headers only)."""

    series_uid: str
    files: list[str] = field(default_factory=list)
    modality: str = ""
    description: str = ""
    series_number: int | None = None


@dataclass
class StudyScan:
    """What a study folder holds: the image series and the files that were skipped."""

    root: str
    series: list[SeriesFiles] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def preferred_index(self, series_uid: str | None = None) -> int:
        """Which series to show first: ``series_uid`` if given (else an error naming the ones
        there), otherwise the CT series with the most images (0 when there is none)."""
        uids = [s.series_uid for s in self.series]
        if series_uid is not None:
            if series_uid not in uids:
                raise StudyError(f"Series {series_uid} is not in '{self.root}'; it holds: {', '.join(uids) or 'none'}.")
            return uids.index(series_uid)
        sizes = [len(s.files) if s.modality.upper() in ("CT", "") else 0 for s in self.series]
        return sizes.index(max(sizes)) if sizes else 0

    def skipped_summary(self, limit: int = 3) -> str:
        names = ", ".join(f"'{os.path.basename(p)}' ({why})" for p, why in self.skipped[:limit])
        more = f" and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} file(s) that are not DICOM images: {names}{more}"


def iter_candidate_files(root: Path):
    """Every regular file under ``root``, recursively, in a stable order, hidden folders left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            yield os.path.join(dirpath, name)


def read_header(path: str):
    """The DICOM header of ``path`` without pixel data, or raise InvalidDicomError / OSError."""
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)


def scan_study(root: str | os.PathLike) -> StudyScan:
    """Group every DICOM image file under ``root`` by SeriesInstanceUID.

    Files with or without a ``.dcm`` suffix are considered; non-DICOM files and non-image
    objects (SEG, SR, RTSTRUCT, ...) are recorded in ``skipped`` with the reason.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise StudyError(f"'{root}' does not exist: give the folder that holds the DICOM series.")
    if root_path.is_file():
        candidates = [str(root_path)]
    else:
        candidates = list(iter_candidate_files(root_path))
        if not candidates:
            raise StudyError(
                f"'{root}' is empty: no files in it or its subfolders. "
                "Copy the DICOM series into it, or point at the folder that holds it."
            )
    scan = StudyScan(root=str(root_path))
    headers = {}
    for path in candidates:
        try:
            headers[path] = read_header(path)
        except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
            scan.skipped.append((path, short_reason(exc, "not a DICOM file")))
        except OSError as exc:
            scan.skipped.append((path, f"unreadable: {exc.strerror or exc}"))
    scan.series = group_series(headers, scan.skipped)
    if not scan.series:
        raise StudyError(
            f"No DICOM image series found under '{root}': {scan.skipped_summary()}. "
            "Point at the folder that holds the CT's DICOM files, or at a NIfTI / NRRD file."
        )
    return scan


def group_series(datasets: dict, skipped: list) -> list[SeriesFiles]:
    """Group ``{path: dataset}`` by SeriesInstanceUID; non-image objects go to ``skipped``."""
    by_uid: dict[str, SeriesFiles] = {}
    for path, ds in datasets.items():
        modality = str(getattr(ds, "Modality", "") or "")
        if modality.upper() in NON_IMAGE_MODALITIES:
            skipped.append((path, f"DICOM {modality} without an image to annotate"))
            continue
        if "Rows" not in ds:
            size = os.path.getsize(path) if os.path.exists(path) else 0
            skipped.append((path, f"DICOM {modality or 'file'} of {size} bytes without image attributes (no Rows): "
                                  "truncated or damaged, re-copy it"))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "") or "unknown-series"
        entry = by_uid.get(uid)
        if entry is None:
            number = getattr(ds, "SeriesNumber", None)
            entry = by_uid[uid] = SeriesFiles(
                series_uid=uid,
                modality=modality,
                description=str(getattr(ds, "SeriesDescription", "") or ""),
                series_number=int(number) if number not in (None, "") else None,
            )
        entry.files.append(path)
    return sorted(by_uid.values(), key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))


def short_reason(exc: Exception, default: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, InvalidDicomError) or not text:
        return default
    return f"{default}: {text[:80]}"
