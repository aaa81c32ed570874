"""Proposing off the GUI thread: a controller that loads (and caches) the proposer in the worker.

:class:`ProposalController` is plain Python over napari's ``thread_worker``: ``start(session)``
runs the picked proposer in a worker thread, the slice on screen first. The worker loads the
proposer itself (a checkpoint is read, BatchNorm folded and hashed once, then kept in a cache
keyed by the file's path, size and modification time), tells the GUI thread what it is
(:class:`ProposalStarted`, whether it gives probabilities), then yields one
:class:`~ptx_annotator.proposers.contract.SliceResult` per slice. Slices reach the session on the
GUI thread only, and only the session the run was started for. Progress goes to the activity
dock (``napari.utils.progress``). The controller announces what happened through psygnal
signals; the review widget turns them into messages.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from napari.qt.threading import thread_worker
from psygnal import Signal

from ptx_annotator.errors import PtxError

CLASSICAL = "classical"


@dataclass
class ProposalStarted:
    """The worker's first message: the proposer is loaded."""

    source: str
    params: dict
    with_probabilities: bool


def make_proposer(checkpoint: str | None = None):
    """The classical proposer, or the model of ``checkpoint`` (via the core's one ``get_proposer``)."""
    from ptx_annotator.proposers import get_proposer

    try:
        return get_proposer(checkpoint=checkpoint or None, proposer=CLASSICAL)
    except ImportError as exc:
        raise PtxError(f"The {'model' if checkpoint else 'classical'} proposer is not available in this "
                       f"installation ({exc}). Reinstall ptx-annotator with its dependencies.") from exc


class ProposerCache:
    """Loaded proposers by checkpoint file (path, size, mtime); safe to use from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict = {}
        self.loads = 0

    @staticmethod
    def key(checkpoint: str | None):
        if not checkpoint:
            return (CLASSICAL,)
        stat = os.stat(checkpoint)
        return (os.path.abspath(checkpoint), stat.st_size, stat.st_mtime_ns)

    def get(self, checkpoint: str | None):
        key = self.key(checkpoint)
        with self._lock:
            proposer = self._loaded.get(key)
            if proposer is None:
                proposer = make_proposer(checkpoint)
                self.loads += 1
                self._loaded = {key: proposer}  # keep the newest only: a model may be large
            return proposer


class ProposalRun:
    """One run: its session, its cancel flag and how far it got."""

    def __init__(self, session, total: int):
        self.session = session
        self.total = total
        self.cancel_event = threading.Event()
        self.slices_done = 0
        self.changed = 0
        self.worker = None
        self.progress = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class ProposalController:
    """Picks, loads and runs a proposer for a review session.

    Signals: ``started(source)`` once the proposer is loaded, ``finished(completed: bool, slices: int)``
    when a started run ends, ``failed(message)``, and ``ended()`` after every run however it ended.
    """

    started = Signal(str)
    finished = Signal(bool, int)
    failed = Signal(str)
    ended = Signal()

    def __init__(self) -> None:
        self.checkpoint: str | None = None
        self.cache = ProposerCache()
        self.run: ProposalRun | None = None

    @property
    def running(self) -> bool:
        return self.run is not None

    def set_checkpoint(self, path: str | None) -> None:
        self.checkpoint = os.fspath(path) if path else None

    def kept_proposal_matches(self, session) -> bool:
        """Whether ``session`` shows a kept proposal by the proposer picked now (no need to redo it)."""
        kept = session.proposal_source if session is not None else None
        if not kept:
            return False
        if self.checkpoint is None:
            from ptx_annotator.proposers.classical import ClassicalProposer

            return kept == ClassicalProposer.source_id
        from ptx_annotator.atomic import file_sha256

        recorded = (session.proposal_params.get("checkpoint") or {}).get("sha256")
        try:
            return bool(recorded) and recorded == file_sha256(self.checkpoint)
        except OSError:
            return False

    def start(self, session) -> ProposalRun:
        """Propose over ``session``'s volume in a worker thread, its current slice first."""
        from napari.utils import progress

        if self.run is not None:
            raise PtxError("A proposal is already running; cancel it first.")
        run = self.run = ProposalRun(session, session.n_slices)
        run.worker = _propose_in_worker(self.cache, self.checkpoint, session.volume, session.current_slice,
                                        run.cancel_event)
        run.worker.yielded.connect(lambda item, run=run: self._on_item(run, item))
        run.worker.errored.connect(lambda exc, run=run: self._on_error(run, exc))
        run.worker.finished.connect(lambda run=run: self._on_finished(run))
        name = os.path.basename(self.checkpoint) if self.checkpoint else CLASSICAL
        run.progress = progress(total=run.total, desc=f"Proposing ({name})")
        run.worker.start()
        return run

    def cancel(self) -> None:
        """Ask the run to stop after the slice in hand (what it proposed so far is kept)."""
        if self.run is not None:
            self.run.cancel_event.set()
            self.run.worker.quit()

    def stop(self) -> None:
        """Cancel and forget the run at once: its late slices are ignored (the series is closing)."""
        run = self.run
        if run is not None:
            self.cancel()
            self._end(run)

    # -- GUI-thread callbacks -------------------------------------------------------------------
    def _on_item(self, run: ProposalRun, item) -> None:
        if run is not self.run:
            return
        session = run.session
        if isinstance(item, ProposalStarted):
            session.begin_proposal(item.source, item.params, with_probabilities=item.with_probabilities)
            self.started.emit(item.source)
            return
        run.slices_done += 1
        if session.add_proposal_slice(item):
            run.changed += 1
        if run.progress is not None:  # last: the activity dock may process pending events (even the run's end)
            run.progress.update(1)

    def _on_error(self, run: ProposalRun, exc) -> None:
        if run is self.run:
            message = str(exc) if isinstance(exc, PtxError) else f"{type(exc).__name__}: {exc}"
            self.failed.emit(f"The proposer failed: {message}. Slices proposed so far are kept.")

    def _on_finished(self, run: ProposalRun) -> None:
        if run is not self.run:
            return  # stopped when its series was closed
        self._end(run)
        session = run.session
        if session.proposal_source is None:
            return  # failed before the proposer was loaded
        completed = len(session.proposal_indices) == run.total
        session.finish_proposal(completed)
        self.finished.emit(completed, len(session.proposal_indices))

    def _end(self, run: ProposalRun) -> None:
        if run is self.run:
            self.run = None
        if run.progress is not None:
            run.progress.close()
            run.progress = None
        self.ended.emit()


@thread_worker(start_thread=False, ignore_errors=True)
def _propose_in_worker(cache: ProposerCache, checkpoint, volume, first_slice, cancel_event):
    proposer = cache.get(checkpoint)  # loading, BatchNorm folding and hashing happen here, once per file
    results = proposer.iter_slices(volume, first_slice, should_cancel=cancel_event.is_set)
    first = next(results, None)
    yield ProposalStarted(proposer.source_id, proposer.describe(),
                          with_probabilities=first is not None and first.probability is not None)
    if first is None:
        return
    yield first
    for result in results:
        if cancel_event.is_set():
            return
        yield result
