"""Kept versions of one annotator's work: listing, coalescing, restoring, recovering, pruning.

:class:`VersionHistory` is the part of :class:`~ptx_annotator.review.store.AnnotationStore` that
deals with ``versions/``; it uses the store's ``folder``, ``save``, ``_read_version`` and
``keep_versions``. See the store module for the coalescing rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ptx_annotator.atomic import fsync_dir
from ptx_annotator.errors import PtxError
from ptx_annotator.io.volume_files import load_mask_nifti
from ptx_annotator.review.states import ReviewLog, SliceReview
from ptx_annotator.review.store_check import FORMAT_VERSION, DamagedStoreError, confined, problem_with, read_json

#: An autosave less than this many seconds after its version began joins that version.
COALESCE_SECONDS = 60.0
VERSION_FILE = "review-v{:06d}.json"
MASK_FILE = "versions/mask-v{:06d}.nii.gz"


@dataclass(frozen=True)
class VersionInfo:
    """One kept version: its id, when it was saved, how many mask voxels, the review-state counts."""

    id: int
    saved_at: str | None
    n_voxels: int
    states: dict
    committed: bool = False



class VersionHistory:
    """The versions half of the annotation store (a mixin of AnnotationStore)."""

    # -- versions ----------------------------------------------------------------------------
    def versions(self, series_key: str, annotator: str) -> list[int]:
        """The ids of the kept versions, oldest first."""
        folder = self.folder(series_key, annotator) / "versions"
        found = []
        for path in folder.glob("review-v*.json"):
            digits = path.name[len("review-v"):-len(".json")]
            if digits.isdigit():
                found.append(int(digits))
        return sorted(found)

    def list_versions(self, series_key: str, annotator: str) -> list[VersionInfo]:
        """Every kept version, oldest first (versions whose files are damaged are left out)."""
        folder = self.folder(series_key, annotator)
        committed = read_json(folder / "review.json")
        committed_id = committed.get("version") if isinstance(committed, dict) else None
        known = self._version_infos.get(str(folder), {})
        infos, fresh = [], {}
        for number in self.versions(series_key, annotator):
            entry = self._version_info(folder, number, known.get(number))
            if entry is not None:
                fresh[number] = entry
                infos.append(replace(entry[1], committed=number == committed_id))
        self._version_infos[str(folder)] = fresh  # versions pruned or coalesced away are forgotten
        return infos

    def _version_info(self, folder: Path, number: int, known: tuple | None) -> tuple | None:
        """``(stamp, summary)`` of one kept version, read again only when its file is not ``known``'s.

        A version file is written whole and never changed in place, so what was read stays true
        while its inode, size and mtime (the stamp) are the same: the review widget lists the
        versions after every save, and reading every file each time grew with the hours of work.
        """
        path = folder / "versions" / VERSION_FILE.format(number)
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if known is not None and known[0] == stamp:
            return known
        payload = read_json(path)
        if not isinstance(payload, dict) or problem_with(payload, folder, FORMAT_VERSION):
            return None
        n_voxels = payload.get("n_voxels")
        if not isinstance(n_voxels, int):
            try:
                n_voxels = int(load_mask_nifti(confined(folder, payload["mask_file"]))[0].astype(bool).sum())
            except (PtxError, OSError, TypeError):
                return None
        states = ReviewLog(SliceReview.from_json(e) for e in payload["slices"]).counts()
        return stamp, VersionInfo(number, payload.get("saved_at"), n_voxels, {k: v for k, v in states.items() if v})

    def load_version(self, series_key: str, annotator: str, version: int) -> Annotation:
        folder = self.folder(series_key, annotator)
        path = folder / "versions" / VERSION_FILE.format(int(version))
        if not path.is_file():
            raise PtxError(f"Version {version} of '{annotator}' is not kept; kept: {self.versions(series_key, annotator)}.")
        return self._read_version(folder, path)[0]

    def restore_version(self, series_key: str, annotator: str, version_id: int) -> int:
        """Make kept version ``version_id`` current again, saved as a new version (so it can be undone)."""
        annotation = self.load_version(series_key, annotator, version_id)
        annotation.version = max(self.versions(series_key, annotator), default=0)
        return self.save(annotation, restored_from=int(version_id))

    def recover(self, series_key: str, annotator: str, version_id: int | None = None) -> tuple[int, int]:
        """Restore ``version_id`` or the newest intact kept version; returns (restored id, new id)."""
        folder = self.folder(series_key, annotator)
        candidates = [int(version_id)] if version_id is not None else list(reversed(self.versions(series_key, annotator)))
        reasons = []
        for number in candidates:
            try:
                return number, self.restore_version(series_key, annotator, number)
            except DamagedStoreError as exc:
                reasons.append(f"v{number}: {exc.reason}")
        detail = "; ".join(reasons[:3]) or "none is kept"
        raise PtxError(f"No intact version of '{annotator}' to recover in '{folder / 'versions'}' ({detail}).")

    def _coalesced_with(self, folder: Path, on_disk: list[int], coalesce_key, now: float):
        """(id of the version this autosave replaces or None, when that version began)."""
        if coalesce_key is None or not on_disk:
            return None, None
        newest = read_json(folder / "versions" / VERSION_FILE.format(on_disk[-1]))
        committed = read_json(folder / "review.json")
        if not isinstance(newest, dict) or not isinstance(committed, dict) or committed.get("version") != on_disk[-1]:
            return None, None  # never drop a version that is not the committed one
        if newest.get("coalesce_key") is None:
            return None, None  # an explicit save (import, predict, restore) is never replaced
        started = newest.get("started_epoch")
        if not isinstance(started, (int, float)):
            return None, None
        if newest["coalesce_key"] == coalesce_key or 0 <= now - started < COALESCE_SECONDS:
            return on_disk[-1], float(started)
        return None, None

    def _drop_version(self, folder: Path, number: int) -> None:
        (folder / "versions" / VERSION_FILE.format(number)).unlink(missing_ok=True)
        (folder / MASK_FILE.format(number)).unlink(missing_ok=True)

    def _prune(self, folder: Path) -> None:
        kept = self.versions(folder.parent.name, folder.name)
        committed = read_json(folder / "review.json")
        current = committed.get("version") if isinstance(committed, dict) else None
        for number in kept[:-self.keep_versions]:
            if number != current:
                self._drop_version(folder, number)
        fsync_dir(folder / "versions")

