"""`ptx-annotate quantify STUDY --annotator NAME [--json]` or `--mask MASK --ct CT`: pneumothorax size."""

from __future__ import annotations

from ptx_annotator.commands._common import add_mask_value_arguments, add_store_arguments

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantify", help="pneumothorax volume per side, hemithorax share and widest rim (BTS 2 cm rule)",
        description="Measure a pneumothorax mask: volume in mL per patient side, its share of the same-side "
                    "hemithorax (Do et al. 2012) and the widest air rim between lung and chest wall in 3D.")
    parser.add_argument("study", nargs="?", default=None, help="the CT: DICOM series folder or file, NIfTI or NRRD")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--annotator", help="measure this annotator's saved mask")
    source.add_argument("--mask", help="measure this NIfTI mask or DICOM SEG file instead")
    parser.add_argument("--ct", default=None, help="the CT the --mask belongs to (instead of STUDY)")
    add_store_arguments(parser)
    add_mask_value_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.errors import PtxError
    from ptx_annotator.export import load_annotation, read_mask_file
    from ptx_annotator.io import load_volume
    from ptx_annotator.quantify import quantify
    from ptx_annotator.review.store import AnnotationStore

    ct = args.ct or args.study
    if ct is None:
        raise PtxError("Give the CT: 'ptx-annotate quantify STUDY ...' or '--ct CT' with --mask.")
    if (args.label is not None or args.threshold is not None) and not args.mask:
        raise PtxError("--label and --threshold choose the content of a --mask file; give --mask MASK.")
    volume = load_volume(ct, args.series)
    if args.mask:
        mask, what = read_mask_file(args.mask, volume, label=args.label, threshold=args.threshold).mask, args.mask
    else:
        annotation = load_annotation(volume, AnnotationStore.for_study(ct, args.store), args.annotator)
        mask, what = annotation.mask, f"annotator '{annotation.annotator}' v{annotation.version}"
    result = quantify(mask, volume).to_json()
    result.update(provenance_keys(None if args.mask else annotation, volume.shape[0]))
    if args.json:
        print(json.dumps({"mask": what, "series": volume.key, **result}, indent=2))
        return 0
    print(format_quantification(result, what, volume.shape[0]))
    return 0


def provenance_keys(annotation, n_slices: int) -> dict:
    """Who vouches for the mask: ``n_slices``, ``reviewed_slices``, ``proposed_slices`` and the
    other counts of :func:`~ptx_annotator.review.states.review_provenance` (None for a mask file,
    which carries no review states)."""
    from ptx_annotator.review.states import review_provenance

    if annotation is None:
        return {"n_slices": n_slices, "reviewed_slices": None, "proposed_slices": None,
                "accepted_slices": None, "edited_slices": None}
    return review_provenance(annotation.review, annotation.mask)


def _share(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_quantification(result: dict, what: str, n_slices: int) -> str:
    """A few readable lines of a :meth:`Quantification.to_json` dict."""
    lines = [
        f"{what}: pneumothorax {result['volume_ml']:.1f} mL",
        f"  right {result['volume_right_ml']:.1f} mL = {_share(result['hemithorax_share_right'])} of the right hemithorax",
        f"  left  {result['volume_left_ml']:.1f} mL = {_share(result['hemithorax_share_left'])} of the left hemithorax",
    ]
    if result["max_rim_mm"] is None:
        lines.append("  widest rim: not defined" if result["volume_ml"] else "  no pneumothorax voxels")
    else:
        verdict = "large (>= 2 cm)" if result["bts_large"] else "small (< 2 cm)"
        lines.append(f"  widest rim {result['max_rim_mm']:.1f} mm ({result['max_rim_side']}, slice "
                     f"{result['max_rim_slice']} of 0..{n_slices - 1}): {verdict} by the BTS rim rule")
    if result.get("reviewed_slices") is not None:
        lines.append(f"  reviewed by a person: {result['reviewed_slices']} of {result['n_slices']} slices "
                     f"({result['accepted_slices']} accepted, {result['edited_slices']} edited); "
                     f"{result['proposed_slices']} proposed, not reviewed")
        if result["unreviewed_voxels"]:
            lines.append(f"  {100 * result['unreviewed_share']:.0f}% of the mask's voxels lie on slices nobody reviewed"
                         + (": most of the mask is unreviewed" if result["mostly_unreviewed"] else ""))
    lines += [f"  note: {note}" for note in result["notes"]]
    return "\n".join(lines)
