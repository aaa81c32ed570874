"""Fine-tune from what is on screen, then re-propose what nobody has reviewed (no Qt here).

The napari Fine-tune widget is a thin shell over these functions:

* :func:`finetune_series` - the reviewed slices of one series (every annotator, or some) in its
  annotation store -> :func:`~ptx_annotator.training.finetune.finetune` into ``<store>/models``;
* :func:`reproposal_results` - the new active model's proposal, slice by slice (a generator);
* :func:`apply_reproposal` - hand those slices to review sessions: a slice changes only if its
  state is ``unreviewed`` (with an empty mask) or ``proposed``; accepted, edited and flagged
  slices are never touched (the one rule, :func:`ptx_annotator.review.merge.merge_proposal`);
* :func:`repropose_store` - the same for annotators with no open session, saved to the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from ptx_annotator.errors import AnnotationLockedError, PtxError
from ptx_annotator.review.store import AnnotationStore
from .data import reviewed_slices_of_volume
from .finetune import FinetuneOutcome, finetune
from .trainer import TrainConfig


def finetune_series(volume, store_root, annotators=None, config: TrainConfig | None = None, *,
                    encoder: str = "resnet50", progress=None, should_cancel=None, log=None) -> FinetuneOutcome:
    """Train on the reviewed slices of ``volume`` in the store at ``store_root``; registry ``<store>/models``."""
    store = AnnotationStore(store_root)
    slices = reviewed_slices_of_volume(volume, store, annotators)
    if not slices:
        raise PtxError(f"No slice of this series is marked accepted or edited in '{store_root}': review some "
                       "slices first (slices without pneumothorax count too).")
    return finetune(slices, Path(store_root) / "models", config, encoder=encoder, progress=progress,
                    should_cancel=should_cancel, log=log)


def reproposal_results(volume, checkpoint, first_slice: int | None = None,
                       should_cancel: Callable[[], bool] | None = None, device: str | None = None):
    """(source_id, params, generator of SliceResult) of the model in ``checkpoint`` over ``volume``.

    The generator is the proposer's whole proposal (its 3D clean-up included, see
    :mod:`ptx_annotator.proposers.contract`): the same mask as ``predict`` and the viewer give.
    """
    from ptx_annotator.proposers import get_proposer

    proposer = get_proposer(checkpoint=checkpoint, device=device)
    return proposer.source_id, proposer.describe(), proposer.iter_slices(volume, first_slice, should_cancel)


def apply_reproposal(session, source: str, params: dict, results: Iterable, completed: bool = True) -> list[int]:
    """Feed ``results`` to a ReviewSession; returns the slices whose mask was replaced."""
    session.begin_proposal(source, params)
    # a slice the 3D clean-up revised comes twice
    changed = {int(result.index) for result in results if session.add_proposal_slice(result)}
    session.finish_proposal(completed)
    return sorted(changed)


def repropose_store(volume, store_root, source: str, params: dict, results: list, skip: Iterable[str] = (),
                    completed: bool = True) -> dict:
    """Apply ``results`` to every annotator of ``volume`` in the store except ``skip``; save each.

    Returns ``{annotator: number of slices changed}``; an annotator whose mask another session
    holds is reported as a string saying so (nothing of theirs is changed).
    """
    from ptx_annotator.review.session import ReviewSession

    store = AnnotationStore(store_root)
    report: dict = {}
    try:
        for name in store.annotators(volume.key):
            if name in set(skip):
                continue
            try:
                session = ReviewSession.open(volume, store, name)
            except AnnotationLockedError as exc:
                report[name] = str(exc)
                continue
            try:
                changed = apply_reproposal(session, source, params, results, completed)
                if not session.save():
                    report[name] = session.last_save_error
                    continue
                report[name] = len(changed)
            finally:
                session.close()
    finally:
        store.close()
    return report
