"""The proposal contract: any proposer turns a Volume into per-slice masks, slice by slice.

A proposer is an object with ``source_id`` (a short stable string recorded in the review log),
``describe()`` (a JSON-able dict of its settings) and ``iter_slices(volume, first_slice,
should_cancel)``, a generator of :class:`SliceResult`. The slice on screen comes first, the rest
follow; ``should_cancel()`` is checked between slices.

The generator is the whole proposal, 3D clean-up included: a proposer whose mask needs a pass
over the assembled volume (the model's small-component rule) runs its slices through
:func:`finish_after_last_slice`, which, once every slice was yielded, yields again
(``revised=True``) each slice the clean-up changed. Every door (``predict``, the napari viewer,
the fine-tune re-proposal) consumes that one generator, so the same input gives the same mask
whichever door it came through. :func:`propose_volume` gathers it into one :class:`Proposal`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from ptx_annotator.review.states import utc_now
from ptx_annotator.volume import Volume


@dataclass
class SliceResult:
    """The proposal for one z slice, with progress so far."""

    index: int
    mask: np.ndarray
    probability: np.ndarray | None
    done: int
    total: int
    revised: bool = False  # the 3D clean-up changed this already-yielded slice


@dataclass
class Proposal:
    """A whole-volume proposal: mask (uint8), optional probabilities, and where it came from."""

    mask: np.ndarray
    probabilities: np.ndarray | None
    source: str
    params: dict = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    completed: bool = True
    slices_done: list[int] = field(default_factory=list)

    def record(self) -> dict:
        """What the review log keeps about this proposal (:func:`ptx_annotator.review.merge.proposal_record`)."""
        from ptx_annotator.review.merge import proposal_record

        return proposal_record(self)


class Proposer(Protocol):
    source_id: str

    def describe(self) -> dict: ...

    def iter_slices(self, volume: Volume, first_slice: int | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> Iterator[SliceResult]: ...


def slice_order(n_slices: int, first_slice: int | None) -> list[int]:
    """``first_slice`` first, then the others outwards from it (the annotator's neighbourhood first)."""
    if first_slice is None or not 0 <= first_slice < n_slices:
        return list(range(n_slices))
    order = [first_slice]
    for offset in range(1, n_slices):
        for index in (first_slice + offset, first_slice - offset):
            if 0 <= index < n_slices:
                order.append(index)
    return order


def finish_after_last_slice(results: Iterable[SliceResult], volume: Volume,
                            finish: Callable[[np.ndarray, Volume], np.ndarray],
                            should_cancel: Callable[[], bool] | None = None) -> Iterator[SliceResult]:
    """``results``, then the slices that ``finish`` (a 3D clean-up of the assembled mask) changed.

    The clean-up runs only once every slice of ``volume`` was yielded (never on a cancelled run);
    each slice it changed is yielded again with ``revised=True`` and no probability (the slice's
    probabilities stay as they were).
    """
    n_slices = volume.shape[0]
    assembled = np.zeros(volume.shape, dtype=np.uint8)
    seen: set[int] = set()
    for result in results:
        assembled[result.index] = np.asarray(result.mask) > 0
        seen.add(int(result.index))
        yield result
    if len(seen) < n_slices or (should_cancel is not None and should_cancel()):
        return
    finished = (np.asarray(finish(assembled.copy(), volume)) > 0).astype(np.uint8)
    changed = np.flatnonzero((finished != assembled).reshape(n_slices, -1).any(axis=1))
    for index in changed:
        if should_cancel is not None and should_cancel():
            return
        yield SliceResult(index=int(index), mask=finished[index], probability=None, done=n_slices,
                          total=n_slices, revised=True)


def propose_volume(proposer: Proposer, volume: Volume, first_slice: int | None = None,
                   should_cancel: Callable[[], bool] | None = None,
                   on_progress: Callable[[SliceResult], None] | None = None,
                   keep_probabilities: bool = True) -> Proposal:
    """Run ``proposer`` over every slice (or until cancelled) and gather a :class:`Proposal`.

    The mask is the proposer's whole proposal (3D clean-up included); ``on_progress`` is called
    once per slice computed (not for the clean-up's revisions).
    """
    mask = np.zeros(volume.shape, dtype=np.uint8)
    probabilities = np.zeros(volume.shape, dtype=np.float32) if keep_probabilities else None
    done: list[int] = []
    for result in proposer.iter_slices(volume, first_slice, should_cancel):
        mask[result.index] = result.mask
        if probabilities is not None and result.probability is not None:
            probabilities[result.index] = result.probability
        if result.revised:
            continue
        done.append(result.index)
        if on_progress is not None:
            on_progress(result)
    return Proposal(mask=mask, probabilities=probabilities, source=proposer.source_id, params=proposer.describe(),
                    completed=len(done) == volume.shape[0], slices_done=done)
