"""Launching the review viewer: the interactive window, and an off-screen screenshot of it.

``ptx-annotate open`` (or ``ptx-annotate STUDY``) calls these; the command itself stays free of Qt.
"""

from __future__ import annotations

import os

from ptx_annotator.atomic import atomic_path
from ptx_annotator.errors import InvalidAnnotatorError, PtxError

#: A screenshot waits at most this long for the side volumes and the case answer (thorax segmentation).
MEASURE_WAIT_S = 120.0


def open_viewer(study, annotator: str | None = None, store_dir=None, series_uid=None, checkpoint=None,
                propose: bool = True, slice_index: int | None = None) -> int:
    """Open ``study`` in napari with the review widget and run until the window closes.

    Returns 0 when the work was saved on closing, 1 when the last save failed.
    """
    import napari

    from ._qt._review_widget import ReviewWidget
    from ._qt._settings import remember_annotator, remembered_annotator

    viewer = napari.Viewer(title=f"ptx-annotator: {os.path.basename(os.path.abspath(study))}")
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Pneumothorax review", area="right")
    try:
        annotator = annotator or remembered_annotator() or ask_annotator(widget)
        remember_annotator(annotator)
        if checkpoint:
            widget.set_checkpoint(checkpoint)
        widget.open_study(study, annotator, store_dir, series_uid, propose=propose)
        if slice_index is not None:
            widget.go_to(slice_index)
    except PtxError:
        viewer.close()
        raise
    napari.run()
    saved = widget.close_session()
    from qtpy.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(int(MEASURE_WAIT_S * 1000))  # a measurement still running ends first
    try:
        viewer.close()
    except RuntimeError:  # the window is already gone
        pass
    return 0 if saved else 1


def ask_annotator(parent=None) -> str:
    """Ask for the annotator's name in a small dialog (default: the login name)."""
    import getpass

    from qtpy.QtWidgets import QInputDialog

    try:
        default = getpass.getuser()
    except (KeyError, OSError):
        default = ""
    name, ok = QInputDialog.getText(parent, "ptx-annotator", "Your annotator name (asked once):", text=default)
    if not ok or not name.strip():
        raise InvalidAnnotatorError("An annotator name is needed to keep your mask apart; give --annotator NAME.")
    return name.strip()


def render_screenshot(study, out, annotator: str = "viewer", store_dir=None, series_uid=None,
                      slice_index: int | None = None, checkpoint=None, propose: bool = True,
                      size=(1500, 950), proposer=None) -> str:
    """Render the review viewer for ``study`` off-screen into the PNG ``out``; returns its path.

    The annotator's saved mask is shown if there is one (nothing is written to the store); the
    proposal is computed in this process, the slice on screen first, by ``proposer`` when given,
    else by the model of ``checkpoint`` or the classical proposer.
    """
    import sys

    import napari

    from ._qt._propose import make_proposer
    from ._qt._review_widget import ReviewWidget

    viewer = napari.Viewer(show=False, title="ptx-annotator")
    try:
        widget = ReviewWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Pneumothorax review", area="right")
        session = widget.open_study(study, annotator, store_dir, series_uid, propose=False, read_only=True)
        if slice_index is not None:
            widget.go_to(slice_index)
        if propose and proposer is None:
            try:
                proposer = make_proposer(checkpoint)
            except PtxError as exc:
                print(f"warning: no proposal overlay: {exc}", file=sys.stderr)
        if propose and proposer is not None:
            results = list(proposer.iter_slices(session.volume, session.current_slice))
            session.begin_proposal(proposer.source_id, proposer.describe(),
                                   with_probabilities=bool(results) and results[0].probability is not None)
            for result in results:
                session.add_proposal_slice(result)
            session.finish_proposal(True)
            session.dirty = False
            widget._status(f"Proposal by {proposer.source_id} (amber outline); annotator '{session.annotator}' "
                           "(red fill).")
        _wait_for(lambda: not widget.views.measuring, MEASURE_WAIT_S)  # sides and the case answer shown
        viewer.window.resize(*size)
        viewer.screenshot(canvas_only=False, flash=False)  # the first grab can come back black
        image = viewer.screenshot(canvas_only=False, flash=False)
        widget.close_session()
    finally:
        viewer.close()
    return _write_png(image, out)


def _wait_for(condition, seconds: float) -> None:
    import time

    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)


def _write_png(rgba, out, max_bytes: int = 500_000) -> str:
    """Write an RGBA screenshot as PNG, palette-reduced when needed to stay under ``max_bytes``."""
    from PIL import Image

    image = Image.fromarray(rgba[..., :3])
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out, suffix=".png") as tmp:
        image.save(tmp, optimize=True)
        if os.path.getsize(tmp) > max_bytes:
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, optimize=True)
    return out
