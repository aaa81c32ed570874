"""Arguments and steps that several subcommands share."""

from __future__ import annotations


def add_store_arguments(parser) -> None:
    """``--store DIR`` (for read-only studies) and ``--series UID`` (for folders with several series)."""
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="annotation store folder (default: <study>/.ptx; use it for read-only studies)")
    parser.add_argument("--series", default=None, metavar="UID",
                        help="SeriesInstanceUID when the study holds several series")


def add_mask_value_arguments(parser) -> None:
    """``--label N`` / ``--threshold T``: which values of a mask file are content (default: any non-zero)."""
    parser.add_argument("--label", type=float, default=None, metavar="N",
                        help="take only voxels with this label value (default: every non-zero value is content)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="take voxels with values >= T (a probability map)")


def open_study(study, args):
    """The CT volume of ``study`` and its annotation store, from ``--series`` and ``--store``."""
    from ptx_annotator.io import load_volume
    from ptx_annotator.review.store import AnnotationStore

    volume = load_volume(study, getattr(args, "series", None))
    return volume, AnnotationStore.for_study(study, getattr(args, "store", None))


def resolve_study_sources(args):
    """DICOMweb study URLs in ``args`` become local cached series folders (and a user ``--store``).

    Called once by the CLI before any subcommand runs; see :mod:`ptx_annotator.commands._dicomweb_args`.
    """
    from ptx_annotator.commands._dicomweb_args import resolve_study_urls

    return resolve_study_urls(args)


def refuse_output_inside_study(study, out_dir) -> None:
    """Refuse an output folder inside the input study (a written series would mix with the real one)."""
    from pathlib import Path

    from ptx_annotator.errors import PtxError

    source = Path(study).absolute()
    folder = source if source.is_dir() else source.parent
    out = Path(out_dir).absolute()
    if out == folder or folder in out.parents:
        raise PtxError(f"The output folder '{out_dir}' lies inside the study folder '{folder}': what is written there "
                       "would mix with the study's own series. Give an output folder outside it, e.g. a sibling.")
    if out.exists() and not out.is_dir():
        raise PtxError(f"The output folder '{out_dir}' is a file: give a folder.")
