"""Running a proposer off the GUI thread: a napari thread worker that yields one slice at a time."""

from __future__ import annotations

import os
import threading
from functools import partial

from napari.qt.threading import thread_worker
from qtpy.QtWidgets import QFileDialog

from ptx_annotator.errors import PtxError

from ._guard import never_raises

CLASSICAL = "classical"
CHECKPOINT_ENTRY = "model checkpoint…"


def make_proposer(choice: str, checkpoint: str | None = None):
    """The proposer for a picker entry: 'classical', or a model checkpoint file."""
    from ptx_annotator.proposers import get_proposer

    try:
        if choice == CLASSICAL or not checkpoint:
            return get_proposer(checkpoint=None, proposer=CLASSICAL)
        return get_proposer(checkpoint=checkpoint)
    except ImportError as exc:
        raise PtxError(f"The {'model' if checkpoint else 'classical'} proposer is not available in this "
                       f"installation ({exc}). Reinstall ptx-annotator with its dependencies.") from exc


class ProposalRun:
    """One proposer run over a volume in a napari thread worker, cancellable between slices.

    Connect ``worker.yielded`` (a :class:`~ptx_annotator.proposers.contract.SliceResult` per slice),
    ``worker.finished`` and ``worker.errored`` before calling :meth:`start`; those signals arrive
    on the GUI thread, where layers may be touched.
    """

    def __init__(self, proposer, volume, first_slice: int | None):
        self.cancel_event = threading.Event()
        self.slices_done = 0
        self.session = None  # the review session the slices go to (set by the widget)
        self.total = volume.shape[0]
        self.worker = _iterate_proposer(proposer, volume, first_slice, self.cancel_event)

    def start(self) -> None:
        self.worker.start()

    def cancel(self) -> None:
        self.cancel_event.set()
        self.worker.quit()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


@thread_worker(start_thread=False)
def _iterate_proposer(proposer, volume, first_slice, cancel_event):
    for result in proposer.iter_slices(volume, first_slice, should_cancel=cancel_event.is_set):
        yield result
        if cancel_event.is_set():
            return


class ProposalMixin:
    """The Propose part of the review widget: picker, worker, progress bar, cancel.

    Expects ``session``, ``proposer_combo``, ``propose_button``, ``_refresh``, ``_status``,
    ``_error`` and ``_need_session`` on the widget it is mixed into.
    """

    proposal_run: ProposalRun | None = None
    _progress = None
    checkpoint: str | None = None

    @never_raises
    def _on_proposer_picked(self, index: int) -> None:
        if self.proposer_combo.itemText(index) != CHECKPOINT_ENTRY:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "Checkpoints (*.safetensors)")
        if path:
            self.set_checkpoint(path)
        else:
            self.proposer_combo.setCurrentIndex(0)

    def set_checkpoint(self, path: str) -> None:
        """Offer ``path`` in the proposer picker and select it."""
        self.checkpoint = os.fspath(path)
        self.proposer_combo.insertItem(1, os.path.basename(self.checkpoint), self.checkpoint)
        self.proposer_combo.setCurrentIndex(1)

    def kept_proposal_matches(self) -> bool:
        """Whether the session shows a kept proposal made by the proposer picked now (no need to redo it)."""
        kept = self.session.proposal_source if self.session is not None else None
        if not kept:
            return False
        checkpoint = self.proposer_combo.currentData()
        if checkpoint is None:
            from ptx_annotator.proposers.classical import ClassicalProposer

            return kept == ClassicalProposer.source_id
        from ptx_annotator.proposers.inference import file_sha256

        recorded = (self.session.proposal_params.get("checkpoint") or {}).get("sha256")
        try:
            return bool(recorded) and recorded == file_sha256(checkpoint)
        except OSError:
            return False

    def toggle_proposal(self) -> None:
        if self.proposal_run is not None:
            self.cancel_proposal()
        else:
            self.start_proposal()

    def start_proposal(self) -> ProposalRun:
        """Run the picked proposer in a thread worker, the slice on screen first."""
        from napari.utils import progress

        session = self._need_session()
        if self.proposal_run is not None:
            raise PtxError("A proposal is already running; cancel it first.")
        checkpoint = self.proposer_combo.currentData()
        proposer = make_proposer(CLASSICAL if checkpoint is None else "checkpoint", checkpoint)
        session.begin_proposal(proposer.source_id, proposer.describe())
        run = self.proposal_run = ProposalRun(proposer, session.volume, session.current_slice)
        run.session = session
        run.worker.yielded.connect(partial(self._on_proposal_slice, run))
        run.worker.errored.connect(partial(self._on_proposal_error, run))
        run.worker.finished.connect(partial(self._on_proposal_finished, run))
        self._progress = progress(total=run.total, desc=f"Proposing ({proposer.source_id})")
        self.propose_button.setText("Cancel")
        self._status(f"Proposing with {proposer.source_id}…")
        run.start()
        return run

    def cancel_proposal(self) -> None:
        if self.proposal_run is not None:
            self.proposal_run.cancel()
            self._status("Cancelling the proposal…")

    def stop_proposal(self) -> None:
        """Cancel the running proposal and forget it at once (its late slices are ignored)."""
        if self.proposal_run is not None:
            self.proposal_run.cancel()
            self._end_proposal_run()

    def _end_proposal_run(self) -> None:
        self.proposal_run = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.propose_button.setText("Propose")

    @never_raises
    def _on_proposal_slice(self, run, result) -> None:
        session = self.session
        if run is not self.proposal_run or session is None or run.session is not session:
            return
        run.slices_done += 1
        session.add_proposal_slice(result)
        if result.index == session.current_slice or run.slices_done % 8 == 0:
            self._refresh(mask=True, overlay=True, volumes=True)
        if self._progress is not None:
            self._progress.update(1)  # may process pending events (even this run's end)

    def _on_proposal_error(self, run, exc) -> None:
        if run is self.proposal_run:
            self._error(f"The proposer failed: {exc}. Slices proposed so far are kept.")

    @never_raises
    def _on_proposal_finished(self, run) -> None:
        if run is not self.proposal_run:
            return  # a run stopped when its series was closed
        self._end_proposal_run()
        if self.session is None or run.session is not self.session:
            return
        completed = len(self.session.proposed_slices) == run.total
        self.session.finish_proposal(completed)
        self._refresh(mask=True, overlay=True, volumes=True)
        self._status(f"Proposal {'complete' if completed else 'cancelled'}: {len(self.session.proposed_slices)} "
                     f"of {run.total} slices.")
