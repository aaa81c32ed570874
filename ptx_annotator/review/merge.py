"""A proposal into an annotator's work: one rule and one record for every door.

The review session (napari, fine-tune re-proposal) and ``ptx-annotate predict`` both merge
through :func:`merge_proposal` and record through :func:`record_proposal`.

The rule
--------
A proposal slice replaces the annotator's mask only where no person has decided yet: the slice
is ``proposed`` (an earlier proposal), or ``unreviewed`` with an empty mask. Accepted, edited and
flagged slices are never overwritten, and neither is an unreviewed slice that has content (a mask
drawn or imported without review). A slice that takes the proposal becomes ``proposed``, by and
from the proposer (``source``).

The record
----------
``annotation.proposals[source]`` holds the newest run of each proposer, newest last:
``source``, ``created``, ``params`` (the proposer's ``describe()``), ``completed``, ``slices``
(how many slices it proposed), ``threshold`` (the operating point of its mask, None for a
proposer without one) and ``with_probabilities`` (whether probabilities came with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ptx_annotator.review.states import PROPOSED, UNREVIEWED

RECORD_KEYS = ("source", "created", "params", "completed", "slices", "threshold", "with_probabilities")


@dataclass
class MergeOutcome:
    """Which slices took the proposal and which kept a person's work."""

    proposed: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)


def takes_proposal(annotation, index: int) -> bool:
    """Whether slice ``index`` of ``annotation`` may take a proposal (see the module doc)."""
    state = annotation.review[int(index)].state
    return state == PROPOSED or (state == UNREVIEWED and not np.any(annotation.mask[int(index)]))


def merge_proposal(annotation, proposal, slices: Iterable[int] | None = None, *,
                   write: Callable[[int, np.ndarray, str], None] | None = None) -> MergeOutcome:
    """Put ``proposal``'s slices into ``annotation`` where the rule allows.

    Parameters
    ----------
    annotation : Annotation
        The annotator's mask and review log (changed in place).
    proposal : Proposal
        ``mask`` (z, y, x), ``source`` and ``slices_done``.
    slices : iterable of int, optional
        The slices to merge (default: every slice the proposal covers).
    write : callable, optional
        ``write(z, mask_slice, source)`` sets the slice's mask and marks it ``proposed``; a review
        session passes its own so that its counts, undo and views follow. By default the slice is
        written into ``annotation.mask`` and marked in its review log.
    """
    write = write or _writer(annotation)
    outcome = MergeOutcome()
    for index in proposal.slices_done if slices is None else slices:
        z = int(index)
        if not takes_proposal(annotation, z):
            outcome.kept.append(z)
            continue
        write(z, (np.asarray(proposal.mask[z]) > 0).astype(np.uint8), proposal.source)
        outcome.proposed.append(z)
    return outcome


def _writer(annotation):
    def write(z: int, values: np.ndarray, source: str) -> None:
        annotation.mask[z] = values
        annotation.review.mark(z, PROPOSED, by=source, source=source)

    return write


def proposal_record(proposal, threshold: float | None = None, with_probabilities: bool | None = None) -> dict:
    """The review log's record of ``proposal`` (the keys of :data:`RECORD_KEYS`).

    ``threshold`` defaults to the proposer's own (``params['postprocess']['threshold']``);
    ``with_probabilities`` to whether the proposal carries them.
    """
    if threshold is None:
        threshold = ((proposal.params or {}).get("postprocess") or {}).get("threshold")
    if with_probabilities is None:
        with_probabilities = proposal.probabilities is not None
    return {"source": proposal.source, "created": proposal.created, "params": dict(proposal.params or {}),
            "completed": bool(proposal.completed), "slices": len(proposal.slices_done),
            "threshold": None if threshold is None else float(threshold),
            "with_probabilities": bool(with_probabilities)}


def record_proposal(annotation, proposal, threshold: float | None = None,
                    with_probabilities: bool | None = None) -> dict:
    """Record ``proposal`` in ``annotation.proposals`` as its proposer's newest run (last)."""
    record = proposal_record(proposal, threshold, with_probabilities)
    annotation.proposals.pop(proposal.source, None)  # the newest run goes last
    annotation.proposals[proposal.source] = record
    return record
