"""Saving of a :class:`~ptx_annotator.review.session.ReviewSession`: snapshots any thread can write,
autosaves the store coalesces per slice visit, and a save that never raises.

The session provides ``annotation``, ``store``, ``events``, ``proposal_mask``, ``current_slice``,
``volume``, ``annotator`` and the change counters ``_changes``, ``_saved_changes``,
``_proposal_changes``, ``_saved_proposal_changes``, ``_saved_slice``, ``last_save_error``.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, replace

import numpy as np

from ptx_annotator.errors import PtxError
from ptx_annotator.review.states import ReviewLog
from ptx_annotator.review.store import Annotation


@dataclass
class SaveSnapshot:
    """What one save writes: a copy of the annotation and the change count it includes."""

    annotation: Annotation
    changes: int
    current_slice: int
    proposal: np.ndarray | None = None  # a copy of the proposal overlay when it changed since the last save
    proposal_changes: int = 0
    coalesce_key: str | None = None  # an autosave: joins the newest version of the same visit / minute


def visit_key(index: int) -> str:
    """The coalescing key of the autosaves made while slice ``index`` is on screen."""
    return f"slice {int(index)}"


class SavingMixin:
    """Saving, for :class:`~ptx_annotator.review.session.ReviewSession` (see the module doc)."""

    @property
    def dirty(self) -> bool:
        """Whether there are changes the store has not got yet."""
        return self._changes != self._saved_changes

    @dirty.setter
    def dirty(self, value: bool) -> None:
        if value:
            self._changes += 1
        else:
            self._saved_changes = self._changes

    def save(self, coalesce_key: str | None = None) -> bool:
        """Write the annotation through the store; never raises (see :attr:`last_save_error`).

        ``coalesce_key`` marks an autosave (see :meth:`autosave`); without it a new version is added.
        """
        snapshot = self.snapshot(coalesce_key)
        return self.finish_save(snapshot, self.write_snapshot(snapshot))

    def autosave(self) -> bool:
        """Save as an autosave of the current slice's visit: the store coalesces it with the
        newest version of the same visit (or of the last minute), so the kept versions reach back hours."""
        return self.save(coalesce_key=visit_key(self.current_slice))

    def snapshot(self, coalesce_key: str | None = None) -> "SaveSnapshot":
        """A private copy of the annotation as it is now, for :meth:`write_snapshot` (any thread)."""
        self.annotation.current_slice = self.current_slice
        copy = replace(self.annotation, mask=self.annotation.mask.copy(), review=ReviewLog(self.annotation.review),
                       proposals=deepcopy(self.annotation.proposals), extra=deepcopy(self.annotation.extra))
        proposal = self.proposal_mask.copy() if self._proposal_changes != self._saved_proposal_changes else None
        return SaveSnapshot(copy, self._changes, self.current_slice, proposal, self._proposal_changes, coalesce_key)

    def write_snapshot(self, snapshot: "SaveSnapshot") -> str | None:
        """Save a snapshot; returns None, or the message saying why it failed. Safe off the GUI thread."""
        if self.store is None:
            return None
        try:
            if snapshot.proposal is not None:
                annotation = snapshot.annotation
                self.store.save_proposal(annotation.series_key, annotation.annotator, snapshot.proposal,
                                         annotation.affine)
            if snapshot.coalesce_key is None:
                self.store.save(snapshot.annotation)
            else:
                self.store.save(snapshot.annotation, coalesce_key=snapshot.coalesce_key)
        except (PtxError, OSError, ValueError) as exc:
            return f"Could not save the annotation of '{self.annotator}': {exc}. Your work is kept in memory."
        return None

    def finish_save(self, snapshot: "SaveSnapshot", error: str | None) -> bool:
        """Take note of a finished save (changes made since the snapshot stay pending)."""
        self.last_save_error = error
        if error is not None:
            self.events.error.emit(error)
            return False
        if self.store is not None:
            self.annotation.version = max(self.annotation.version, snapshot.annotation.version)
            self.annotation.saved_at = snapshot.annotation.saved_at
        self._saved_changes = max(self._saved_changes, snapshot.changes)
        if snapshot.proposal is not None:
            self._saved_proposal_changes = max(self._saved_proposal_changes, snapshot.proposal_changes)
        self._saved_slice = snapshot.current_slice
        if self.store is not None:
            self.events.saved.emit(int(snapshot.annotation.version))
        return True

    def close(self) -> bool:
        """Save (if needed) and release the store's lock; returns whether the save succeeded."""
        moved = self.current_slice != self._saved_slice
        ok = self.save() if self.dirty or moved or self.annotation.version == 0 else True
        if ok and self.store is not None:
            self.store.unlock(self.volume.key, self.annotator)
        return ok
