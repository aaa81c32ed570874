"""`ptx-annotate export STUDY --annotator NAME --format seg|nifti --out PATH`: a mask out of the tool."""

from __future__ import annotations

from ptx_annotator.commands._common import add_store_arguments, open_study


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write an annotator's mask as DICOM SEG or NIfTI (aligned with the CT)",
        description="Write an annotator's pneumothorax mask as a DICOM SEG that references the CT slices "
                    "(opens aligned in 3D Slicer and OHIF) or as NIfTI with the CT's affine.")
    parser.add_argument("study", help="the CT: DICOM series folder or file, NIfTI or NRRD")
    parser.add_argument("--annotator", required=True, help="whose mask to export")
    parser.add_argument("--format", choices=("seg", "nifti"), default="seg", help="DICOM SEG (default) or NIfTI")
    parser.add_argument("--out", required=True, help="output file, or an existing folder (a default name is used)")
    parser.add_argument("--allow-unreviewed", action="store_true",
                        help="export even when most of the mask is machine output nobody reviewed "
                             "(the SEG is then labelled AUTOMATIC, with no content creator)")
    add_store_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.export import export_annotation, load_annotation, mask_provenance

    volume, store = open_study(args.study, args)
    annotation = load_annotation(volume, store, args.annotator)
    target = export_annotation(volume, annotation, args.format, args.out, allow_unreviewed=args.allow_unreviewed)
    provenance = mask_provenance(annotation)
    slices = int(annotation.mask.reshape(annotation.mask.shape[0], -1).any(axis=1).sum())
    origin = provenance.algorithm_type.lower() + (f" ({provenance.main_source})" if provenance.main_source else "")
    print(f"wrote {target}: {args.format}, mask of '{annotation.annotator}' v{annotation.version}, "
          f"{int(annotation.mask.sum())} voxels on {slices} slices, {origin}; {provenance.summary()}")
    return 0
