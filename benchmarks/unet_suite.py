"""The pneumothorax suite for a U-Net checkpoint, leave-one-CT-out, plain and anatomy-constrained.

The cases, the scoring and the tables are those of ``benchmarks/ptx_suite.py`` (imported, not
copied). One model inference per case gives two proposals, scored side by side:

* ``unet`` - the checkpoint's mask exactly as ``ptx-annotate predict --checkpoint`` makes it;
* ``combined`` - that mask kept to the pleural cavities of the case's own CT
  (:mod:`ptx_annotator.proposers.combined`; identical to running ``CombinedProposer``).

``--trained-on NAME ...`` are the canvases the checkpoint was trained on: skipped, so no model is
scored on a CT it saw. By default every other shared chest CT gets the suite's shorter held-out
case list (``HELD_OUT_CASES``: rims, small, medium, hydro, a bulla beside, confounder-only and
untouched); ``--cases`` chooses others.

Run: ``.venv/bin/python benchmarks/unet_suite.py --checkpoint CKPT --trained-on tcia [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ptx_suite  # noqa: E402  (benchmarks/ptx_suite.py)

HELD_OUT_CASES = ("rim2_anterior", "rim3_lateral_left", "small3_anterior", "medium10_posterior", "hydro25",
                  "ptx10_bulla", "neg_bullae", "neg_subcut_mediastinal", "neg_oesophagus_bowel", "untouched")
VARIANTS = ("unet", "combined")


def run(checkpoint: str, cts, names, out_dir: Path) -> dict:
    """Rows per variant (``{'unet': [...], 'combined': [...]}``), written as they come."""
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.proposers import get_proposer
    from ptx_annotator.proposers.combined import constrain, pleural_region
    from ptx_annotator.proposers.contract import propose_volume

    proposer = get_proposer(checkpoint=checkpoint, device="cpu")
    label = Path(checkpoint).name.split(".")[0]
    rows = {variant: [] for variant in VARIANTS}
    for ct, name, case, simulated in ptx_suite.suite_cases(cts, lambda ct: names):
        spec, location, rim, confounder = ptx_suite.SPECS[name]
        started = time.perf_counter()
        plain = propose_volume(proposer, case.volume, keep_probabilities=False).mask
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        region = pleural_region(segment_thorax(case.volume), case.volume.spacing)
        combined = constrain(plain, region, proposer, case.volume.spacing)
        seconds_combined = seconds + time.perf_counter() - started
        for variant, mask, took in (("unet", plain, seconds), ("combined", combined, seconds_combined)):
            row = {"ct": ct, "case": name, "split": "held-out", "slices": case.volume.shape[0],
                   "slice_mm": case.volume.spacing[0], "location": location, "rim": rim,
                   "confounder": confounder, "proposer": f"{label}-{variant}", "seconds": round(took, 2),
                   "simulate_s": round(simulated, 1),
                   **ptx_suite.score(case.mask, mask, case.confounder_mask, case.volume.voxel_volume_ml)}
            row["size"] = ptx_suite.size_bin(row["truth_ml"])
            rows[variant].append(row)
        a, b = rows["unet"][-1], rows["combined"][-1]
        print(f"{ct:16s} {name:24s} truth {a['truth_ml']:7.1f} | unet prop {a['proposed_ml']:7.1f} dice "
              f"{a['dice']:.3f} det {a['detected']!s:5s} | combined prop {b['proposed_ml']:7.1f} dice "
              f"{b['dice']:.3f} det {b['detected']!s:5s} | {a['seconds']:5.1f}s", flush=True)
        for variant in VARIANTS:
            (out_dir / f"ptx_suite_{label}-{variant}.partial.json").write_text(json.dumps(rows[variant], indent=1))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--trained-on", nargs="+", required=True, choices=sorted(ptx_suite.CTS),
                        help="canvases the checkpoint was trained on (skipped)")
    parser.add_argument("--cts", nargs="+", choices=sorted(ptx_suite.CTS), help="default: every other shared CT")
    parser.add_argument("--cases", nargs="+", choices=sorted(ptx_suite.SPECS), help="default: HELD_OUT_CASES")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch threads (default 1: on the crowded shared CPU two threads run slower)")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cts = [c for c in (args.cts or list(ptx_suite.CTS)) if c not in args.trained_on]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = run(args.checkpoint, cts, list(args.cases or HELD_OUT_CASES), out_dir)
    minutes = round((time.perf_counter() - started) / 60, 1)
    label = Path(args.checkpoint).name.split(".")[0]
    for variant in VARIANTS:
        summary = ptx_suite.summarise(rows[variant])
        summary.update(wall_minutes=minutes, trained_on=args.trained_on, checkpoint=str(args.checkpoint))
        print(f"\n== {variant} ==")
        ptx_suite.report(rows[variant], summary, out_dir, f"{label}-{variant}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
