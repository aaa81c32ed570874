"""`ptx-annotate compare`: agreement of two or more readers' masks, with maps, consensus and a report.

    ptx-annotate compare STUDY --annotators A B [C ...] [--store DIR] [--series UID] --out DIR [--json]
    ptx-annotate compare [STUDY] --masks A.nii.gz B.nii.gz [...] --out DIR [--json]
"""

from __future__ import annotations

from ptx_annotator.commands._common import add_mask_value_arguments, add_store_arguments

import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare annotators' masks: Dice, HD95, volumes, disagreement map, consensus, HTML report",
        description="Compare two or more readers' pneumothorax masks of one CT series. Writes per_slice.csv, "
                    "summary.json, disagreement.nii.gz (0 none, 1 only A, 2 only B, 3 both), consensus.nii.gz "
                    "(STAPLE for 3+ readers, else the intersection) and report.html into --out; with 3+ readers also "
                    "staple_probability.nii.gz and majority_vote.nii.gz.",
    )
    parser.add_argument("study", nargs="?", help="the study (DICOM folder, NIfTI, NRRD); optional with --masks, "
                        "where it only adds the CT behind the report's pictures")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--annotators", nargs="+", metavar="NAME", help="annotators in the study's store (A B [C ...])")
    source.add_argument("--masks", nargs="+", metavar="MASK", help="NIfTI mask files on the CT's grid (A B [C ...])")
    add_store_arguments(parser)
    add_mask_value_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the outputs (created)")
    parser.add_argument("--json", action="store_true", help="also print summary.json to standard output")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.compare import compare_masks, load_annotator_masks
    from ptx_annotator.reports.comparison import json_safe, write_comparison_outputs
    from ptx_annotator.errors import PtxError
    from ptx_annotator.io.volume_files import spacing_from_affine
    from ptx_annotator.volume import check_same_geometry

    readers = args.annotators or args.masks
    if args.annotators and (args.label is not None or args.threshold is not None):
        raise PtxError("--label and --threshold choose the content of --masks files, not of annotators' masks.")
    if len(readers) < 2:
        raise PtxError(f"compare needs at least two readers; got {len(readers)}. Name two annotators or two mask files.")
    if args.annotators:
        if not args.study:
            raise PtxError("--annotators needs the STUDY whose store holds them: ptx-annotate compare STUDY --annotators A B --out DIR")
        volume, masks = load_annotator_masks(args.study, args.annotators, store_dir=args.store, series_uid=args.series)
        comparison = compare_masks(masks, volume.spacing, affine=volume.affine)
        ct_hu = volume.hu
    else:
        masks, affines = _read_mask_files(args.masks, args.label, args.threshold)
        first = next(iter(masks))
        ct_hu = None
        if args.study:
            from ptx_annotator.io import load_volume

            volume = load_volume(args.study, args.series)
            check_same_geometry(volume.shape, volume.affine, masks[first].shape, affines[first],
                                "the CT", f"the mask '{first}'")
            ct_hu = volume.hu
        comparison = compare_masks(masks, spacing_from_affine(affines[first]), affines=affines)
    paths = write_comparison_outputs(comparison, args.out, ct_hu=ct_hu)
    if args.json:
        json.dump(json_safe(comparison.summary), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    s = comparison.summary
    print(f"{s['reader_a']} vs {s['reader_b']}: Dice {s['dice']:.3f}, IoU {s['iou']:.3f}, HD95 {s['hd95_mm']:.1f} mm, "
          f"ASSD {s['assd_mm']:.2f} mm")
    print(f"volumes {s['volume_a_ml']:.1f} / {s['volume_b_ml']:.1f} mL (B - A {s['volume_diff_ml']:+.1f} mL); "
          f"slice presence kappa {s['kappa_slices']:.2f}; {s['slices_disagreeing']} slices disputed"
          + (f", worst {', '.join(map(str, s['worst_slices'][:5]))}" if s["worst_slices"] else ""))
    for pair in comparison.pairs[1:]:
        print(f"{pair['reader_a']} vs {pair['reader_b']}: Dice {pair['dice']:.3f}, HD95 {pair['hd95_mm']:.1f} mm")
    print(f"consensus: {comparison.consensus_method.replace('_', ' ')}, {s['consensus_volume_ml']:.1f} mL")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _read_mask_files(paths, label=None, threshold=None):
    """``({reader: mask}, {reader: affine})`` through the one mask reader; readers named by file stem."""
    from pathlib import Path

    from ptx_annotator.io.masks import read_mask

    masks, affines = {}, {}
    for path in paths:
        name = Path(path).name
        for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        base, k = name, 2
        while name in masks:
            name, k = f"{base}_{k}", k + 1
        read = read_mask(path, label=label, threshold=threshold)
        masks[name], affines[name] = read.mask, read.affine
    return masks, affines
