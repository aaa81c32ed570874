"""The annotation store: one mask and per-slice review state per (series, annotator).

Layout under the store root (``<study>/.ptx/`` by :meth:`AnnotationStore.for_study`)::

    <series_key>/<annotator>/review.json             the commit point: states, who, when, which mask
    <series_key>/<annotator>/versions/mask-vN.nii.gz the mask of version N (NIfTI, the CT's affine)
    <series_key>/<annotator>/versions/review-vN.json the review file of version N
    <series_key>/<annotator>/mask.nii.gz             the current mask, for 3D Slicer / ITK-SNAP
    <series_key>/<annotator>/.lock                   held by the one process allowed to write

A save writes version N's mask under its own name, then its review file, then replaces
``review.json`` (which names that mask and its sha256) - one atomic commit: a reader sees the
old pair or the new pair, never a mix, even after kill -9. ``mask.nii.gz`` is a hard link to the
committed mask, re-linked when a writer opens the folder after a crash; leftover temp files are
removed then too. A damaged or inconsistent ``review.json`` is refused (:class:`DamagedStoreError`)
with the one command that recovers from ``versions/``; it is never reset silently.

Versions are coalesced: an autosave (``save(..., coalesce_key=K)``) replaces the newest version
instead of adding one when that version was also an autosave with the same key (the same visit
of a slice) or began less than :data:`COALESCE_SECONDS` ago. Saves without a key (import,
predict, restore, an explicit save) always add a version. The newest ``keep_versions`` are kept.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptx_annotator.atomic import atomic_path, file_sha256, write_json_atomic
from ptx_annotator.errors import GeometryMismatchError, InvalidAnnotatorError, PtxError
from ptx_annotator.io.volume_files import load_mask_nifti, save_mask_nifti
from ptx_annotator.review.states import ReviewLog, SliceReview, utc_now
from ptx_annotator.review.store_check import FORMAT_VERSION, DamagedStoreError, confined, problem_with, read_json
from ptx_annotator.review.store_lock import WriterLock
from ptx_annotator.review.store_paths import safe_annotator_name, series_folder_name, store_root_for
from ptx_annotator.review.store_versions import (COALESCE_SECONDS, MASK_FILE, VERSION_FILE, VersionHistory,
                                                 VersionInfo)
from ptx_annotator.volume import Volume

DEFAULT_KEEP_VERSIONS = 200


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


class AnnotationStore(VersionHistory):
    """Masks and review states of every annotator of every series under one folder."""

    def __init__(self, root, keep_versions: int = DEFAULT_KEEP_VERSIONS):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise PtxError(f"The annotation store '{self.root}' is a file, not a folder; give a folder with --store DIR.")
        self.keep_versions = max(1, int(keep_versions))
        self._locks: dict[tuple[str, str], WriterLock] = {}
        # per annotator folder: version number -> ((inode, size, mtime) of its file, its VersionInfo)
        self._version_infos: dict[str, dict[int, tuple]] = {}

    @classmethod
    def for_study(cls, study_path, store=None, **kwargs) -> "AnnotationStore":
        """The store of a study: ``store`` (``--store DIR``) if given, else :func:`store_root_for`."""
        if store is not None:
            return cls(os.path.expanduser(os.fspath(store)), **kwargs)
        root = store_root_for(study_path)
        if not root.exists() and not os.access(root.parent, os.W_OK):
            raise PtxError(f"The study folder '{root.parent}' is read-only; give a writable place with --store DIR.")
        return cls(root, **kwargs)

    def recover_command(self, series_key: str, annotator: str) -> str:
        """The one command that restores the newest intact version of this annotator's work."""
        where = shlex.quote(str(self.root.parent)) if self.root.name == ".ptx" else f"--store {shlex.quote(str(self.root))}"
        series = f" --series {shlex.quote(series_key)}" if len(self.series_keys()) > 1 else ""
        return f"ptx-annotate store recover {where} --annotator {shlex.quote(annotator)}{series}"

    # -- paths -------------------------------------------------------------------------------
    def folder(self, series_key: str, annotator: str) -> Path:
        folder = self.root / series_folder_name(series_key) / safe_annotator_name(annotator)
        if self.root.resolve() not in folder.resolve().parents:
            raise InvalidAnnotatorError(f"Annotator {annotator!r} would leave the store folder.")
        return folder

    def mask_path(self, series_key: str, annotator: str) -> Path:
        return self.folder(series_key, annotator) / "mask.nii.gz"

    def proposal_path(self, series_key: str, annotator: str) -> Path:
        return self.folder(series_key, annotator) / "proposal.nii.gz"

    def annotators(self, series_key: str) -> list[str]:
        base = self.root / series_folder_name(series_key)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "review.json").is_file())

    def series_keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "models")

    # -- locking -----------------------------------------------------------------------------
    def lock(self, series_key: str, annotator: str) -> WriterLock:
        """Take (or return the already held) write lock of one annotator's mask.

        Taking it tidies the folder: temp files a crash left are removed and ``mask.nii.gz`` is
        re-linked to the committed mask.
        """
        key = (series_folder_name(series_key), safe_annotator_name(annotator))
        lock = self._locks.get(key)
        if lock is None or not lock.held:
            folder = self.folder(series_key, annotator)
            lock = WriterLock(folder, key[1]).acquire()
            self._locks[key] = lock
            self._tidy(folder)
        return lock

    def unlock(self, series_key: str, annotator: str) -> None:
        lock = self._locks.pop((series_folder_name(series_key), safe_annotator_name(annotator)), None)
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
        """The committed annotation, or None if this annotator has none for this series.

        Raises :class:`DamagedStoreError` (naming the recovery command) for a review file that is
        damaged, inconsistent, or whose mask is missing or not the one it committed.
        """
        folder = self.folder(series_key, annotator)
        review_file = folder / "review.json"
        for _attempt in range(3):  # a writer may commit (and drop a coalesced mask) while we read
            if not review_file.exists():
                newest = self._newest_intact(folder)
                if newest is None:
                    if self.versions(series_key, annotator):
                        raise self._damaged(folder, series_key, "review.json is missing and no kept version is intact")
                    return None
                annotation, payload = newest
                break
            before = _stat_key(review_file)
            try:
                annotation, payload = self._read_version(folder, review_file)
                break
            except DamagedStoreError:
                if _stat_key(review_file) == before:
                    raise
        else:
            raise self._damaged(folder, series_key, "it kept changing while being read")
        if volume is not None and annotation.mask.shape != volume.shape:
            raise GeometryMismatchError(
                f"The saved mask of '{annotator}' has shape {annotation.mask.shape} but the series has {volume.shape}: "
                f"it belongs to another reconstruction. Move '{folder}' away to start afresh."
            )
        return annotation

    def _read_version(self, folder: Path, review_file: Path) -> tuple[Annotation, dict]:
        try:
            payload = json.loads(review_file.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise self._damaged(folder, folder.parent.name, f"it cannot be read as JSON ({type(exc).__name__})",
                                review_file) from None
        reason = problem_with(payload, folder, FORMAT_VERSION)
        mask_file = confined(folder, payload.get("mask_file")) if reason is None else None
        if reason is None and not mask_file.is_file():
            reason = f"its mask file '{payload['mask_file']}' is missing"
        if reason is None and payload.get("mask_sha256") and file_sha256(mask_file) != payload["mask_sha256"]:
            reason = f"its mask file '{payload['mask_file']}' is not the one it committed (sha256 differs)"
        if reason is None:
            try:
                mask, affine = load_mask_nifti(mask_file)
            except PtxError as exc:
                reason = f"its mask file '{payload['mask_file']}' cannot be read ({exc})"
            else:
                if list(mask.shape) != payload["shape"]:
                    reason = f"its mask file has shape {list(mask.shape)}, the review file says {payload['shape']}"
        if reason is not None:
            raise self._damaged(folder, folder.parent.name, reason, review_file)
        return _annotation_from_json(payload, mask, affine), payload

    def _damaged(self, folder: Path, series_key: str, reason: str, review_file: Path | None = None) -> DamagedStoreError:
        where = review_file or folder / "review.json"
        kept = self.versions(series_key, folder.name)
        kept_text = f"versions kept: {kept[0]}..{kept[-1]}" if kept else "no version is kept"
        error = DamagedStoreError(
            f"The review file '{where}' is damaged or inconsistent: {reason}. Nothing was loaded or changed. "
            f"Recover the newest intact version ({kept_text}) with: {self.recover_command(series_key, folder.name)} "
            "[--version ID]"
        )
        error.reason = reason
        return error

    def _newest_intact(self, folder: Path):
        for number in reversed(self.versions(folder.parent.name, folder.name)):
            try:
                return self._read_version(folder, folder / "versions" / VERSION_FILE.format(number))
            except DamagedStoreError:
                continue
        return None

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

    # -- writing -----------------------------------------------------------------------------
    def save(self, annotation: Annotation, *, coalesce_key=None, restored_from: int | None = None) -> int:
        """Commit a new version atomically and return its id (takes the lock if not held).

        With ``coalesce_key`` (an autosave; e.g. the index of the slice being visited) the new
        version replaces the newest one when that was an autosave of the same key or began less
        than :data:`COALESCE_SECONDS` ago; its id is new either way. ``restored_from`` records
        the version a restore copied.
        """
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
        now = time.time()
        replaced, started = self._coalesced_with(folder, on_disk, coalesce_key, now)
        number = max([annotation.version, *on_disk]) + 1
        mask_name = MASK_FILE.format(number)
        with atomic_path(folder / mask_name, suffix=".nii.gz") as tmp:
            save_mask_nifti(annotation.mask, annotation.affine, tmp)
        previous = (annotation.version, annotation.saved_at)
        annotation.version, annotation.saved_at = number, utc_now()
        try:
            payload = annotation.review_json(mask_name)
            payload.update(mask_sha256=file_sha256(folder / mask_name), n_voxels=int(np.count_nonzero(annotation.mask)),
                           started_epoch=started if replaced is not None else now, saved_epoch=now,
                           coalesce_key=coalesce_key, **({"restored_from": restored_from} if restored_from else {}))
            write_json_atomic(versions_dir / VERSION_FILE.format(number), payload)
            write_json_atomic(folder / "review.json", payload)  # the commit point
        except BaseException:
            annotation.version, annotation.saved_at = previous
            raise
        self._publish_current_mask(folder, folder / mask_name)
        if replaced is not None:
            self._drop_version(folder, replaced)
        self._prune(folder)
        return number

    def save_proposal(self, series_key: str, annotator: str, mask: np.ndarray, affine: np.ndarray) -> None:
        """Keep the latest proposal overlay beside the annotator's mask (atomic; takes the lock)."""
        self.lock(series_key, annotator)
        folder = self.folder(series_key, annotator)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "proposal.nii.gz", suffix=".nii.gz") as tmp:
            save_mask_nifti(np.asarray(mask, dtype=np.uint8), affine, tmp)

    def _publish_current_mask(self, folder: Path, version_file: Path) -> None:
        """Point ``mask.nii.gz`` at the committed mask (a hard link where the filesystem allows)."""
        with atomic_path(folder / "mask.nii.gz", suffix=".nii.gz") as tmp:
            os.unlink(tmp)
            try:
                os.link(version_file, tmp)
            except OSError:
                import shutil

                shutil.copyfile(version_file, tmp)

    def _tidy(self, folder: Path) -> None:
        """With the lock held: drop temp files a crash left, re-link ``mask.nii.gz`` if it lags."""
        for place in (folder, folder / "versions"):
            for leftover in place.glob(".tmp-*"):
                try:
                    leftover.unlink()
                except OSError:
                    pass
        payload = read_json(folder / "review.json")
        if not isinstance(payload, dict) or problem_with(payload, folder, FORMAT_VERSION):
            return
        committed, current = confined(folder, payload["mask_file"]), folder / "mask.nii.gz"
        if not committed.is_file():
            return
        try:
            in_step = current.is_file() and (os.path.samefile(committed, current)
                                             or file_sha256(committed) == file_sha256(current))
        except OSError:
            in_step = False
        if not in_step:
            self._publish_current_mask(folder, committed)


def _stat_key(path: Path):
    try:
        info = path.stat()
        return info.st_ino, info.st_mtime_ns, info.st_size
    except OSError:
        return None


def _annotation_from_json(payload: dict, mask: np.ndarray, affine: np.ndarray) -> Annotation:
    """An annotation from a review file that :func:`problem_with` has accepted."""
    return Annotation(
        series_key=payload["series_key"],
        annotator=payload["annotator"],
        mask=mask,
        affine=affine,
        review=ReviewLog(SliceReview.from_json(entry) for entry in payload["slices"]),
        proposals=payload.get("proposals") or {},
        current_slice=payload.get("current_slice"),
        version=int(payload["version"]),
        saved_at=payload.get("saved_at"),
        extra=payload.get("extra") or {},
    )
