"""The review workflow of one annotator on one series, free of any GUI.

A :class:`ReviewSession` holds the CT, the annotator's :class:`~ptx_annotator.review.store.Annotation`
(mask + per-slice review log), the current proposal (mask and probabilities, filled slice by
slice as a proposer yields them), the slice on screen and the store it saves to. The napari
widget is a thin shell over it: every button calls one method here, views subscribe to
:attr:`ReviewSession.events`, and tests drive the same methods without a viewer.

Rules of the workflow
---------------------
* A proposal slice replaces the annotator's mask only where no person has decided yet
  (state ``unreviewed`` with an empty mask, or ``proposed``); those slices become ``proposed``.
  Re-thresholding follows the same rule, so it never changes a reviewed or flagged slice.
* ``accept`` vouches for the slice as shown (the proposal unless edited); ``flag`` asks for a
  second look; ``clear`` empties the slice (``edited``). Painting, and every tool of
  :class:`~ptx_annotator.review.tools.ReviewTools` (brush, HU-limited brush, fill between slices,
  grow region, copy the proposal into a range), marks the slices it changed ``edited``.
* Every person's action is one undoable edit: :meth:`ReviewSession.undo` puts back the mask and
  the review state of each slice it touched; :meth:`ReviewSession.restore_slice_state` does the
  same for a slice a viewer's own undo restored.
* Saving never raises: a failure is kept in :attr:`last_save_error` and sent as ``events.error``;
  the work stays in memory.

Events (psygnal, ``session.events``)
------------------------------------
``states_changed(list[int])``, ``mask_changed(list[int])``, ``proposal_changed(list[int])``: the z
indices whose review state, annotator mask or proposal changed (one emission per action);
``slice_changed(int)``: the current slice; ``saved(int)``: the version written;
``error(str)``: a one-line message (a failed save).
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal, SignalGroup

from ptx_annotator.errors import PtxError
from ptx_annotator.geometry import PatientSides
from ptx_annotator.proposers.contract import Proposal, SliceResult
from ptx_annotator.review.merge import merge_proposal, record_proposal
from ptx_annotator.review.history import Edit, EditHistory, EditingMixin
from ptx_annotator.review.ranking import SliceRanker, next_in_order
from ptx_annotator.review.saving import SavingMixin, visit_key
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED, UNREVIEWED, review_provenance
from ptx_annotator.review.store import Annotation, AnnotationStore
from ptx_annotator.review.tools import ReviewTools
from ptx_annotator.volume import Volume

SIDES = ("right", "left")


class SessionEvents(SignalGroup):
    """What a :class:`ReviewSession` tells its views (see the module doc)."""

    states_changed = Signal(list)
    mask_changed = Signal(list)
    proposal_changed = Signal(list)
    slice_changed = Signal(int)
    saved = Signal(int)
    error = Signal(str)


class ReviewSession(EditingMixin, SavingMixin, ReviewTools):
    """One annotator reviewing one series.

    Parameters
    ----------
    volume : Volume
        The CT.
    annotation : Annotation
        The annotator's mask and review log (``mask`` is edited in place, so a viewer layer may
        share the array).
    store : AnnotationStore or None
        Where saves go; None keeps everything in memory.
    anatomy : ThoraxAnatomy, optional
        Of ``volume`` (:func:`ptx_annotator.anatomy.segment_thorax`, computed when not given): the
        volume per side follows the one side rule of :class:`ptx_annotator.geometry.PatientSides`,
        so the viewer's running count and ``quantify`` agree.
    """

    def __init__(self, volume: Volume, annotation: Annotation, store: AnnotationStore | None = None, anatomy=None):
        if annotation.mask.shape != volume.shape:
            raise PtxError(f"The mask {annotation.mask.shape} does not fit the series {volume.shape}.")
        self.volume = volume
        self.annotation = annotation
        self.store = store
        self.events = SessionEvents()
        self.history = EditHistory()
        self.proposal_mask = np.zeros(volume.shape, dtype=np.uint8)
        self.proposal_probabilities: np.ndarray | None = None
        self.proposal_source: str | None = None
        self.proposal_params: dict = {}
        #: Slices the current proposal covers (a proposer streams them in).
        self.proposal_indices: set[int] = set()
        self.threshold = 0.5
        self._changes = self._saved_changes = 0
        self._proposal_changes = self._saved_proposal_changes = 0
        self.last_save_error: str | None = None
        n = volume.shape[0]
        start = annotation.current_slice
        self.current_slice = int(start) if start is not None and 0 <= int(start) < n else n // 2
        self._saved_slice = annotation.current_slice
        self._known_mask = annotation.mask.copy()  # the mask as this session last saw it (before a viewer's stroke)
        self._current_edit: Edit | None = None
        self._depth = 0
        self._pending: dict[str, set[int]] = {"states": set(), "mask": set(), "proposal": set()}
        self.ranker = SliceRanker(annotation.mask)
        self.ranker.refresh()  # scored once at opening, so the first N is as quick as the others
        #: The side rule over the anatomy: given, handed over (set_anatomy) or segmented on first
        #: need (a volume per side, a region to grow).
        self._patient_sides = None if anatomy is None else PatientSides(anatomy, volume.affine)
        #: Painted voxels per slice, and their split right / left once the sides are known; the
        #: slices still to split wait in ``_unsplit`` (opening segments nothing).
        self._painted = np.zeros(n, dtype=np.int64)
        self._side_counts = np.zeros((n, 2), dtype=np.int64)
        self._unsplit: set[int] = set()
        for z in range(n):
            self._count_slice(z)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, volume: Volume, store: AnnotationStore | None, annotator: str, anatomy=None) -> "ReviewSession":
        """The annotator's saved work on ``volume`` (or a fresh one), with the store's lock taken."""
        if store is None:
            return cls(volume, Annotation.empty(volume, annotator), None, anatomy)
        annotation = store.load_or_empty(volume, annotator)
        store.lock(volume.key, annotation.annotator)
        session = cls(volume, annotation, store, anatomy)
        kept = store.load_proposal(volume, annotation.annotator)
        if kept is not None:
            session.restore_proposal(kept)
        return session

    @property
    def annotator(self) -> str:
        return self.annotation.annotator

    @property
    def n_slices(self) -> int:
        return self.volume.shape[0]

    def states(self) -> list[str]:
        return self.annotation.review.states()

    def state(self, index: int | None = None) -> str:
        return self.annotation.review[self.current_slice if index is None else index].state

    def proposed_slices(self) -> list[int]:
        """Slices showing machine output nobody has reviewed yet (state ``proposed``)."""
        return [z for z, state in enumerate(self.states()) if state == PROPOSED]

    def empty_proposed_slices(self) -> list[int]:
        """The proposed slices whose mask is empty (the proposer found nothing there)."""
        return [z for z in self.proposed_slices() if not self.annotation.mask[z].any()]

    def provenance(self) -> dict:
        """Slice counts per state and voxels by who decided (:func:`~ptx_annotator.review.states.review_provenance`)."""
        return review_provenance(self.annotation.review, self.annotation.mask)

    @property
    def has_probabilities(self) -> bool:
        """Whether the proposal can be re-thresholded (the classical proposer gives no probabilities)."""
        return self.proposal_probabilities is not None

    # -- navigation ----------------------------------------------------------------------------
    def go_to(self, index: int, autosave: bool = True) -> bool:
        """Make ``index`` the current slice; saves pending work first. Returns whether it moved."""
        index = int(np.clip(index, 0, self.n_slices - 1))
        if index == self.current_slice:
            return False
        before = int(self._painted[self.current_slice])
        self._count_slice(self.current_slice)  # catches edits made behind our back (e.g. undo)
        if before != self._painted[self.current_slice]:
            self.dirty = True
        left = self.current_slice
        self.current_slice = index
        self.annotation.current_slice = index
        self.events.slice_changed.emit(index)
        if autosave and self.dirty:
            self.save(coalesce_key=visit_key(left))
        return True

    def next_slice(self, current: int | None = None, direction: int = 1, ranked: bool = True) -> int | None:
        """The next slice needing review after ``current`` (default: the current slice); no move.

        ``ranked`` orders by need (:mod:`ptx_annotator.review.ranking`) and ``direction`` -1 steps
        back in that order, starting again from its other end past the last one; ``ranked=False``
        is the plain slice order. None when none is left.
        """
        current = self.current_slice if current is None else int(current)
        step = 1 if direction >= 0 else -1
        if not ranked:
            return self.annotation.review.next_needing_review(current, step)
        return next_in_order(self.ranker.order(self.states()), current, step, wrap=True)

    def next_needing_review(self, step: int = 1, ranked: bool = False) -> int | None:
        """Go to the next slice needing review (see :meth:`next_slice`); returns it or None."""
        target = self.next_slice(self.current_slice, step, ranked)
        if target is not None:
            self.go_to(target)
        return target

    # -- review actions ------------------------------------------------------------------------
    def accept(self, index: int | None = None) -> None:
        """The slice's mask as shown is right (the proposal, unless it was edited)."""
        self.accept_slices([self._index(index)])

    def accept_slices(self, indices) -> list[int]:
        """Accept several slices as one undoable edit (edited slices stay ``edited``); returns them."""
        slices = sorted({self._index(i) for i in indices})
        with self._edit("accept"):
            for z in slices:
                source = None
                if self.state(z) == UNREVIEWED and z in self.proposal_indices and not self.annotation.mask[z].any():
                    self._set_mask_slice(z, self.proposal_mask[z])
                    source = self.proposal_source
                state = EDITED if self.state(z) == EDITED else ACCEPTED
                self._mark(z, state, source=source)
        return slices

    def accept_empty_proposed(self) -> list[int]:
        """Accept every proposed slice with an empty mask in one go; returns them."""
        return self.accept_slices(self.empty_proposed_slices())

    def flag(self, index: int | None = None) -> None:
        """Ask for a second look at this slice (mask unchanged)."""
        with self._edit("flag"):
            self._mark(self._index(index), FLAGGED)

    def clear(self, index: int | None = None) -> None:
        """Empty the slice's mask: a person decided there is no pneumothorax here."""
        z = self._index(index)
        with self._edit("clear"):
            self._set_mask_slice(z, 0)
            self._mark(z, EDITED)

    def mark_edited(self, indices=None) -> None:
        """Record that a person painted or erased on these slices (default: the current one).

        The strokes were made straight into the shared mask array; the slices as the session saw
        them before are kept, so :meth:`undo` restores both mask and state.
        """
        with self._edit("paint"):
            for z in sorted({self.current_slice} if indices is None else {int(i) for i in indices}):
                if 0 <= z < self.n_slices:
                    self._capture(z)
                    self._known_mask[z] = self.annotation.mask[z]
                    self._count_slice(z)
                    self._pending["mask"].add(z)
                    if self.state(z) != EDITED:
                        self._mark(z, EDITED)
                    self.dirty = True

    # -- proposals -----------------------------------------------------------------------------
    def begin_proposal(self, source: str, params: dict | None = None, with_probabilities: bool = True) -> None:
        """Start a new proposal run (the previous proposal is dropped)."""
        self.proposal_mask[:] = 0
        self.proposal_probabilities = np.zeros(self.volume.shape, np.float32) if with_probabilities else None
        self.proposal_source = source
        self.proposal_params = dict(params or {})
        self.proposal_indices = set()
        self.ranker.set_probabilities(self.proposal_probabilities, self.threshold)
        with self._batch():
            self._pending["proposal"].update(range(self.n_slices))

    def add_proposal_slice(self, result: SliceResult) -> bool:
        """Take one slice from a proposer; returns whether the annotator's mask changed."""
        z = int(result.index)
        if self.proposal_source is None:
            self.begin_proposal("unknown")
        with self._batch():
            self.proposal_mask[z] = np.asarray(result.mask, dtype=np.uint8) > 0
            if self.proposal_probabilities is not None and result.probability is not None:
                self.proposal_probabilities[z] = result.probability
            self.proposal_indices.add(z)
            self._pending["proposal"].add(z)
            offered = self._offer_proposal(z)
        self.ranker.refresh([z])  # scored while the proposal streams in, so N stays quick afterwards
        return offered

    def finish_proposal(self, completed: bool) -> None:
        """Record the proposal in the annotation (which proposer, with what settings, complete or not)."""
        if self.proposal_source is None:
            return
        proposal = self._proposal_view()
        proposal.completed = bool(completed)
        record_proposal(self.annotation, proposal, threshold=self.threshold, with_probabilities=self.has_probabilities)
        self._proposal_changes += 1
        self.dirty = True

    def restore_proposal(self, mask: np.ndarray) -> None:
        """Show a kept proposal again (as the overlay only: the annotator's mask already holds its part)."""
        self.proposal_mask[:] = np.asarray(mask, dtype=np.uint8) > 0
        self.proposal_probabilities = None
        records = [r for r in self.annotation.proposals.values() if isinstance(r, dict)]
        record = records[-1] if records else None  # the newest run comes last
        self.proposal_source = (record or {}).get("source") or "kept proposal"
        self.proposal_params = dict((record or {}).get("params") or {})
        self.proposal_indices = set(range(self.n_slices))
        self.ranker.set_probabilities(None, self.threshold)
        with self._batch():
            self._pending["proposal"].update(range(self.n_slices))

    def set_threshold(self, threshold: float) -> list[int]:
        """Re-threshold the stored probabilities; returns the slices whose proposal changed.

        Without probabilities (the classical proposer, a kept proposal) nothing changes. Only
        slices nobody decided on take the new proposal; reviewed and flagged slices never change.
        """
        if self.proposal_probabilities is None:
            return []
        self.threshold = float(threshold)
        self.ranker.set_probabilities(self.proposal_probabilities, self.threshold)
        changed = []
        with self._batch():
            for z in sorted(self.proposal_indices):
                new = (self.proposal_probabilities[z] >= self.threshold).astype(np.uint8)
                if not np.array_equal(new, self.proposal_mask[z]):
                    self.proposal_mask[z] = new
                    self._pending["proposal"].add(z)
                    self._offer_proposal(z)
                    changed.append(z)
        if changed:
            self._proposal_changes += 1
            self.dirty = True
        return changed

    def _offer_proposal(self, z: int) -> bool:
        """The one merge rule (:func:`ptx_annotator.review.merge.merge_proposal`) for slice ``z``."""
        merged = merge_proposal(self.annotation, self._proposal_view(), [z], write=self._take_proposal_slice)
        return bool(merged.proposed)

    def _proposal_view(self) -> Proposal:
        return Proposal(mask=self.proposal_mask, probabilities=self.proposal_probabilities,
                        source=self.proposal_source or "unknown", params=self.proposal_params,
                        slices_done=sorted(self.proposal_indices))

    def _take_proposal_slice(self, z: int, values: np.ndarray, source: str) -> None:
        self._set_mask_slice(z, values)
        self._mark(z, PROPOSED, source=source, by=source)

    # -- measurements --------------------------------------------------------------------------
    def volume_ml(self, segment: bool = True) -> dict[str, float | None]:
        """Pneumothorax volume of the annotator's mask in mL: right, left and total.

        Sides by the one side rule (:class:`ptx_annotator.geometry.PatientSides`): the
        hemithorax a voxel lies in, else the mid-sagittal plane, from the volume's affine. The
        anatomy is segmented here if nobody handed it over; with ``segment=False`` (a viewer that
        segments it in a worker) right and left are None until :meth:`set_anatomy`.
        """
        ml = self.volume.voxel_volume_ml
        total = float(self._painted.sum()) * ml
        if self._unsplit:
            if self._patient_sides is None and not segment:
                return {"right": None, "left": None, "total": total}
            for z in sorted(self._unsplit):
                self._split_slice(z)
        right, left = self._side_counts.sum(axis=0)
        return {"right": float(right) * ml, "left": float(left) * ml, "total": total}

    @property
    def anatomy(self):
        """The thorax segmentation in use (None until segmented or handed over)."""
        return None if self._patient_sides is None else self._patient_sides.anatomy

    @property
    def sides_known(self) -> bool:
        """Whether the hemithoraces are known (segmented, or handed over by :meth:`set_anatomy`)."""
        return self._patient_sides is not None

    def refresh_counts(self, indices=None) -> None:
        """Recount mask voxels per side (after the mask changed outside this class)."""
        for z in range(self.n_slices) if indices is None else indices:
            self._count_slice(int(z))

    @property
    def _sides(self) -> PatientSides:
        """The one side rule over this CT's anatomy, segmented only when first needed.

        Opening costs no segmentation (painted slices are split into sides when a volume per
        side is asked for); a viewer that segments the anatomy in a worker hands it over with
        :meth:`set_anatomy`.
        """
        if self._patient_sides is None:
            from ptx_annotator.anatomy import segment_thorax

            self._patient_sides = PatientSides(segment_thorax(self.volume), self.volume.affine)
        return self._patient_sides

    def set_anatomy(self, anatomy) -> None:
        """Use ``anatomy`` (of this volume, e.g. segmented in a worker) for sides and region growing."""
        if self._patient_sides is None:
            self._patient_sides = PatientSides(anatomy, self.volume.affine)

    # -- internals -----------------------------------------------------------------------------
    def _index(self, index: int | None) -> int:
        z = self.current_slice if index is None else int(index)
        if not 0 <= z < self.n_slices:
            raise PtxError(f"Slice {z} is outside the series (0..{self.n_slices - 1}).")
        return z

    def _set_mask_slice(self, z: int, values) -> None:
        self._capture(z)
        self.annotation.mask[z] = values
        self._known_mask[z] = self.annotation.mask[z]
        self._count_slice(z)
        self.dirty = True
        self._note("mask", z)

    def _mark(self, z: int, state: str, source: str | None = None, by: str | None = None) -> None:
        self._capture(z)
        self.annotation.review.mark(z, state, by or self.annotator, source=source)
        self.dirty = True
        self._note("states", z)

    def _count_slice(self, z: int) -> None:
        self._painted[z] = np.count_nonzero(self.annotation.mask[z])
        self._unsplit.discard(z)
        if not self._painted[z]:
            self._side_counts[z] = (0, 0)
        elif self._patient_sides is None:
            self._unsplit.add(z)  # split when the sides are asked for (volume_ml)
        else:
            self._split_slice(z)

    def _split_slice(self, z: int) -> None:
        self._side_counts[z] = self._sides.count_slice(self.annotation.mask[z], z)
        self._unsplit.discard(z)

