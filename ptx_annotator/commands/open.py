"""`ptx-annotate open STUDY` (or just `ptx-annotate STUDY`): review and edit in napari.

With ``--screenshot OUT.png`` the viewer is rendered off-screen with its layers and the review
widget, written to a PNG, and the command exits without starting an event loop. The viewer
itself lives in the napari plugin (:mod:`ptx_annotator.plugins.napari._launch`).
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
    check_before_qt(args)
    from ptx_annotator.plugins.napari._launch import open_viewer, render_screenshot

    if args.screenshot:
        path = render_screenshot(args.study, args.screenshot, annotator=args.annotator or "viewer",
                                 store_dir=args.store, series_uid=args.series, slice_index=args.slice,
                                 checkpoint=args.checkpoint, propose=not args.no_propose)
        print(f"screenshot written to {path} ({os.path.getsize(path) / 1024:.0f} KB)")
        return 0
    return open_viewer(args.study, args.annotator, args.store, args.series, checkpoint=args.checkpoint,
                       propose=not args.no_propose, slice_index=args.slice)


def check_before_qt(args) -> None:
    """Everything that can be refused is refused before Qt starts (Qt aborts a process it cannot serve)."""
    from ptx_annotator.commands._display import require_display, slice_count
    from ptx_annotator.errors import PtxError

    if not os.path.exists(args.study):
        raise PtxError(f"'{args.study}' does not exist: give a study folder, a DICOM series folder or a NIfTI / NRRD file.")
    if args.annotator is not None:
        from ptx_annotator.review.store import safe_annotator_name

        safe_annotator_name(args.annotator)
    if args.screenshot:
        folder = os.path.dirname(os.path.abspath(args.screenshot))
        if not args.screenshot.lower().endswith(".png") or os.path.isdir(args.screenshot):
            raise PtxError(f"--screenshot '{args.screenshot}' must be a .png file name.")
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise PtxError(f"--screenshot '{args.screenshot}': the folder '{folder}' does not exist or cannot be written.")
    if args.slice is not None:
        count = slice_count(args.study, args.series)
        if not 0 <= args.slice < count:
            raise PtxError(f"--slice {args.slice} is outside the series' slices 0..{count - 1}.")
    require_display()
