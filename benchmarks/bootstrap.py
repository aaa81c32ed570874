"""Bootstrap figure: a DEFAULT ``ptx-annotate bootstrap`` on one real CT, tested on another real CT.

1. ``ptx-annotate bootstrap TCIA --out CKPT`` with no other flags (defaults are what users get:
   20 planned cases, 256 px on the CPU, the 25-minute CPU budget), timed end to end (simulation,
   training, hold-out evaluation, saving); ``--size``/``--epochs``/``--cases``/``--max-minutes``/
   ``--threads`` pass flags through only when given;
2. pneumothoraces simulated in a DIFFERENT real CT (the NRRD lung1 volume, another scanner and
   field of view), proposed with the new checkpoint exactly as ``ptx-annotate predict`` does
   (the inference engine in fp32, its post-processing with the outside-air rule, the 3D clean-up);
   Dice per case (3D, native resolution) and pooled over all cases, beside the Dice of the bare
   thresholded probabilities; and the false-positive volume on the untouched lung1 CT.

The full leave-one-CT-out suite of a checkpoint is ``benchmarks/unet_suite.py``.

Run from the project root: ``.venv/bin/python benchmarks/bootstrap.py``.
Prints the numbers; ``--json PATH`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "ct"
TRAIN_CT = SHARED / "tcia_lung_pet_ct_dx_A0001"
TEST_CT = SHARED / "nrrd_lung1" / "lung1_image.nrrd"
TEST_CASES = (("right", 0.10, 101), ("left", 0.20, 102), ("right", 0.30, 103), ("left", 0.40, 104))


def propose(proposer, volume) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, probabilities)`` on the CT grid, as ``ptx-annotate predict`` makes them."""
    from ptx_annotator.proposers.contract import propose_volume

    proposal = propose_volume(proposer, volume)
    return proposer.postprocess_volume(proposal.mask, volume.spacing).astype(bool), proposal.probabilities


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget inside bootstrap")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--out", default="/tmp/ptx_bootstrap_benchmark/bootstrap.safetensors")
    parser.add_argument("--checkpoint", default=None, help="skip training; evaluate this checkpoint")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    for path in (TRAIN_CT, TEST_CT):
        if not path.exists():
            print(f"shared data missing: {path}")
            return 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ptx_annotator.cli import main as cli
    from ptx_annotator.io import load_volume
    from ptx_annotator.metrics import dice
    from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

    figures = {"flags": {k: v for k, v in vars(args).items() if v is not None and k not in ("out", "json")},
               "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "gpu": torch.cuda.is_available()}
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = args.out
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        flags = [(f"--{name.replace('_', '-')}", value) for name, value in
                 (("size", args.size), ("encoder", args.encoder), ("epochs", args.epochs), ("cases", args.cases),
                  ("max_minutes", args.max_minutes), ("threads", args.threads)) if value is not None]
        rc = cli(["bootstrap", str(TRAIN_CT), "--out", checkpoint] + [str(x) for flag in flags for x in flag])
        figures["bootstrap_seconds"] = round(time.monotonic() - started, 1)
        figures["bootstrap_rc"] = rc
        print(f"bootstrap: {figures['bootstrap_seconds']:.0f} s wall ({figures['bootstrap_seconds'] / 60:.1f} min), rc {rc}")
        if rc != 0 or not Path(checkpoint).is_file():
            return 1
    from ptx_annotator.proposers import get_proposer

    proposer = get_proposer(checkpoint=checkpoint, device="cpu", precision="fp32")
    meta = proposer.meta
    figures["training_holdout"] = meta.metrics
    figures["epochs"] = meta.provenance.get("epochs")
    test = load_volume(TEST_CT)
    from ptx_annotator.anatomy import segment_thorax

    anatomy = segment_thorax(test)
    per_case, pooled_truth, pooled_pred = [], [], []
    started = time.monotonic()
    for side, fraction, seed in TEST_CASES:
        case = simulate_pneumothorax(test, side=side, fraction=fraction, seed=seed, anatomy=anatomy)
        predicted, probability = propose(proposer, case.volume)
        value, bare = dice(case.mask, predicted), dice(case.mask, probability >= meta.threshold)
        per_case.append({"side": side, "fraction": round(case.fraction_achieved, 3), "volume_ml": round(case.volume_ml, 1),
                         "dice": round(float(value), 4), "dice_bare_threshold": round(float(bare), 4)})
        pooled_truth.append(case.mask.astype(bool))
        pooled_pred.append(predicted)
        print(f"lung1 {side:5s} {case.fraction_achieved:5.1%} ({case.volume_ml:6.0f} mL): Dice {value:.3f} "
              f"(bare threshold {bare:.3f})", flush=True)
    figures["test_cases"] = per_case
    figures["test_mean_dice"] = round(float(np.mean([c["dice"] for c in per_case])), 4)
    figures["test_mean_dice_bare_threshold"] = round(float(np.mean([c["dice_bare_threshold"] for c in per_case])), 4)
    figures["test_pooled_dice"] = round(float(dice(np.concatenate(pooled_truth), np.concatenate(pooled_pred))), 4)
    untouched, _ = propose(proposer, test)
    figures["untouched_false_positive_ml"] = round(float(untouched.sum() * test.voxel_volume_ml), 1)
    figures["test_seconds"] = round(time.monotonic() - started, 1)
    print(f"different real CT (lung1 NRRD, {len(per_case)} simulated cases): mean Dice {figures['test_mean_dice']:.3f}, "
          f"pooled Dice {figures['test_pooled_dice']:.3f} (bar 0.85); bare threshold mean Dice "
          f"{figures['test_mean_dice_bare_threshold']:.3f}; untouched lung1: {figures['untouched_false_positive_ml']:.1f} mL "
          "false positive")
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
