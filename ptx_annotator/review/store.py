"""The annotation store: one mask and per-slice review state per (series, annotator).

Layout under the store root (default ``<study>/.ptx/``)::

    <series_key>/<annotator>/review.json        commit point: states, who, when, current mask file
    <series_key>/<annotator>/mask.nii.gz        the current mask (NIfTI, the CT's affine)
    <series_key>/<annotator>/versions/          the last N versions of both
    <series_key>/<annotator>/.lock              held by the one process allowed to write

Every file is written atomically (temp file, fsync, rename), and ``review.json`` is replaced
last, so a crash at any point leaves the previous version complete and loadable.
"""

from __future__ import annotations

import json
import os
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptx_annotator.atomic import atomic_path, fsync_dir, write_json_atomic
from ptx_annotator.errors import AnnotationLockedError, GeometryMismatchError, InvalidAnnotatorError, PtxError
from ptx_annotator.io.volume_files import load_mask_nifti, save_mask_nifti
from ptx_annotator.review.states import ReviewLog, SliceReview, utc_now
from ptx_annotator.volume import Volume

FORMAT_VERSION = 1
DEFAULT_KEEP_VERSIONS = 10
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_annotator_name(name: str) -> str:
    """A name that is safe as one folder name: letters, digits, '.', '_' and '-' only.

    Spaces and other characters become '_'; leading dots are removed, so '..' or '/etc' can
    never leave the store. Raises :class:`InvalidAnnotatorError` if nothing usable remains.
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    text = _SAFE_NAME.sub("_", text.strip()).strip("._-")[:64]
    if not text:
        raise InvalidAnnotatorError(
            f"Annotator name {name!r} has no letters or digits to use; give a name such as 'dr_smith'."
        )
    return text


def _safe_key(series_key: str) -> str:
    key = _SAFE_NAME.sub("_", str(series_key)).strip("._-")
    if not key:
        raise PtxError(f"Series key {series_key!r} cannot name a folder.")
    return key


@dataclass
class Annotation:
    """One annotator's mask of one series, with its per-slice review log."""

    series_key: str
    annotator: str
    mask: np.ndarray
    affine: np.ndarray
    review: ReviewLog
    proposals: dict = field(default_factory=dict)
    current_slice: int | None = None
    version: int = 0
    saved_at: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, volume: Volume, annotator: str) -> "Annotation":
        return cls(
            series_key=volume.key,
            annotator=safe_annotator_name(annotator),
            mask=np.zeros(volume.shape, dtype=np.uint8),
            affine=np.array(volume.affine, dtype=float),
            review=ReviewLog.fresh(volume.shape[0]),
        )

    def review_json(self, mask_file: str) -> dict:
        return {
            "format": FORMAT_VERSION,
            "series_key": self.series_key,
            "annotator": self.annotator,
            "version": self.version,
            "saved_at": self.saved_at,
            "shape": list(self.mask.shape),
            "affine_lps_zyx": np.asarray(self.affine).round(6).tolist(),
            "mask_file": mask_file,
            "current_slice": self.current_slice,
            "proposals": self.proposals,
            "slices": [entry.to_json() for entry in self.review],
            **({"extra": self.extra} if self.extra else {}),
        }


class WriterLock:
    """An exclusive, process-wide lock on one annotator's folder (released when the process dies)."""

    def __init__(self, folder: Path, annotator: str):
        self.path = folder / ".lock"
        self.annotator = annotator
        self._fd: int | None = None

    def acquire(self) -> "WriterLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AnnotationLockedError(
                f"The mask of annotator '{self.annotator}' is open for writing by another session ({holder}). "
                "Close that session, or open this one under another annotator name."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "WriterLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"process {info.get('pid')} on {info.get('host')} since {info.get('since')}"
    except (OSError, ValueError):
        return "unknown process"


class AnnotationStore:
    """Masks and review states of every annotator of every series under one folder."""

    def __init__(self, root, keep_versions: int = DEFAULT_KEEP_VERSIONS):
        self.root = Path(root)
        self.keep_versions = max(1, int(keep_versions))
        self._locks: dict[tuple[str, str], WriterLock] = {}

    @classmethod
    def for_study(cls, study_path, store_dir=None, **kwargs) -> "AnnotationStore":
        """The store of a study: ``store_dir`` if given, else ``<study>/.ptx/``."""
        if store_dir is not None:
            return cls(store_dir, **kwargs)
        study = Path(study_path)
        base = study if study.is_dir() else study.parent
        root = base / ".ptx"
        if not os.access(base, os.W_OK) and not root.exists():
            raise PtxError(f"The study folder '{base}' is read-only; give a writable place with --store DIR.")
        return cls(root, **kwargs)

    # -- paths -------------------------------------------------------------------------------
    def folder(self, series_key: str, annotator: str) -> Path:
        folder = self.root / _safe_key(series_key) / safe_annotator_name(annotator)
        if self.root.resolve() not in folder.resolve().parents:
            raise InvalidAnnotatorError(f"Annotator {annotator!r} would leave the store folder.")
        return folder

    def mask_path(self, series_key: str, annotator: str) -> Path:
        return self.folder(series_key, annotator) / "mask.nii.gz"

    def proposal_path(self, series_key: str, annotator: str) -> Path:
        return self.folder(series_key, annotator) / "proposal.nii.gz"

    def annotators(self, series_key: str) -> list[str]:
        base = self.root / _safe_key(series_key)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "review.json").is_file())

    def series_keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    # -- locking -----------------------------------------------------------------------------
    def lock(self, series_key: str, annotator: str) -> WriterLock:
        """Take (or return the already held) write lock of one annotator's mask."""
        key = (_safe_key(series_key), safe_annotator_name(annotator))
        lock = self._locks.get(key)
        if lock is None or not lock.held:
            lock = WriterLock(self.folder(series_key, annotator), key[1]).acquire()
            self._locks[key] = lock
        return lock

    def unlock(self, series_key: str, annotator: str) -> None:
        lock = self._locks.pop((_safe_key(series_key), safe_annotator_name(annotator)), None)
        if lock is not None:
            lock.release()

    def close(self) -> None:
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()

    # -- reading -----------------------------------------------------------------------------
    def exists(self, series_key: str, annotator: str) -> bool:
        return (self.folder(series_key, annotator) / "review.json").is_file()

    def load(self, series_key: str, annotator: str, volume: Volume | None = None) -> Annotation | None:
        """The saved annotation, or None if this annotator has none for this series."""
        folder = self.folder(series_key, annotator)
        payload = _read_json(folder / "review.json")
        if payload is None:
            payload = self._newest_version_json(folder)
            if payload is None:
                return None
        mask_file = folder / payload.get("mask_file", "mask.nii.gz")
        if not mask_file.is_file():
            mask_file = folder / "mask.nii.gz"
        try:
            mask, affine = load_mask_nifti(mask_file)
        except PtxError as exc:
            raise PtxError(f"The saved mask of '{annotator}' ({mask_file}) cannot be read: {exc}") from exc
        annotation = _annotation_from_json(payload, mask, affine)
        if volume is not None and mask.shape != volume.shape:
            raise GeometryMismatchError(
                f"The saved mask of '{annotator}' has shape {mask.shape} but the series has {volume.shape}: "
                f"it belongs to another reconstruction. Move '{folder}' away to start afresh."
            )
        return annotation

    def load_proposal(self, volume: Volume, annotator: str) -> np.ndarray | None:
        """The last proposal kept for this annotator, or None (none, unreadable or another grid).

        A proposal can always be made again, so a damaged one never stops a study from opening.
        """
        path = self.proposal_path(volume.key, annotator)
        if not path.is_file():
            return None
        try:
            mask, affine = load_mask_nifti(path)
        except PtxError:
            return None
        if mask.shape != volume.shape or not np.allclose(affine, volume.affine, atol=1e-3):
            return None
        return mask

    def load_or_empty(self, volume: Volume, annotator: str) -> Annotation:
        return self.load(volume.key, annotator, volume) or Annotation.empty(volume, annotator)

    def versions(self, series_key: str, annotator: str) -> list[int]:
        folder = self.folder(series_key, annotator) / "versions"
        found = [int(m.group(1)) for p in folder.glob("review-v*.json") if (m := re.match(r"review-v(\d+)\.json", p.name))]
        return sorted(found)

    def load_version(self, series_key: str, annotator: str, version: int) -> Annotation:
        folder = self.folder(series_key, annotator)
        payload = _read_json(folder / "versions" / f"review-v{version:06d}.json")
        if payload is None:
            raise PtxError(f"Version {version} of '{annotator}' is not kept; kept: {self.versions(series_key, annotator)}.")
        mask, affine = load_mask_nifti(folder / payload["mask_file"])
        return _annotation_from_json(payload, mask, affine)

    def _newest_version_json(self, folder: Path):
        for version in reversed(self.versions(folder.parent.name, folder.name)):
            payload = _read_json(folder / "versions" / f"review-v{version:06d}.json")
            if payload is not None:
                return payload
        return None

    # -- writing -----------------------------------------------------------------------------
    def save(self, annotation: Annotation) -> int:
        """Write a new version atomically and return its number (takes the lock if not held)."""
        if annotation.mask.ndim != 3 or len(annotation.review) != annotation.mask.shape[0]:
            raise PtxError(
                f"Annotation of '{annotation.annotator}' is inconsistent: mask {annotation.mask.shape}, "
                f"{len(annotation.review)} review entries."
            )
        self.lock(annotation.series_key, annotation.annotator)
        folder = self.folder(annotation.series_key, annotation.annotator)
        versions_dir = folder / "versions"
        versions_dir.mkdir(parents=True, exist_ok=True)
        on_disk = self.versions(annotation.series_key, annotation.annotator)
        number = max([annotation.version, *on_disk]) + 1
        mask_name = f"versions/mask-v{number:06d}.nii.gz"
        with atomic_path(folder / mask_name, suffix=".nii.gz") as tmp:
            save_mask_nifti(annotation.mask, annotation.affine, tmp)
        previous = (annotation.version, annotation.saved_at)
        annotation.version, annotation.saved_at = number, utc_now()
        try:
            payload = annotation.review_json(mask_name)
            write_json_atomic(versions_dir / f"review-v{number:06d}.json", payload)
            write_json_atomic(folder / "review.json", payload)  # the commit point
        except BaseException:
            annotation.version, annotation.saved_at = previous
            raise
        self._publish_current_mask(folder, folder / mask_name)
        self._prune(folder, number)
        return number

    def save_proposal(self, series_key: str, annotator: str, mask: np.ndarray, affine: np.ndarray) -> None:
        """Keep the latest proposal overlay beside the annotator's mask (atomic; takes the lock)."""
        self.lock(series_key, annotator)
        folder = self.folder(series_key, annotator)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "proposal.nii.gz", suffix=".nii.gz") as tmp:
            save_mask_nifti(np.asarray(mask, dtype=np.uint8), affine, tmp)

    def _publish_current_mask(self, folder: Path, version_file: Path) -> None:
        """Point ``mask.nii.gz`` at the new version (a hard link where the filesystem allows)."""
        with atomic_path(folder / "mask.nii.gz", suffix=".nii.gz") as tmp:
            os.unlink(tmp)
            try:
                os.link(version_file, tmp)
            except OSError:
                import shutil

                shutil.copyfile(version_file, tmp)

    def _prune(self, folder: Path, newest: int) -> None:
        cutoff = newest - self.keep_versions
        for path in (folder / "versions").glob("*-v*.*"):
            match = re.search(r"-v(\d+)\.", path.name)
            if match and int(match.group(1)) <= cutoff:
                path.unlink(missing_ok=True)
        fsync_dir(folder / "versions")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _annotation_from_json(payload: dict, mask: np.ndarray, affine: np.ndarray) -> Annotation:
    slices = payload.get("slices") or []
    review = ReviewLog(SliceReview.from_json(entry) for entry in slices)
    if len(review) != mask.shape[0]:
        review = ReviewLog.fresh(mask.shape[0])
    return Annotation(
        series_key=payload.get("series_key", ""),
        annotator=payload.get("annotator", ""),
        mask=mask,
        affine=affine,
        review=review,
        proposals=payload.get("proposals") or {},
        current_slice=payload.get("current_slice"),
        version=int(payload.get("version", 0)),
        saved_at=payload.get("saved_at"),
        extra=payload.get("extra") or {},
    )
