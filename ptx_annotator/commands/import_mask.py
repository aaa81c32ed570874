"""`ptx-annotate import STUDY --annotator NAME MASK_PATH`: a NIfTI, NRRD or DICOM SEG mask into the store."""

from __future__ import annotations

from ptx_annotator.commands._common import add_mask_value_arguments, add_store_arguments, open_study


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="import a NIfTI, NRRD or DICOM SEG mask as an annotator's mask",
        description="Save a NIfTI or NRRD mask or a DICOM SEG as a new mask version of one annotator. The mask must lie "
                    "on the CT's grid (a SEG is matched by referenced slice UIDs or positions); slices with "
                    "content are marked 'edited' with source 'import:<file name>'.")
    parser.add_argument("study", help="the CT: DICOM series folder or file, NIfTI or NRRD")
    parser.add_argument("mask_path", metavar="MASK_PATH", help="NIfTI (.nii.gz) or NRRD mask, or DICOM SEG file")
    parser.add_argument("--annotator", required=True, help="whose mask it becomes")
    add_store_arguments(parser)
    parser.add_argument("--replace", action="store_true", help="replace an existing mask of this annotator")
    parser.add_argument("--empty-slices", choices=("unreviewed", "accepted"), default="unreviewed",
                        help="review state of slices without content (accepted: the file covers the whole "
                             "series and its empty slices are known negatives)")
    parser.add_argument("--segment", type=int, default=None, help="SEG segment number when none is coded pneumothorax")
    add_mask_value_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.export import import_mask

    from ptx_annotator.review.store import safe_annotator_name

    safe_annotator_name(args.annotator)
    volume, store = open_study(args.study, args)
    try:
        annotation = import_mask(volume, store, args.annotator, args.mask_path, replace=args.replace,
                                 empty_state=args.empty_slices, segment=args.segment, label=args.label,
                                 threshold=args.threshold)
    finally:
        store.close()
    record = annotation.extra["imports"][-1]
    print(f"imported {record['file']} ({record['format']}; {record.get('rule', 'content')}) as "
          f"'{annotation.annotator}' v{annotation.version}: {record['voxels']} voxels on "
          f"{record['slices_with_content']} slices marked edited")
    return 0
