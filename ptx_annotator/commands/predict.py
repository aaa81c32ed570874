"""`ptx-annotate predict PATH`: propose a pneumothorax mask for a CT and store it for review.

The proposal goes into the annotation store as slices in state ``proposed`` (``--annotator``; the
annotator ``model`` when neither ``--annotator`` nor ``--out`` is given) and/or to a NIfTI file
with the CT's affine (``--out``). Slices a person already set (accepted, edited or flagged, or an
unreviewed slice that has content) keep their mask and state: a proposal never overwrites review
work (the one merge rule, :func:`ptx_annotator.review.merge.merge_proposal`).
"""

from __future__ import annotations

from ptx_annotator.commands._common import add_store_arguments

import sys
import time

DEFAULT_ANNOTATOR = "model"
#: ``--proposer`` choices; the last two need ``--checkpoint``.
PROPOSERS = ("classical", "model", "combined")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="propose a pneumothorax mask with a model checkpoint or the weight-free classical proposer")
    parser.add_argument("path", help="study folder, DICOM series folder, NIfTI (.nii/.nii.gz) or NRRD file")
    parser.add_argument("--checkpoint", metavar="CKPT", help="U-Net checkpoint (.safetensors) to propose with")
    parser.add_argument("--proposer", choices=PROPOSERS, default=None,
                        help="classical: weight-free (the default without --checkpoint); model: the checkpoint's "
                             "U-Net (the default with one); combined: the checkpoint's U-Net kept to the pleural "
                             "cavities of the thorax anatomy")
    parser.add_argument("--out", metavar="MASK.nii.gz", help="also write the proposed mask as NIfTI (the CT's affine)")
    parser.add_argument("--annotator", metavar="NAME",
                        help=f"store the proposal as this annotator's slices to review (default '{DEFAULT_ANNOTATOR}' "
                             "when --out is not given either)")
    add_store_arguments(parser)
    parser.add_argument("--device", choices=["cpu", "cuda"], help="run the model here (default: CUDA if available)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                        help="model precision (default: automatic per device)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="probability threshold of a checkpoint (default: the checkpoint's own)")
    parser.add_argument("--keep-outside-air", action="store_true",
                        help="keep what a checkpoint finds outside the patient (by default air outside the chest wall "
                             "is dropped; use this when the field of view cuts through the chest wall)")
    parser.add_argument("--first-slice", type=int, metavar="Z", help="compute this slice first (0-based z index)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (the case-level answer: pneumothorax, sides, volumes, confidence; "
                             "and where the proposal went) on standard output; progress lines go to standard error")
    parser.set_defaults(run=run)


def _proposer_kind(args) -> str:
    """The proposer ``--proposer`` and ``--checkpoint`` ask for together (refusing a mismatch)."""
    from ptx_annotator.errors import PtxError

    kind = args.proposer or ("model" if args.checkpoint else "classical")
    if kind == "classical" and args.checkpoint:
        raise PtxError("--proposer classical uses no checkpoint: leave out --checkpoint, or use --proposer model "
                       "or combined with it.")
    if kind != "classical" and not args.checkpoint:
        raise PtxError(f"--proposer {kind} runs a U-Net: give its --checkpoint CKPT (or use --proposer classical).")
    return kind


def run(args) -> int:
    from ptx_annotator.errors import PtxError
    from ptx_annotator.io import load_volume
    from ptx_annotator.proposers import get_proposer, propose_volume

    kind = _proposer_kind(args)
    if args.threshold is not None and args.checkpoint is None:
        raise PtxError("--threshold applies to a model checkpoint; give --checkpoint CKPT or leave it out.")
    if args.keep_outside_air and args.checkpoint is None:
        raise PtxError("--keep-outside-air applies to a model checkpoint; give --checkpoint CKPT or leave it out.")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise PtxError(f"--threshold must lie between 0 and 1 (got {args.threshold}).")
    if args.out and not args.out.lower().endswith((".nii", ".nii.gz")):
        raise PtxError(f"--out '{args.out}' must end in .nii.gz or .nii (a NIfTI mask with the CT's affine).")
    if args.annotator is not None:
        from ptx_annotator.review.store import safe_annotator_name

        safe_annotator_name(args.annotator)  # an empty or unusable name is refused, never turned into 'model'
    if args.out:
        _check_out(args.out)
    volume = load_volume(args.path, series_uid=args.series)
    if args.first_slice is not None and not 0 <= args.first_slice < volume.shape[0]:
        raise PtxError(f"--first-slice {args.first_slice} is outside the series' slices 0..{volume.shape[0] - 1}.")
    store = _claim_store(args, volume) if (args.annotator or not args.out) else None
    options = {} if args.threshold is None else {"threshold": args.threshold}
    if args.keep_outside_air:
        options["drop_outside_air"] = False
    proposer = get_proposer(checkpoint=args.checkpoint, proposer=kind,
                            device=args.device, precision=args.precision, **options)

    n_slices = volume.shape[0]
    progress = _progress_bar(n_slices, proposer.source_id)
    started = time.perf_counter()
    try:
        proposal = propose_volume(proposer, volume, first_slice=args.first_slice,
                                  on_progress=lambda result: progress.update(1),
                                  keep_probabilities=bool(args.json and args.checkpoint))
    finally:
        progress.close()
    elapsed = time.perf_counter() - started  # propose_volume ran the proposer's own 3D clean-up too

    voxels = int(proposal.mask.astype(bool).sum())
    say = _printer(args.json)
    say(f"{len(proposal.slices_done)} slices in {elapsed:.2f} s ({len(proposal.slices_done) / max(elapsed, 1e-9):.2f} "
          f"slices/s) with {proposal.source}")
    say(f"predicted volume {voxels * volume.voxel_volume_ml:.2f} mL ({voxels} voxels)")

    if args.out:
        _write_nifti(proposal.mask, volume.affine, args.out)
        say(f"mask written to {args.out}")
    if store is not None:
        _write_store(args, volume, proposal, say, store)
    if args.json:
        _print_json(args, volume, proposal, elapsed)
    return 0


def _printer(to_stderr: bool):
    """``print``, sent to standard error when standard output carries the JSON answer."""
    import builtins

    if not to_stderr:
        return builtins.print
    return lambda *parts, **kw: builtins.print(*parts, file=sys.stderr, **kw)


def _print_json(args, volume, proposal, elapsed) -> None:
    import json

    from ptx_annotator.proposers.case import case_answer

    answer = case_answer(proposal.mask, volume, probabilities=proposal.probabilities,
                         evidence=proposal.params.get("evidence"))
    payload = {"case": answer, **{k: answer[k] for k in ("pneumothorax", "sides", "volume_ml", "volume_right_ml",
                                                          "volume_left_ml", "confidence")},
               "source": proposal.source, "slices": len(proposal.slices_done), "seconds": round(elapsed, 3),
               "out": args.out, "annotator": (args.annotator or DEFAULT_ANNOTATOR) if (args.annotator or not args.out)
               else None}
    sys.stdout.write(json.dumps(payload) + "\n")


def _progress_bar(total: int, source: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="slice", desc=f"predict ({source})", file=sys.stderr, leave=False,
                dynamic_ncols=True, mininterval=0.5)


def _write_nifti(mask, affine, out) -> None:
    from ptx_annotator.atomic import atomic_path
    from ptx_annotator.io import save_mask_nifti

    with atomic_path(out, suffix=".nii.gz" if str(out).lower().endswith(".gz") else ".nii") as tmp:
        save_mask_nifti(mask, affine, tmp)


def _check_out(out) -> None:
    """Refuse an --out that cannot be written before any computation."""
    import os

    from ptx_annotator.errors import PtxError

    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise PtxError(f"--out '{out}' is a folder: give a file name such as {os.path.join(out, 'mask.nii.gz')}.")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise PtxError(f"--out '{out}': the folder '{folder}' does not exist or cannot be written.")


def _claim_store(args, volume):
    """The store, with this annotator's lock taken and its saved work read, before the long computation.

    A second writer, a read-only store or a damaged review file is refused now, not after the
    whole proposal was computed.
    """
    from ptx_annotator.errors import PtxError
    from ptx_annotator.review.store import AnnotationStore

    store = AnnotationStore.for_study(args.path, args.store)
    annotator = args.annotator or DEFAULT_ANNOTATOR
    try:
        store.lock(volume.key, annotator)
    except PermissionError as exc:
        raise PtxError(f"The annotation store '{store.root}' cannot be written ({exc.strerror}): "
                       "give a writable place with --store DIR.") from None
    try:
        store.load_or_empty(volume, annotator)
    except BaseException:
        store.close()
        raise
    return store


def _write_store(args, volume, proposal, say=print, store=None) -> None:
    from ptx_annotator.review.merge import merge_proposal, record_proposal
    from ptx_annotator.review.store import AnnotationStore

    store = store or AnnotationStore.for_study(args.path, args.store)
    try:
        annotation = store.load_or_empty(volume, args.annotator or DEFAULT_ANNOTATOR)
        merged = merge_proposal(annotation, proposal)
        proposed, kept = len(merged.proposed), len(merged.kept)
        record_proposal(annotation, proposal, with_probabilities=False)  # the store keeps the mask, not probabilities
        store.save_proposal(volume.key, annotation.annotator, proposal.mask, volume.affine)
        version = store.save(annotation)
    finally:
        store.close()
    note = f"; {kept} slices already reviewed, flagged or drawn were kept as they were" if kept else ""
    say(f"stored as annotator '{annotation.annotator}' (version {version}) in {store.root}: "
          f"{proposed} slices proposed{note}")
