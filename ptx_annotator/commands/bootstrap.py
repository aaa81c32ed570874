"""`ptx-annotate bootstrap STUDY ... --out CKPT`: a first model from simulated pneumothoraces."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bootstrap", help="train a first U-Net with no annotations, on pneumothoraces simulated in your own CTs",
        description="Insert simulated pneumothoraces (known masks) into the given CTs, train a U-Net on them and "
                    "save an ordinary checkpoint for 'predict' and for fine-tuning with 'train'.")
    parser.add_argument("studies", nargs="+", metavar="STUDY", help="study folders or CT files (DICOM, NIfTI, NRRD)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.safetensors)")
    parser.add_argument("--size", type=int, default=None, metavar="PX",
                        help="model input size (default 512 on CUDA, 256 on CPU; multiple of 32)")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20; early stopping on validation)")
    parser.add_argument("--cases", type=int, default=None, metavar="K",
                        help="simulated cases per CT (default 20: thin rims, small to large pneumothoraces at every "
                             "location, loculated, hydro- and bilateral ones, confounder-only negatives, other "
                             "acquisitions; every seed is recorded in the checkpoint)")
    parser.add_argument("--encoder", default="resnet34", help="U-Net encoder (default resnet34; resnet50 as in the CT paper)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="learning rate (default 1e-3: from scratch, no pretrained encoder)")
    parser.add_argument("--crop", type=int, default=None, metavar="PX",
                        help="train on random crops of this size (default: half the input size on CPU, none on CUDA)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this long, keeping the best model (default on the CPU: what is "
                             "left of --budget-minutes after the simulation; none on CUDA)")
    parser.add_argument("--budget-minutes", type=float, default=25.0,
                        help="CPU only, without --max-minutes: the whole run's time budget (default 25)")
    parser.add_argument("--zoom", type=float, nargs=2, default=(0.8, 1.5), metavar=("MIN", "MAX"),
                        help="zoom augmentation range (default 0.8 1.5: other scanners use other fields of view)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for PyTorch (default on the CPU: the faster of 1 and all, timed on a "
                             "few training steps; a crowded machine trains faster on one)")
    parser.set_defaults(run=run)


def run(args) -> int:
    import torch

    from ptx_annotator.errors import PtxError
    from ptx_annotator.training.bootstrap import DEFAULT_CASES, bootstrap
    from ptx_annotator.training.distributed import is_main_process, teardown
    from ptx_annotator.training.reporting import TqdmProgress, loss_curve_path, save_loss_curve
    from ptx_annotator.training.trainer import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size is not None and (args.size < 32 or args.size % 32):
        raise PtxError(f"--size must be a multiple of 32 (got {args.size}).")
    if args.cases is not None and args.cases < 1:
        raise PtxError(f"--cases must be at least 1 (got {args.cases}).")
    if args.budget_minutes <= 0:
        raise PtxError(f"--budget-minutes must be positive (got {args.budget_minutes}).")
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                         device=args.device, input_size=args.size, zoom_range=tuple(args.zoom),
                         max_seconds=None if args.max_minutes is None else args.max_minutes * 60).resolved()
    config.crop_size = args.crop if args.crop is not None else (None if config.device.startswith("cuda") else config.input_size // 2)
    main = is_main_process()
    bar = TqdmProgress(file=sys.stderr, disable=not main)
    log = (lambda line: print(line, file=sys.stderr)) if main else None
    try:
        outcome = bootstrap(args.studies, args.out, cases=DEFAULT_CASES if args.cases is None else args.cases,
                            encoder=args.encoder, config=config, progress=bar, log=log,
                            budget_seconds=args.budget_minutes * 60, auto_threads=not args.threads)
    finally:
        bar.close()
    result = outcome.result
    if main:
        if result.best_state is None:
            print("bootstrap: stopped before the first epoch ended; no checkpoint was written.", file=sys.stderr)
            return 130 if result.cancelled else 1
        save_loss_curve(result.history, loss_curve_path(args.out), title=f"bootstrap {args.encoder} {config.input_size}px")
        why = "interrupted" if result.cancelled else "stopped early" if result.stopped_early else \
            "time limit" if result.timed_out else "done"
        print(f"wrote {args.out} ({why}; best epoch {result.best_epoch} of {result.epochs_run}, "
              f"{outcome.seconds_simulation:.0f} s simulating + {outcome.seconds_training:.0f} s training)")
        if outcome.metrics:
            m = outcome.metrics
            print(f"hold-out (simulated): Dice {m['dice']:.3f}  IoU {m['iou']:.3f}  precision {m['precision']:.3f}  "
                  f"recall {m['recall']:.3f}  accuracy {m['accuracy']:.4f}  AUC {_fmt(m['auc'])}")
    teardown()
    return 130 if result.cancelled else 0


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
