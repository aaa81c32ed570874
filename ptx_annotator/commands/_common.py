"""Arguments and steps that several subcommands share."""

from __future__ import annotations


def add_store_arguments(parser) -> None:
    """``--store DIR`` (for read-only studies) and ``--series UID`` (for folders with several series)."""
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="annotation store folder (default: <study>/.ptx; use it for read-only studies)")
    parser.add_argument("--series", default=None, metavar="UID",
                        help="SeriesInstanceUID when the study holds several series")


def open_study(study, args):
    """The CT volume of ``study`` and its annotation store, from ``--series`` and ``--store``."""
    from ptx_annotator.io import load_volume
    from ptx_annotator.review.store import AnnotationStore

    volume = load_volume(study, getattr(args, "series", None))
    return volume, AnnotationStore.for_study(study, getattr(args, "store", None))
