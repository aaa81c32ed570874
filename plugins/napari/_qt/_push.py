"""The review widget's "Push SEG to PACS" button: the reader's mask back to the study's server.

A thin door over :func:`ptx_annotator.pacs.push_annotation`, the function behind
``ptx-annotate push``: the session is saved first, the push (SEG writing and STOW-RS) runs in a
``thread_worker``, and the answer or the one-line error shows in the review widget. The button is
enabled only while the open series was retrieved from a DICOMweb server (a local study has no
PACS to push to). Credentials come from ``PTX_DICOMWEB_AUTH``, as for the command line; they are
never shown.
"""

from __future__ import annotations

from napari.qt.threading import thread_worker
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QPushButton, QWidget

from ptx_annotator.errors import PtxError


def pacs_study_of(session):
    """The DICOMweb study the session's series came from, or None for a local study."""
    if session is None:
        return None
    from ptx_annotator.pacs import ref_of_volume

    try:
        return ref_of_volume(session.volume)
    except PtxError:
        return None


class PushControl(QWidget):
    """A push button (and "allow unreviewed") following the viewer's review session."""

    def __init__(self, review_widget, parent=None):
        super().__init__(parent)
        self.review = review_widget
        self.worker = None
        self.last_result = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.button = QPushButton("Push SEG to PACS")
        self.button.setToolTip("Store this reader's saved mask on the study's DICOMweb server as a DICOM SEG "
                               "(a later push supersedes it).")
        self.allow_unreviewed = QCheckBox("even if mostly unreviewed")
        layout.addWidget(self.button, 1)
        layout.addWidget(self.allow_unreviewed)
        self.button.clicked.connect(self.push)
        review_widget.owner.session_changed.connect(self._follow)
        self._follow(review_widget.owner.session)

    def _follow(self, session) -> None:
        ref = pacs_study_of(session)
        busy = self.worker is not None
        self.button.setEnabled(ref is not None and not busy)
        self.allow_unreviewed.setEnabled(ref is not None)
        self.button.setToolTip(f"Push to {ref.server}" if ref is not None else
                               "Open a study by its DICOMweb URL (or from the PACS worklist) to push to it.")

    def push(self) -> None:
        session = self.review.session
        if session is None or pacs_study_of(session) is None or self.worker is not None:
            return
        if not self.review.owner.save_now():
            self.review._error("The mask could not be saved, so nothing was pushed; see the message above.")
            return
        self.button.setEnabled(False)
        self.review._status("Pushing the SEG to the PACS…")
        worker = _push(session.volume, session.store, session.annotator, self.allow_unreviewed.isChecked())
        worker.returned.connect(self._pushed)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.worker = worker
        worker.start()

    def _pushed(self, result) -> None:
        self.last_result = result
        self.review._status(f"Pushed {result.reader}'s SEG (instance {result.instance_number}, "
                            f"{result.reviewed_slices} of {result.n_slices} slices reviewed) to the PACS.")

    def _failed(self, exc) -> None:
        text = str(exc) if isinstance(exc, PtxError) else f"The push failed: {exc}"
        self.review._error(text)

    def _done(self) -> None:
        self.worker = None
        self._follow(self.review.session)


@thread_worker(start_thread=False)
def _push(volume, store, annotator, allow_unreviewed):
    from ptx_annotator.pacs import push_annotation

    return push_annotation(volume, store, annotator, allow_unreviewed=allow_unreviewed)
