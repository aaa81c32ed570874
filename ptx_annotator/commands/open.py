"""`ptx-annotate open STUDY` (or just `ptx-annotate STUDY`): review and edit in napari.

With ``--screenshot OUT.png`` the viewer is rendered off-screen with its layers and the review
widget, written to a PNG, and the command exits without starting an event loop.
"""

from __future__ import annotations

import os


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "open", help="open a study in napari to review proposals and edit pneumothorax masks",
        description="Open a chest CT study in napari with the proposal overlay, your editable mask and "
                    "the review widget. Work is saved in the study's store (<study>/.ptx or --store).")
    parser.add_argument("study", help="study folder (DICOM), a DICOM series folder, or a NIfTI / NRRD file")
    parser.add_argument("--annotator", help="your name in the store (asked once and remembered when left out)")
    parser.add_argument("--store", help="annotation store folder (default: <study>/.ptx)")
    parser.add_argument("--series", help="SeriesInstanceUID to open when the study holds several")
    parser.add_argument("--checkpoint", help="model checkpoint (.safetensors) for proposals (default: classical)")
    parser.add_argument("--no-propose", action="store_true", help="do not run the proposer when opening")
    parser.add_argument("--slice", type=int, help="slice index (0-based, inferior first) to show")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="render the viewer off-screen to this PNG and exit (annotator defaults to 'viewer')")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.screenshot:
        path = render_screenshot(args.study, args.screenshot, annotator=args.annotator or "viewer",
                                 store_dir=args.store, series_uid=args.series, slice_index=args.slice,
                                 checkpoint=args.checkpoint, propose=not args.no_propose)
        print(f"screenshot written to {path} ({os.path.getsize(path) / 1024:.0f} KB)")
        return 0
    return open_interactive(args)


def open_interactive(args) -> int:
    import napari

    from ..errors import PtxError
    from ..plugins.napari._review_widget import ReviewWidget
    from ..plugins.napari._settings import remember_annotator, remembered_annotator

    viewer = napari.Viewer(title=f"ptx-annotator: {os.path.basename(os.path.abspath(args.study))}")
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Pneumothorax review", area="right")
    try:
        annotator = args.annotator or remembered_annotator() or ask_annotator(viewer.window._qt_window)
        remember_annotator(annotator)
        if args.checkpoint:
            widget.set_checkpoint(args.checkpoint)
        widget.open_study(args.study, annotator, args.store, args.series, propose=not args.no_propose)
        if args.slice is not None:
            widget.go_to(args.slice)
    except PtxError:
        viewer.close()
        raise
    napari.run()
    saved = widget.close_session()
    try:
        viewer.close()
    except RuntimeError:  # the window is already gone
        pass
    return 0 if saved else 1


def ask_annotator(parent=None) -> str:
    """Ask for the annotator's name in a small dialog (default: the login name)."""
    import getpass

    from qtpy.QtWidgets import QInputDialog

    from ..errors import InvalidAnnotatorError

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

    from ..errors import PtxError
    from ..plugins.napari._propose import CLASSICAL, make_proposer
    from ..plugins.napari._review_widget import ReviewWidget

    viewer = napari.Viewer(show=False, title="ptx-annotator")
    try:
        widget = ReviewWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Pneumothorax review", area="right")
        session = widget.open_study(study, annotator, store_dir, series_uid, propose=False, read_only=True)
        if slice_index is not None:
            widget.go_to(slice_index)
        if propose and proposer is None:
            try:
                proposer = make_proposer("checkpoint" if checkpoint else CLASSICAL, checkpoint)
            except PtxError as exc:
                print(f"warning: no proposal overlay: {exc}", file=sys.stderr)
        if propose and proposer is not None:
            session.begin_proposal(proposer.source_id, proposer.describe())
            for result in proposer.iter_slices(session.volume, session.current_slice):
                session.add_proposal_slice(result)
            session.finish_proposal(True)
            session.dirty = False
            widget._refresh(mask=True, overlay=True, volumes=True)
            widget._status(f"Proposal by {proposer.source_id}; annotator '{session.annotator}'.")
        viewer.window._qt_window.resize(*size)
        viewer.screenshot(canvas_only=False, flash=False)  # the first grab can come back black
        image = viewer.screenshot(canvas_only=False, flash=False)
        widget.close_session()
    finally:
        viewer.close()
    return _write_png(image, out)


def _write_png(rgba, out, max_bytes: int = 500_000) -> str:
    """Write an RGBA screenshot as PNG, palette-reduced when needed to stay under ``max_bytes``."""
    from PIL import Image

    from ..atomic import atomic_path

    image = Image.fromarray(rgba[..., :3])
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out, suffix=".png") as tmp:
        image.save(tmp, optimize=True)
        if os.path.getsize(tmp) > max_bytes:
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, optimize=True)
    return out
