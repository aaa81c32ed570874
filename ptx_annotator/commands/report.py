"""`ptx-annotate report STUDY --out DIR`: an HTML page with key slices, numbers and review progress."""

from __future__ import annotations

from ptx_annotator.commands._common import add_store_arguments, open_study


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write an HTML study report (key slices, pneumothorax size, review progress, proposers)",
        description="Write index.html, report.json and PNG figures for one series: key slices with every "
                    "annotator's mask, the pneumothorax numbers, review progress, and which proposer or "
                    "checkpoint made the proposals and when.")
    parser.add_argument("study", help="the CT: DICOM series folder or file, NIfTI or NRRD")
    parser.add_argument("--out", required=True, help="folder to write the report into")
    add_store_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.reports.study import write_study_report

    import json
    import sys

    volume, store = open_study(args.study, args)
    page = write_study_report(volume, store, args.out)
    skipped = json.loads((page.parent / "report.json").read_text()).get("skipped", [])
    shown = [name for name in store.annotators(volume.key) if not any(s.startswith(f"{name}: ") for s in skipped)]
    print(f"wrote {page} ({len(shown)} annotator(s): {', '.join(shown) or 'none'})")
    for line in skipped:  # an annotator the report had to leave out is an error, not a footnote
        print(f"ptx-annotate: error: left out of the report: {line}", file=sys.stderr)
    return 1 if skipped else 0
