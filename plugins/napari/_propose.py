"""Running a proposer off the GUI thread: a napari thread worker that yields one slice at a time."""

from __future__ import annotations

import threading

from napari.qt.threading import thread_worker

from ptx_annotator.errors import PtxError

CLASSICAL = "classical"


def make_proposer(choice: str, checkpoint: str | None = None):
    """The proposer for a picker entry: 'classical', or a model checkpoint file."""
    from ptx_annotator.proposal import get_proposer

    try:
        if choice == CLASSICAL or not checkpoint:
            return get_proposer(checkpoint=None, proposer=CLASSICAL)
        return get_proposer(checkpoint=checkpoint)
    except ImportError as exc:
        raise PtxError(f"The {'model' if checkpoint else 'classical'} proposer is not available in this "
                       f"installation ({exc}). Reinstall ptx-annotator with its dependencies.") from exc


class ProposalRun:
    """One proposer run over a volume in a napari thread worker, cancellable between slices.

    Connect ``worker.yielded`` (a :class:`~ptx_annotator.proposal.SliceResult` per slice),
    ``worker.finished`` and ``worker.errored`` before calling :meth:`start`; those signals arrive
    on the GUI thread, where layers may be touched.
    """

    def __init__(self, proposer, volume, first_slice: int | None):
        self.cancel_event = threading.Event()
        self.slices_done = 0
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
