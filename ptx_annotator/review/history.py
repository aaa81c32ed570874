"""Undo and redo of review edits: each edit keeps, per slice it touched, the mask and review entry
before and after it.

An edit is one person's action (accept a range, a brush stroke, fill between slices, grow a
region ...). Undoing it puts back every touched slice's mask *and* review state, so a slice that
an undone stroke had marked ``edited`` returns to ``proposed`` (or whatever it was).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ptx_annotator.review.states import SliceReview

#: Edits kept for undo (each holds two copies of the slices it touched).
UNDO_DEPTH = 100


@dataclass
class SliceBefore:
    mask: np.ndarray
    review: SliceReview


@dataclass
class Edit:
    """One undoable action: per touched slice, its mask and review entry before and after."""

    label: str
    before: dict[int, SliceBefore] = field(default_factory=dict)
    after: dict[int, SliceBefore] = field(default_factory=dict)

    def capture(self, z: int, mask_slice: np.ndarray, review: SliceReview) -> None:
        """Keep slice ``z`` as it was before this edit first touched it."""
        if z not in self.before:
            self.before[z] = SliceBefore(np.array(mask_slice, copy=True), review)

    def close(self, mask: np.ndarray, review_log) -> None:
        """Record how the touched slices look after the edit; drops slices it left as they were."""
        for z in list(self.before):
            now = SliceBefore(np.array(mask[z], copy=True), review_log[z])
            if np.array_equal(now.mask, self.before[z].mask) and now.review == self.before[z].review:
                del self.before[z]
            else:
                self.after[z] = now

    @property
    def slices(self) -> list[int]:
        return sorted(self.before)


class EditHistory:
    """Bounded undo and redo stacks of :class:`Edit`; a new edit clears the redo stack."""

    def __init__(self, depth: int = UNDO_DEPTH):
        self.depth = int(depth)
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []

    def push(self, edit: Edit) -> None:
        if not edit.before:
            return
        self.undo_stack.append(edit)
        del self.undo_stack[:-self.depth]
        self.redo_stack.clear()

    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def newest_touching(self, z: int) -> Edit | None:
        """The most recent undoable edit that changed slice ``z``."""
        return next((edit for edit in reversed(self.undo_stack) if z in edit.before), None)

    def forget_slice(self, edit: Edit, z: int) -> None:
        """Drop slice ``z`` from ``edit`` (it was undone outside this history); empty edits go."""
        edit.before.pop(z, None)
        edit.after.pop(z, None)
        if not edit.before and edit in self.undo_stack:
            self.undo_stack.remove(edit)


class EditingMixin:
    """Edits, undo and event batching of :class:`~ptx_annotator.review.session.ReviewSession`.

    The session provides ``annotation``, ``history``, ``events``, ``_known_mask`` (the mask as
    the session last saw it), ``_current_edit``, ``_depth``, ``_pending``, ``ranker``,
    ``_count_slice`` and ``_index``.
    """

    def undo(self) -> list[int]:
        """Take back the last edit (masks and review states of its slices); returns those slices."""
        if not self.history.undo_stack:
            return []
        edit = self.history.undo_stack.pop()
        self._apply(edit.before)
        self.history.redo_stack.append(edit)
        return edit.slices

    def redo(self) -> list[int]:
        """Do the last undone edit again; returns its slices."""
        if not self.history.redo_stack:
            return []
        edit = self.history.redo_stack.pop()
        self._apply(edit.after)
        self.history.undo_stack.append(edit)
        return edit.slices

    def restore_slice_state(self, index: int | None = None) -> str:
        """A viewer's own undo changed this slice's mask: bring its review state in line; returns it.

        When the mask is back to what it was before the newest edit of the slice, that edit's
        earlier review state returns (a stroke undone leaves the slice ``proposed`` again);
        otherwise the change counts as a person's edit.
        """
        z = self._index(index)
        edit = self.history.newest_touching(z)
        if edit is not None and np.array_equal(self.annotation.mask[z] > 0, edit.before[z].mask > 0):
            with self._batch():
                self.annotation.review[z] = edit.before[z].review
                self._known_mask[z] = self.annotation.mask[z]
                self._count_slice(z)
                self.history.forget_slice(edit, z)
                self._pending["states"].add(z)
                self._pending["mask"].add(z)
                self.dirty = True
        elif not np.array_equal(self.annotation.mask[z], self._known_mask[z]):
            self.mark_edited([z])
        return self.state(z)

    def _apply(self, entries: dict) -> None:
        with self._batch():
            for z, entry in entries.items():
                self.annotation.mask[z] = entry.mask
                self._known_mask[z] = entry.mask
                self.annotation.review[z] = entry.review
                self._count_slice(z)
                self._pending["mask"].add(z)
                self._pending["states"].add(z)
            self.dirty = True

    def _capture(self, z: int) -> None:
        if self._current_edit is not None:
            self._current_edit.capture(z, self._known_mask[z], self.annotation.review[z])

    def _note(self, kind: str, z: int) -> None:
        self._pending[kind].add(z)
        if self._depth == 0:
            self._flush()

    @contextmanager
    def _batch(self):
        """Collect the changed slices and send each event once, when the outermost batch ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._flush()

    @contextmanager
    def _edit(self, label: str):
        """One undoable edit (nested calls join the outer one)."""
        outer = self._current_edit is None
        if outer:
            self._current_edit = Edit(label)
        self._depth += 1
        try:
            yield self._current_edit
        finally:
            if outer:
                edit, self._current_edit = self._current_edit, None
                edit.close(self.annotation.mask, self.annotation.review)
                self.history.push(edit)
            self._depth -= 1
            if self._depth == 0:
                self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {"states": set(), "mask": set(), "proposal": set()}
        self.ranker.invalidate(pending["mask"] | pending["proposal"])
        if pending["states"]:
            self.events.states_changed.emit(sorted(pending["states"]))
        if pending["mask"]:
            self.events.mask_changed.emit(sorted(pending["mask"]))
        if pending["proposal"]:
            self.events.proposal_changed.emit(sorted(pending["proposal"]))

