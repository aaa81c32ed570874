"""The local cache of DICOMweb studies: instances by SOPInstanceUID, complete series or none.

Layout under :func:`~ptx_annotator.io.dicomweb.cache_root` (``$PTX_CACHE_DIR/dicomweb``)::

    <server>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   a complete CT series
    <server>/<StudyInstanceUID>/<SeriesInstanceUID>/.complete.json         instances and sizes, before publishing
    <server>/<StudyInstanceUID>/study.json                                 which series is the study's CT
    <server>/<StudyInstanceUID>/seg/<SOPInstanceUID>.dcm                   readers' SEGs (atomic files)

A series is retrieved into a private ``.partial-*`` folder and renamed into place in one step,
so a half-retrieved series never appears complete (a series counts as complete only when its
marker lists its instances with their sizes and every file is there at that size): an interrupted transfer
leaves at most a partial folder, which the next retrieval removes. Reopening a cached study needs
no network at all.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from ptx_annotator.atomic import write_bytes_atomic
from ptx_annotator.io.dicomweb import Connection, DicomWebError, StudyRef, cache_root, server_key

COMPLETE = ".complete.json"  # hidden: the DICOM discovery skips it
STUDY_FILE = "study.json"
#: A series counts as axial when its slice normal is within 30 degrees of the patient's
#: head-foot axis: CT gantry tilt goes up to 30 degrees, reformats are at 90.
AXIAL_MIN_COSINE = math.cos(math.radians(30))


@dataclass
class CachedStudy:
    """A DICOMweb study resolved to a local, complete CT series folder."""

    ref: StudyRef
    series_uid: str
    folder: Path
    retrieved: bool  # False when it came from the cache without any network
    notes: list[str] = field(default_factory=list)


def study_folder(ref: StudyRef) -> Path:
    return cache_root() / server_key(ref.server) / ref.study_uid


def seg_folder(ref: StudyRef) -> Path:
    return study_folder(ref) / "seg"


def _complete(folder: Path) -> bool:
    """True when the folder's marker lists its instances and each file is there at its full size."""
    try:
        listed = json.loads((folder / COMPLETE).read_text())["instances"]
        sizes = {entry.name: entry.stat().st_size for entry in os.scandir(folder)}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(listed, dict) or not listed:
        return False
    return all(sizes.get(f"{uid}.dcm") == size for uid, size in listed.items())


def _write_pointer(path: Path, payload: dict) -> None:
    """Replace a small JSON file in one rename (no fsync: a lost or torn pointer only means a re-query)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)


def cached_ct(ref: StudyRef) -> Path | None:
    """The complete cached CT series of a study (``ref.series_uid`` or the one recorded), else None."""
    base = study_folder(ref)
    series_uid = ref.series_uid
    if series_uid is None:
        try:
            series_uid = json.loads((base / STUDY_FILE).read_text())["ct_series"]
        except (OSError, ValueError, KeyError):
            return None
    folder = base / series_uid
    return folder if _complete(folder) else None


def open_cached_or_retrieve(ref: StudyRef, auth: str | None = None) -> CachedStudy:
    """The study's CT series as a local folder: from the cache, else retrieved into it atomically."""
    folder = cached_ct(ref)
    if folder is not None:
        return CachedStudy(ref, folder.name, folder, retrieved=False)
    connection = Connection(ref.server, auth, what=ref.study_uid)
    series = connection.series(ref.study_uid)
    candidates = ct_candidates(series, ref)
    refused = []
    for candidate in candidates:
        folder = retrieve_series(connection, ref, candidate["series_uid"], candidate["instances"])
        if folder is not None:
            _write_pointer(study_folder(ref) / STUDY_FILE, {"ct_series": candidate["series_uid"]})
            return CachedStudy(ref, candidate["series_uid"], folder, retrieved=True)
        refused.append(candidate["series_uid"])
    raise DicomWebError(f"{ref.where()}: no axial CT series (CT series {', '.join(refused)} are not axial); "
                        "open a study with an axial chest CT.")


def ct_candidates(series: list[dict], ref: StudyRef) -> list[dict]:
    """The CT series to try, most slices first (or the one the URL names); an error when there is none."""
    if ref.series_uid:
        chosen = [s for s in series if s["series_uid"] == ref.series_uid]
        if not chosen:
            raise DicomWebError(f"{ref.where()}: no series {ref.series_uid} in this study.")
        if chosen[0]["modality"] != "CT":
            raise DicomWebError(f"{ref.where()}: series {ref.series_uid} is {chosen[0]['modality'] or 'not CT'}, "
                                "not CT.")
        return chosen
    cts = sorted((s for s in series if s["modality"] == "CT" and s["instances"] > 0),
                 key=lambda s: -s["instances"])
    if not cts:
        held = ", ".join(sorted({s["modality"] or "?" for s in series}))
        raise DicomWebError(f"{ref.where()}: the study has no CT series (it holds {held}); open a chest CT study.")
    return cts


def retrieve_series(connection: Connection, ref: StudyRef, series_uid: str, expected: int) -> Path | None:
    """Retrieve a series into the cache; None (nothing kept) when its first slice is not axial.

    Each part is written under its SOPInstanceUID while the transfer goes on; the folder is
    published by one rename once every instance has arrived and the marker lists them with their
    sizes. No per-instance fsync: the cache can always be retrieved again, and a crash that
    leaves a file shorter than listed (or a name or the marker lost) makes the series incomplete,
    never wrong (:func:`_complete` checks every file's size).
    """
    final = study_folder(ref) / series_uid
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final.parent, series_uid)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{series_uid}-{os.getpid()}-", dir=final.parent))
    try:
        sizes: dict[str, int] = {}
        for index, body in enumerate(connection.iter_series_parts(ref.study_uid, series_uid)):
            if index == 0 and not _is_axial(body, ref):
                return None
            sop_uid = _write_instance(partial, body, ref)
            if sop_uid in sizes:
                raise DicomWebError(f"{ref.where()}: series {series_uid} holds SOPInstanceUID {sop_uid} twice.")
            sizes[sop_uid] = len(body)
        if expected and len(sizes) != expected:
            raise DicomWebError(f"{ref.where()}: series {series_uid} arrived with {len(sizes)} of {expected} "
                                "instances; nothing was cached, try again.")
        (partial / COMPLETE).write_text(json.dumps({"server": ref.server, "study_uid": ref.study_uid,
                                                    "series_uid": series_uid, "instances": sizes}))
        if final.exists() and not _complete(final):  # left damaged (a crash): set aside, then replace
            stale = final.with_name(f".stale-{series_uid}-{os.getpid()}")
            os.rename(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(partial, final)
        except OSError:
            if not _complete(final):  # another process published it first, else a real failure
                raise
        return final
    except DicomWebError as exc:
        raise DicomWebError(str(exc) if "cached" in str(exc) else f"{exc} (nothing was cached)") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _write_instance(folder: Path, body: bytes, ref: StudyRef) -> str:
    """Write one instance named by its SOPInstanceUID; returns the UID."""
    try:
        sop_uid = _sop_uid(body)
    except Exception as exc:  # noqa: BLE001 - a damaged part of any kind
        raise DicomWebError(f"{ref.where()}: the server sent an instance that is not DICOM ({exc}).") from None
    if not sop_uid:
        raise DicomWebError(f"{ref.where()}: the server sent an instance without a SOPInstanceUID.")
    if not sop_uid.replace(".", "").isdigit():
        raise DicomWebError(f"{ref.where()}: the server sent an instance with an invalid SOPInstanceUID.")
    with open(folder / f"{sop_uid}.dcm", "wb") as handle:
        handle.write(body)
    return sop_uid


def _sop_uid(body: bytes) -> str | None:
    """The instance's SOPInstanceUID: MediaStorageSOPInstanceUID of its Part-10 file meta (which the
    standard makes equal to it, and which takes no dataset parsing), else the dataset's own."""
    meta_uid = _meta_sop_uid(body)
    if meta_uid:
        return meta_uid
    from pydicom.filereader import read_partial

    dataset = read_partial(BytesIO(body), stop_when=lambda tag, vr, length: tag > 0x00080018, force=True)
    value = dataset.get("SOPInstanceUID")
    return str(value) if value else None


def _meta_sop_uid(body: bytes) -> str | None:
    """(0002,0003) from the file meta group: explicit VR little endian after the preamble and 'DICM'."""
    if body[128:132] != b"DICM":
        return None
    at = 132
    while at + 8 <= len(body):
        group, element = struct.unpack_from("<HH", body, at)
        if group != 0x0002:
            return None
        if body[at + 4:at + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length, value_at = struct.unpack_from("<I", body, at + 8)[0], at + 12
        else:
            length, value_at = struct.unpack_from("<H", body, at + 6)[0], at + 8
        if element == 0x0003:
            return body[value_at:value_at + length].rstrip(b"\0 ").decode("ascii", "replace") or None
        at = value_at + length
    return None


def _is_axial(body: bytes, ref: StudyRef) -> bool:
    """Whether the slice normal of one instance runs head-foot (within :data:`AXIAL_MIN_COSINE`)."""
    import numpy as np
    import pydicom

    try:
        ds = pydicom.dcmread(BytesIO(body), stop_before_pixels=True, force=True,
                             specific_tags=["ImageOrientationPatient"])
    except Exception as exc:  # noqa: BLE001 - a damaged part of any kind
        raise DicomWebError(f"{ref.where()}: the server sent an instance that is not DICOM ({exc}).") from None
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if orientation is None or len(orientation) != 6:
        return True  # the loader reports a missing orientation itself
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    return bool(abs(normal[2]) >= AXIAL_MIN_COSINE * np.linalg.norm(normal))


def _remove_stale_partials(parent: Path, series_uid: str) -> None:
    """Remove partial folders of ``series_uid`` whose process is gone (interrupted retrievals)."""
    for folder in parent.glob(f".partial-{series_uid}-*"):
        pid = folder.name[len(f".partial-{series_uid}-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cached_seg(connection: Connection, ref: StudyRef, series_uid: str, sop_uid: str) -> Path:
    """A reader's SEG instance in the cache (retrieved once, written atomically)."""
    path = seg_folder(ref) / f"{sop_uid}.dcm"
    if not path.is_file():
        write_bytes_atomic(path, connection.instance_bytes(ref.study_uid, series_uid, sop_uid))
    return path
