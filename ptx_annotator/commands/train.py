"""`ptx-annotate train`: fine-tune on reviewed slices (or image + mask files) into the model registry."""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune the U-Net on reviewed slices or image+mask files; versions go to the model registry",
        description="Train on the slices annotators marked accepted/edited (negative slices included), or on "
                    "--images/--masks pairs. The train/validation/hold-out split is frozen in the registry at the "
                    "first run and reused; a new version becomes active only if its hold-out Dice is not worse. "
                    "Ctrl-C stops cleanly and keeps the best model so far. Under 'torchrun --nproc-per-node N' "
                    "it trains with DistributedDataParallel.")
    parser.add_argument("studies", nargs="*", metavar="STUDY", help="study folders or CT files with reviewed annotations")
    parser.add_argument("--annotator", action="append", default=None, metavar="NAME",
                        help="use only this annotator's reviews (repeatable; default: all annotators)")
    parser.add_argument("--store", default=None, metavar="DIR", help="annotation store (default <study>/.ptx)")
    parser.add_argument("--images", nargs="+", default=None, metavar="CT", help="CT files (NIfTI/NRRD/DICOM folder)")
    parser.add_argument("--masks", nargs="+", default=None, metavar="MASK", help="mask files, one per --images entry")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30; early stopping, patience 8)")
    parser.add_argument("--size", type=int, default=None, metavar="PX",
                        help="input size for a new model (default 512 on CUDA, 256 on CPU); a fine-tuned model keeps its own")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--encoder", default="resnet50", help="encoder of a new model (default resnet50)")
    parser.add_argument("--init", default=None, metavar="CKPT", help="start from (resume) this checkpoint")
    parser.add_argument("--fresh", action="store_true", help="start from an untrained model, not the active one")
    parser.add_argument("--out", default=None, metavar="CKPT", help="also copy the new checkpoint here")
    parser.add_argument("--registry", default=None, metavar="DIR",
                        help="model registry folder (default <store>/models, or beside --out for --images)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    parser.add_argument("--loss", choices=("bce_jaccard", "focal_dice"), default="bce_jaccard")
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    parser.set_defaults(run=run)


def collect_slices(args):
    """The labelled slices asked for on the command line, and the default registry folder."""
    from ptx_annotator.errors import PtxError
    from ptx_annotator.review.store import AnnotationStore
    from ptx_annotator.training.data import reviewed_slices, volume_pair_slices

    if bool(args.images) != bool(args.masks):
        raise PtxError("--images and --masks go together: give one mask per image.")
    if not args.studies and not args.images:
        raise PtxError("Nothing to train on: give STUDY folders with reviewed annotations, or --images and --masks.")
    slices, registry = [], args.registry
    if args.studies:
        slices += reviewed_slices(args.studies, args.annotator, args.store)
        if registry is None:
            registry = AnnotationStore.for_study(args.studies[0], args.store).root / "models"
    if args.images:
        slices += volume_pair_slices(args.images, args.masks)
        if registry is None:
            if args.out is None:
                raise PtxError("With --images/--masks give --registry DIR (or --out CKPT, whose folder then holds models/).")
            registry = Path(args.out).resolve().parent / "models"
    return slices, Path(registry)


def run(args) -> int:
    import torch

    from ptx_annotator.errors import PtxError
    from ptx_annotator.training.distributed import is_main_process, teardown
    from ptx_annotator.training.finetune import finetune
    from ptx_annotator.training.reporting import TqdmProgress
    from ptx_annotator.training.trainer import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size is not None and (args.size < 32 or args.size % 32):
        raise PtxError(f"--size must be a multiple of 32 (got {args.size}).")
    slices, registry = collect_slices(args)
    if not slices:
        raise PtxError("No slice is marked accepted or edited in the given studies; review some slices first.")
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, loss=args.loss,
                         patience=args.patience, seed=args.seed, device=args.device, input_size=args.size,
                         augment=not args.no_augment)
    main = is_main_process()
    bar = TqdmProgress(file=sys.stderr, disable=not main)
    log = (lambda line: print(line, file=sys.stderr)) if main else None
    try:
        outcome = finetune(slices, registry, config, encoder=args.encoder, init=args.init, use_active=not args.fresh,
                           out=args.out, progress=bar, log=log)
    finally:
        bar.close()
    result = outcome.result
    if main:
        _report(outcome)
    teardown()
    if result.cancelled:
        return 130
    if not main:  # other ranks train but never write or register
        return 0 if result.best_state is not None else 1
    return 0 if outcome.registration is not None else 1


def _report(outcome) -> None:
    result = outcome.result
    if outcome.registration is None:
        print(outcome.message, file=sys.stderr)
        return
    why = "interrupted; kept the best epoch so far" if result.cancelled else \
        "stopped early" if result.stopped_early else "done"
    where = f", DistributedDataParallel over {result.world_size} processes" if result.world_size > 1 else ""
    print(f"{outcome.registration.version}: {outcome.registration.path} ({why}; best epoch {result.best_epoch} "
          f"of {result.epochs_run}{where})")
    if outcome.out is not None:
        print(f"copied to {outcome.out}")
    for label, metrics in (("new", outcome.new_metrics), (f"active {outcome.old_version}", outcome.old_metrics)):
        if metrics:
            print(f"hold-out {label}: Dice {metrics['dice']:.3f}  IoU {metrics['iou']:.3f}  precision "
                  f"{metrics['precision']:.3f}  recall {metrics['recall']:.3f}  accuracy {metrics['accuracy']:.4f}  "
                  f"AUC {'n/a' if metrics['auc'] is None else format(metrics['auc'], '.3f')}  "
                  f"({metrics['n_slices']} slices)")
    if outcome.loss_curve is not None:
        print(f"loss curve: {outcome.loss_curve}")
    print(outcome.message)
