"""Training throughput: one epoch of ``fit`` over N real CT slices, timed.

The slices are the TCIA chest CT's 64 slices repeated to ``--slices`` (default 1,000) at
``--size`` (default 512) with a painted air rim as the label, so the data are real pixels; the
figure is the wall time of the epoch (the first step, which includes cuDNN/AMP warm-up, is
reported apart). The issue's GPU target: ResNet-50, 1,000 slices of 512 x 512, under 30 s on an
H100. Run: ``.venv/bin/python benchmarks/training_epoch.py [--device cuda] [--slices 1000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
TCIA = ROOT.parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"


class RepeatedSlices(Dataset):
    def __init__(self, images: torch.Tensor, masks: torch.Tensor, length: int):
        self.images, self.masks, self.length = images, masks, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.images[index % len(self.images)], self.masks[index % len(self.masks)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    if not TCIA.exists():
        print(f"shared data missing: {TCIA}")
        return 1
    from scipy import ndimage

    from ptx_annotator.io import load_series
    from ptx_annotator.model import build_model
    from ptx_annotator.training.data import prepare_slice
    from ptx_annotator.training.trainer import TrainConfig, fit

    volume = load_series(TCIA)
    images, masks = [], []
    for z in range(volume.shape[0]):
        lung = ndimage.binary_opening(volume.hu[z] < -400, iterations=2)
        rim = lung & ~ndimage.binary_erosion(lung, iterations=12)
        image, mask = prepare_slice(np.where(rim, -1000, volume.hu[z]), rim, args.size)
        images.append(image)
        masks.append(mask)
    data = RepeatedSlices(torch.stack(images), torch.stack(masks), args.slices)
    config = TrainConfig(epochs=1, batch_size=args.batch_size, device=args.device, input_size=args.size,
                         augment=False, num_workers=args.workers)
    first_step = {}

    def progress(event):
        if event.kind == "step" and event.step == 1:
            first_step["seconds"] = event.elapsed

    model = build_model(args.encoder)
    started = time.monotonic()
    result = fit(model, data, None, config, progress=progress)
    if str(result.config.device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.monotonic() - started
    figures = {"device": result.config.device, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "encoder": args.encoder, "slices": args.slices, "size": args.size, "batch_size": args.batch_size,
               "amp": result.config.amp, "channels_last": result.config.channels_last,
               "epoch_seconds": round(seconds, 2), "first_step_seconds": round(first_step.get("seconds", 0.0), 2),
               "slices_per_second": round(args.slices / seconds, 1), "train_loss": result.history[0]["train_loss"]}
    print(f"one epoch, {args.slices} slices of {args.size} px, {args.encoder} on {figures['gpu'] or figures['device']}: "
          f"{seconds:.1f} s ({figures['slices_per_second']} slices/s; first step {figures['first_step_seconds']} s)")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
