"""The inference engine against a plain eager fp32 smp loop, on the same real CT slices, in one run.

Usage::

    python benchmarks/inference.py [--series DIR] [--slices 16] [--rounds 1] [--device cpu|cuda]
                                   [--precision fp32|bf16|fp16] [--batch-size N]

Both paths run the same seeded ResNet-50 U-Net at 512x512 over the same ``--slices`` consecutive
slices from the middle of the real TCIA series (default 16; ``--slices 0`` = all):

* eager: ``model(x)`` per slice, fp32, contiguous NCHW, batch 1, ``torch.inference_mode``;
* engine: :class:`ptx_annotator.proposers.inference.ModelProposer` with automatic device and precision
  (or the ones given), priority slice first, per-slice post-processing included in its time.

By default the weights are random (nothing is downloaded) but made deterministic and meaningful: ``torch``
is seeded (``--seed``, default 0), then the segmentation head is calibrated once on the middle
slice (in fp32, before either path runs): its weights are scaled so the logits have a standard
deviation of 4 and its bias shifted so 10 % of that slice's pixels pass the threshold. The mask is
then a sparse, image-driven region instead of a coin-flip around p = 0.5, and agreement measures
real precision effects rather than noise at the threshold. A random network is a harsh test of
bf16, though: its logits pile up near the threshold far more than a trained model's do. With
``--checkpoint CKPT`` a trained CT checkpoint (for example from ``ptx-annotate bootstrap
--encoder resnet50``) runs instead, at 512x512 whatever size it was trained at.

Reported: time to the requested (middle) slice after warm-up, slices/s of each path, and, as the
LAST line, ``ratio R agreement A``: R = eager time / engine time over the slices, A = share of
voxels on which the thresholded probabilities (p >= threshold) of both paths agree. With
``--rounds 2`` the order is eager, engine, engine, eager and each path's best round counts, which
evens out load from other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_SERIES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"
INPUT_SIZE = 512
LOGIT_STD = 4.0
FOREGROUND_SHARE = 0.10


def calibrated_model(hu_slice: np.ndarray, seed: int):
    """A seeded ResNet-50 U-Net whose head gives well-spread logits, 10 % above 0 on ``hu_slice``."""
    import torch

    from ptx_annotator.model import build_model
    from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit

    torch.manual_seed(seed)
    model = build_model("resnet50").eval()
    head = model.segmentation_head[0]
    x = torch.from_numpy(hu_to_unit(hu_slice, LUNG_WINDOW_HU))[None, None]
    with torch.inference_mode():
        logits = model(x).flatten()
    with torch.no_grad():
        scale = LOGIT_STD / float(logits.std())
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        head.bias.sub_(float(torch.quantile(logits * scale, 1.0 - FOREGROUND_SHARE)))
    return model


def eager_probabilities(model, hu: np.ndarray, window) -> tuple[np.ndarray, list[float]]:
    """The plain loop: one slice at a time, fp32, NCHW. Returns probabilities and per-slice seconds."""
    import torch

    from ptx_annotator.preprocessing import hu_to_unit

    out = np.zeros(hu.shape, dtype=np.float32)
    seconds = []
    with torch.inference_mode():
        for index in range(hu.shape[0]):
            started = time.perf_counter()
            x = torch.from_numpy(hu_to_unit(hu[index], window))[None, None]
            out[index] = torch.sigmoid(model(x))[0, 0].numpy()
            seconds.append(time.perf_counter() - started)
    return out, seconds


def engine_probabilities(proposer, volume, first_slice: int) -> tuple[np.ndarray, float, float]:
    """Probabilities from the engine, seconds to the first (requested) slice and to the end."""
    out = np.zeros(volume.shape, dtype=np.float32)
    started = time.perf_counter()
    to_first = None
    for result in proposer.iter_slices(volume, first_slice=first_slice):
        out[result.index] = result.probability
        if to_first is None:
            to_first = time.perf_counter() - started
    return out, to_first, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, default=DEFAULT_SERIES, help="DICOM series folder (real CT)")
    parser.add_argument("--slices", type=int, default=16, help="consecutive middle slices to run (0 = all)")
    parser.add_argument("--rounds", type=int, default=1, choices=(1, 2), help="2 = ABBA order, best round each")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained CT checkpoint instead of the seeded one")
    args = parser.parse_args(argv)

    import torch

    from ptx_annotator.proposers.inference import ModelProposer, cpu_supports_bf16
    from ptx_annotator.io import load_series
    from ptx_annotator.model import CheckpointMeta
    from ptx_annotator.volume import Volume

    if not args.series.exists():
        print(f"series not found: {args.series}", file=sys.stderr)
        return 2
    full = load_series(args.series)
    n = full.shape[0] if args.slices <= 0 else min(args.slices, full.shape[0])
    start = (full.shape[0] - n) // 2
    hu = np.ascontiguousarray(full.hu[start:start + n])
    volume = Volume(hu=hu, spacing=full.spacing, affine=full.affine, series_uid=f"{full.series_uid}-bench",
                    source=str(args.series))
    first_slice = n // 2

    if args.checkpoint is None:
        meta = CheckpointMeta(encoder="resnet50", input_size=INPUT_SIZE, threshold=0.5, name="bench-resnet50-seeded")
        eager_model = calibrated_model(hu[first_slice], args.seed)
        described = f"seeded ResNet-50 U-Net (seed {args.seed})"
    else:
        from ptx_annotator.model import load_checkpoint

        eager_model, meta = load_checkpoint(args.checkpoint, device="cpu")
        described = f"trained {meta.encoder} U-Net {args.checkpoint.name} (trained at {meta.input_size} px)"
        meta.input_size = INPUT_SIZE  # run at 512x512 whatever the training size
    eager_model = eager_model.eval()
    proposer = ModelProposer(copy.deepcopy(eager_model), meta, device=args.device, precision=args.precision,
                             batch_size=args.batch_size)

    print(f"series {args.series.name}: slices {start}..{start + n - 1} of {full.shape[0]}, "
          f"{hu.shape[1]}x{hu.shape[2]} px; {described} run at {INPUT_SIZE}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU bf16 native: {cpu_supports_bf16()}, "
          f"CUDA: {torch.cuda.is_available()}, load average {os.getloadavg()[0]:.1f}")

    # warm-up (one slice each; for the engine this also runs the one-time bf16 self-check if due)
    eager_probabilities(eager_model, hu[first_slice:first_slice + 1], meta.hu_window)
    proposer.predict_probabilities(hu[first_slice:first_slice + 1])
    print(f"engine: device {proposer.device}, precision {proposer.precision} ({proposer.precision_reason}), "
          f"batch {proposer.batch_size}, BatchNorm folded {proposer.fused}, channels_last")

    order = ["eager", "engine"] if args.rounds == 1 else ["eager", "engine", "engine", "eager"]
    best: dict[str, float] = {}
    for name in order:
        if name == "eager":
            eager, seconds = eager_probabilities(eager_model, hu, meta.hu_window)
            total, eager_first = sum(seconds), seconds[first_slice]
        else:
            engine, engine_first, total = engine_probabilities(proposer, volume, first_slice)
        best[name] = min(best.get(name, float("inf")), total)
        print(f"  {name:6s} round: {total:.2f} s for {n} slices ({n / total:.2f} slices/s)", flush=True)

    threshold = meta.threshold
    agreement = float(np.mean((eager >= threshold) == (engine >= threshold)))
    max_diff = float(np.abs(eager - engine).max())
    foreground = float(np.mean(eager >= threshold))
    print(f"time to the requested slice {first_slice}: engine {engine_first * 1000:.0f} ms, "
          f"eager {eager_first * 1000:.0f} ms")
    print(f"eager  fp32 loop: {best['eager']:.2f} s, {n / best['eager']:.2f} slices/s, "
          f"{best['eager'] / n * 1000:.0f} ms/slice")
    print(f"engine          : {best['engine']:.2f} s, {n / best['engine']:.2f} slices/s, "
          f"{best['engine'] / n * 1000:.0f} ms/slice")
    print(f"foreground share {foreground:.4f}; max |p_engine - p_eager| {max_diff:.2e}")
    print(f"ratio {best['eager'] / best['engine']:.2f} agreement {agreement:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
