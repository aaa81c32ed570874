"""`ptx-annotate report STUDY --out DIR`: an HTML page with key slices, numbers and review progress."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write an HTML study report (key slices, pneumothorax size, review progress, proposers)",
        description="Write index.html, report.json and PNG figures for one series: key slices with every "
                    "annotator's mask, the pneumothorax numbers, review progress, and which proposer or "
                    "checkpoint made the proposals and when.")
    parser.add_argument("study", help="the CT: DICOM series folder or file, NIfTI or NRRD")
    parser.add_argument("--out", required=True, help="folder to write the report into")
    parser.add_argument("--store", default=None, help="annotation store folder (default: <study>/.ptx)")
    parser.add_argument("--series", default=None, help="SeriesInstanceUID when the study holds several series")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..io import load_volume
    from ..store import AnnotationStore
    from ..study_report import write_study_report

    volume = load_volume(args.study, args.series)
    store = AnnotationStore.for_study(args.study, args.store)
    page = write_study_report(volume, store, args.out)
    annotators = store.annotators(volume.key)
    print(f"wrote {page} ({len(annotators)} annotator(s): {', '.join(annotators) or 'none'})")
    return 0
