"""Readers' masks to and from a PACS as DICOM SEG (STOW-RS out, WADO-RS in).

Push: the reader's saved mask is written by the project's SEG export (highdicom, provenance from
the review log) and stored with STOW-RS. Every reader has **one SEG series per study**, whose
SeriesInstanceUID is derived from the StudyInstanceUID and the reader's name, so every push of
that reader lands in the same series; each push is a new instance with the next InstanceNumber.
After storing, the older instances of that series are deleted where the server allows DICOMweb
DELETE (Orthanc's plugin does not); wherever they stay, the instance with the highest
InstanceNumber is the reader's current mask and older ones are never read. A later push thus
supersedes the earlier one instead of adding a second series.

ContentCreatorName is the reader, SeriesDescription says ``Pneumothorax (READER, N% reviewed)``,
ContentDescription names the mask version, how it was made and the reviewed slice count, and
the segment's algorithm identification names the proposer or checkpoint (semi-automatic masks).

Pull: each reader's current SEG on the server becomes that reader's mask in the local store
(``import:<SOPInstanceUID>.dcm``), unless the local store holds work of that reader that did not
come from an earlier pull: local work is never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ptx_annotator.errors import GeometryMismatchError, PtxError
from ptx_annotator.io.dicomweb import Connection, DicomWebError, StudyNotOnServer, StudyRef
from ptx_annotator.io.dicomweb_cache import COMPLETE, cached_seg, seg_folder

SEG_MODALITY = "SEG"
#: Series number of readers' SEG series (the export's default).
SEG_SERIES_NUMBER = 9901


@dataclass
class ServerSeg:
    """A reader's current SEG instance on the server."""

    reader: str
    series_uid: str
    sop_uid: str
    number: int
    description: str
    superseded: int  # older instances of the same series still on the server


@dataclass
class PushResult:
    ref: StudyRef
    reader: str
    series_uid: str
    sop_uid: str
    instance_number: int
    reviewed_slices: int
    n_slices: int
    deleted: int
    kept_older: int


def seg_series_uid(study_uid: str, reader: str) -> str:
    """The reader's SEG SeriesInstanceUID in a study (the same on every workstation)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["ptx-annotator pneumothorax SEG", study_uid, reader]))


def ref_of_volume(volume) -> StudyRef:
    """The DICOMweb study a volume was retrieved from (its cache folder says so), or an error."""
    marker = Path(volume.source_files[0]).parent / COMPLETE if volume.source_files else None
    try:
        record = json.loads(marker.read_text()) if marker else None
    except (OSError, ValueError):
        record = None
    if not record:
        raise PtxError(f"'{volume.source}' was not retrieved from a DICOMweb server, so there is no PACS to push "
                       "to: open the study by its DICOMweb URL.")
    return StudyRef(record["server"], record["study_uid"], record["series_uid"])


def reader_segs(connection: Connection, ref: StudyRef, series: list[dict] | None = None) -> list[ServerSeg]:
    """Every reader's current SEG of the study (newest instance of each SEG series)."""
    from ptx_annotator.review.store_paths import safe_annotator_name

    found = []
    for one in series if series is not None else connection.series(ref.study_uid):
        if one["modality"] != SEG_MODALITY or not one["instances"]:
            continue
        instances = connection.instances(ref.study_uid, one["series_uid"])
        if not instances:
            continue
        newest = max(instances, key=lambda i: i["number"])
        meta = connection.instance_metadata(ref.study_uid, one["series_uid"], newest["sop_uid"])
        creator = meta["creator"] or ""
        try:
            reader = safe_annotator_name(creator.split("^")[0]) if creator else None
        except PtxError:
            reader = None
        if reader:
            found.append(ServerSeg(reader, one["series_uid"], newest["sop_uid"], newest["number"],
                                   meta["description"], len(instances) - 1))
    return found


def push_annotation(volume, store, annotator: str, *, auth: str | None = None, ref: StudyRef | None = None,
                    connection: Connection | None = None, allow_unreviewed: bool = False) -> PushResult:
    """Store ``annotator``'s saved mask of ``volume`` on its PACS as a DICOM SEG (STOW-RS).

    ``volume`` must come from a DICOMweb study (the cache records where); ``store`` is its
    annotation store. A mask that is mostly unreviewed proposal is refused as the export refuses
    it, unless ``allow_unreviewed``. This is the one function behind ``ptx-annotate push`` and
    the review widget's push button.
    """
    import pydicom

    from ptx_annotator.export import export_annotation, load_annotation
    from ptx_annotator.review.store_paths import safe_annotator_name

    ref = ref or ref_of_volume(volume)
    reader = safe_annotator_name(annotator)
    annotation = load_annotation(volume, store, reader)
    connection = connection or Connection(ref.server, auth, what=ref.study_uid)
    series_uid = seg_series_uid(ref.study_uid, reader)
    existing = [s for s in connection.series(ref.study_uid) if s["series_uid"] == series_uid]
    older = connection.instances(ref.study_uid, series_uid) if existing else []
    number = max((i["number"] for i in older), default=0) + 1
    reviewed = len(annotation.review.reviewed_indices())
    n_slices = len(annotation.review)
    share = round(100 * reviewed / n_slices) if n_slices else 0
    with tempfile.TemporaryDirectory(prefix="ptx-push-") as folder:
        path = export_annotation(volume, annotation, "seg", Path(folder) / "seg.dcm", allow_unreviewed=allow_unreviewed)
        seg = pydicom.dcmread(path)
    seg.SeriesInstanceUID = series_uid
    seg.SeriesNumber = SEG_SERIES_NUMBER
    seg.InstanceNumber = number
    seg.SeriesDescription = f"Pneumothorax ({reader}, {share}% reviewed)"[:64]
    made = str(getattr(seg, "ContentDescription", "") or "")
    seg.ContentDescription = f"{made}; {reviewed}/{n_slices} slices reviewed"[-64:] if made else \
        f"{reviewed}/{n_slices} slices reviewed"
    connection.store(seg, ref.study_uid)
    _remember_push(ref, str(seg.SOPInstanceUID))
    deleted = sum(connection.delete_instance(ref.study_uid, series_uid, i["sop_uid"]) for i in older)
    return PushResult(ref, reader, series_uid, str(seg.SOPInstanceUID), number, reviewed, n_slices, deleted,
                      len(older) - deleted)


def pull_reader_segs(connection: Connection, ref: StudyRef, series_key: str, volume, store,
                     readers=None) -> list[str]:
    """Import each reader's current server SEG as that reader's local mask; returns notes to show.

    ``volume`` is the CT (or a function that loads it, called only when a SEG is to be read);
    ``readers`` limits it to those names. A SEG that does not fit this CT (other instances, other
    grid) is skipped with a note; local work of a reader is kept (a note says so).
    """
    from ptx_annotator.export import import_mask

    load = volume if callable(volume) else (lambda: volume)
    loaded = None
    notes = []
    wanted = None if readers is None else set(readers)
    for seg in reader_segs(connection, ref):
        if wanted is not None and seg.reader not in wanted:
            continue
        file_name = f"{seg.sop_uid}.dcm"
        local = store.load(series_key, seg.reader)
        if local is not None and (_last_import(local) == file_name or _pushed_here(ref, seg.sop_uid)):
            continue  # already pulled, or it is this machine's own push of that reader's mask
        if local is not None and not _only_pulled(local):
            notes.append(f"kept the local mask of '{seg.reader}' (the server has their SEG #{seg.number} too)")
            continue
        path = cached_seg(connection, ref, seg.series_uid, seg.sop_uid)
        loaded = loaded or load()
        try:
            import_mask(loaded, store, seg.reader, path, replace=True)
        except GeometryMismatchError as exc:
            notes.append(f"skipped the SEG of '{seg.reader}' on {ref.where()}: {exc}")
            continue
        notes.append(f"'{seg.reader}': mask from the server's SEG #{seg.number} ({seg.description})")
    return notes


def _remember_push(ref: StudyRef, sop_uid: str) -> None:
    """Note in the cache that this machine pushed ``sop_uid`` (its reader's work is local already)."""
    folder = seg_folder(ref)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".pushed-{sop_uid}").touch()


def _pushed_here(ref: StudyRef, sop_uid: str) -> bool:
    return (seg_folder(ref) / f".pushed-{sop_uid}").exists()


def _last_import(annotation) -> str | None:
    imports = (annotation.extra or {}).get("imports") or []
    return imports[-1].get("file") if imports else None


def _only_pulled(annotation) -> bool:
    """True when every decided slice of the annotation came from a pulled server SEG."""
    name = _last_import(annotation)
    if not name or not name.endswith(".dcm"):
        return False
    imports = (annotation.extra or {}).get("imports") or []
    if not str(imports[-1].get("path", "")).startswith(os.fspath(_seg_cache_base())):
        return False
    from ptx_annotator.provenance import IMPORT_PREFIX
    from ptx_annotator.review.states import UNREVIEWED

    return all(entry.state == UNREVIEWED or entry.source == f"{IMPORT_PREFIX}{name}" for entry in annotation.review)


def _seg_cache_base() -> Path:
    from ptx_annotator.io.dicomweb import cache_root

    return cache_root()


# -- opening a study URL ---------------------------------------------------------------------

@dataclass
class OpenedStudy:
    """A study URL resolved to its local CT series folder and its user store."""

    ref: StudyRef
    folder: Path
    series_uid: str
    store_dir: Path
    retrieved: bool
    notes: list


def open_study_url(url: str, *, auth: str | None = None, store_dir=None, readers=None,
                   pull: bool = True) -> OpenedStudy:
    """Resolve a DICOMweb study URL: the cached CT series (retrieved once), the user store
    (``store_dir`` or the server's default) and, with ``pull``, the readers' current SEGs pulled
    into that store (``readers`` limits whose). Offline, the cached study still opens (a note says
    the server's SEGs were not checked)."""
    from ptx_annotator.io import load_volume
    from ptx_annotator.io.dicomweb import DicomWebError, default_store_dir, parse_study_url
    from ptx_annotator.io.dicomweb_cache import open_cached_or_retrieve
    from ptx_annotator.review.store import AnnotationStore

    ref = parse_study_url(url)
    cached = open_cached_or_retrieve(ref, auth)
    store_dir = Path(store_dir) if store_dir else default_store_dir(ref.server)
    notes = [f"retrieved {ref.where()} into {cached.folder}"] if cached.retrieved else []
    if pull:
        store = AnnotationStore(store_dir)
        try:
            connection = Connection(ref.server, auth, what=ref.study_uid)
            notes += pull_reader_segs(connection, ref, cached.series_uid, lambda: load_volume(cached.folder),
                                      store, readers)
        except DicomWebError as exc:
            notes.append(f"readers' SEGs on the server were not checked ({exc}); working from the local cache "
                         "and store")
        finally:
            store.close()
    return OpenedStudy(ref, cached.folder, cached.series_uid, store_dir, cached.retrieved, notes)


# -- worklist -------------------------------------------------------------------------------

def worklist(server: str, store_dir=None, auth: str | None = None) -> list[dict]:
    """The CT studies on a DICOMweb server, patient-free, with each reader's progress.

    Each row: ``url``, ``study_uid``, ``accession``, ``date``, ``description``, ``ct_series``,
    ``slices``, ``readers`` (name -> ``reviewed_slices``/``n_slices`` from the local store and the
    ``seg_instance`` and ``seg_description`` of their current SEG on the server), ``proposal``
    (a proposal is kept in the local store) and ``seg`` (some reader's SEG is on the server).
    """
    from ptx_annotator.io.dicomweb import default_store_dir
    from ptx_annotator.io.dicomweb_cache import ct_candidates
    from ptx_annotator.review.store import AnnotationStore

    connection = Connection(server, auth)
    store = AnnotationStore(store_dir or default_store_dir(connection.server))
    rows = []
    for study in connection.studies():
        ref = StudyRef(connection.server, study["study_uid"])
        try:
            series = connection.series(ref.study_uid)
        except StudyNotOnServer:
            continue  # emptied since the search
        try:
            ct = ct_candidates(series, ref)[0]
        except DicomWebError:  # it names the study's modalities: not a CT study
            continue
        readers: dict[str, dict] = {}
        proposal = False
        for name in store.annotators(ct["series_uid"]):
            annotation = store.load(ct["series_uid"], name)
            if annotation is None:
                continue
            proposal = proposal or bool(annotation.proposals)
            readers[name] = {"reviewed_slices": len(annotation.review.reviewed_indices()),
                             "n_slices": len(annotation.review)}
        segs = reader_segs(connection, ref, series)
        for seg in segs:
            readers.setdefault(seg.reader, {}).update(seg_instance=seg.number, seg_description=seg.description)
        rows.append({"url": ref.url, "study_uid": ref.study_uid, "accession": study["accession"],
                     "date": study["date"], "description": study["description"] or ct["description"],
                     "ct_series": ct["series_uid"], "slices": ct["instances"], "readers": readers,
                     "proposal": proposal, "seg": bool(segs)})
    return rows


def reader_progress(entry: dict) -> str:
    """'12/64 reviewed, SEG #2' for one reader of a worklist row."""
    parts = []
    if "n_slices" in entry:
        parts.append(f"{entry['reviewed_slices']}/{entry['n_slices']} reviewed")
    if "seg_instance" in entry:
        parts.append(f"SEG #{entry['seg_instance']}")
    return ", ".join(parts)
