"""`ptx-annotate train-xray --images DIR --rle CSV`: train a chest X-ray pneumothorax U-Net."""

from __future__ import annotations

import json

ENCODER_CHOICES = ("resnet34", "resnet50", "densenet121", "vgg19", "inceptionv3")
LOSS_CHOICES = ("focal_dice", "bce_jaccard")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-xray", help="train a chest X-ray pneumothorax U-Net on SIIM-ACR DICOMs + the stage-1 RLE table",
        description="Train a U-Net on chest X-rays with SIIM-ACR stage-1 RLE masks (ImageId = file name stem "
                    "or DICOM SOPInstanceUID). Negatives are undersampled; augmentation: rotation, zoom, "
                    "brightness, flips; CLAHE preprocessing is stored in the checkpoint.")
    parser.add_argument("--images", required=True, help="folder with the X-ray files (DICOM/PNG/JPEG, searched recursively)")
    parser.add_argument("--rle", required=True, help="SIIM train-rle.csv or .csv.gz (ImageId, EncodedPixels)")
    parser.add_argument("--out", default="xray-unet.safetensors", help="checkpoint to write (default %(default)s)")
    parser.add_argument("--size", type=int, default=512, help="model input size in pixels, 256 or 512 (default %(default)s)")
    parser.add_argument("--encoder", choices=ENCODER_CHOICES, default="resnet34", help="U-Net encoder (default %(default)s)")
    parser.add_argument("--patches", type=int, default=None, metavar="PX",
                        help="train on random PX x PX patches (e.g. 128) instead of the whole image")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default %(default)s)")
    parser.add_argument("--loss", choices=LOSS_CHOICES, default="focal_dice",
                        help="focal + Dice (X-ray papers) or BCE + Jaccard (default %(default)s)")
    parser.add_argument("--negative-ratio", type=float, default=1.0, metavar="R",
                        help="keep R negative images per positive image (default %(default)s)")
    parser.add_argument("--patience", type=int, default=8,
                        help="stop after this many epochs without a better validation loss (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of images held out (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.4, help="mask threshold stored in the checkpoint (default %(default)s)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: 8 on CUDA, 0 on CPU)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    parser.add_argument("--registry", default=None, metavar="DIR",
                        help="also register the model as a new version in this checkpoint registry folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.errors import PtxError

    if args.size not in (256, 512):
        raise PtxError(f"--size must be 256 or 512 (got {args.size}).")
    if args.epochs < 1:
        raise PtxError(f"--epochs must be at least 1 (got {args.epochs}).")
    from ptx_annotator.training.xray import train_xray

    workers = args.workers
    if workers is None:
        import torch

        on_cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        workers = 8 if on_cuda else 0
    bar = _Progress(quiet=args.json)
    summary = train_xray(args.images, args.rle, args.out, size=args.size, encoder=args.encoder, patches=args.patches,
                         epochs=args.epochs, loss=args.loss, negative_ratio=args.negative_ratio,
                         batch_size=args.batch_size, lr=args.lr, device=args.device, num_workers=workers,
                         seed=args.seed, val_fraction=args.val_fraction, threshold=args.threshold,
                         augment=not args.no_augment, patience=args.patience, registry_dir=args.registry, progress=bar)
    bar.close()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    data, metrics = summary["data"], summary["metrics"]
    print(f"data: {data['positives']} positive, {data['negatives_used']} of {data['negatives_available']} negative "
          f"images used; {data['train_images']} train / {data['val_images']} validation"
          + (" (too few images to hold any out: validation = training images)" if data["validation_is_training"] else "")
          + (f"; {data['not_in_table']} files not in the RLE table skipped" if data["not_in_table"] else ""))
    print(f"trained {summary['epochs_run']} epoch(s) in {summary['seconds']:.1f} s, best epoch {summary['best_epoch']}"
          + (" (stopped by the user)" if summary["cancelled"] else ""))
    print("validation: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    if summary["checkpoint"]:
        print(f"checkpoint: {summary['checkpoint']}  (try it: ptx-annotate xray-demo --checkpoint {summary['checkpoint']})")
    if summary["registry"]:
        print(f"registry: {summary['registry']['message']}")
    return 0


class _Progress:
    """A tqdm bar per epoch on stderr, fed by the trainer's events."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None

    def __call__(self, event) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if event.kind == "step":
            if self.bar is None:
                self.bar = tqdm(total=event.steps, desc=f"epoch {event.epoch}/{event.epochs}", unit="batch", leave=False)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.loss:.4f}")
        elif event.kind == "epoch":
            self.close()
            dice = "n/a" if event.val_dice is None else f"{event.val_dice:.3f}"
            val = "n/a" if event.val_loss is None else f"{event.val_loss:.4f}"
            tqdm.write(f"epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f}, val loss {val}, val Dice {dice}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
