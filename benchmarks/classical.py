"""Classical pneumothorax proposer on simulated pneumothoraces in the shared real CTs.

Prints one row per case (CT, side, requested fraction, seed): Dice against the simulation's
truth, false-positive and false-negative mL, and the proposer's time; then the untouched CTs'
false-positive mL and the means. Run: ``.venv/bin/python benchmarks/classical.py [--quick]``.

``--timing N`` instead times N proposals of one 64-slice TCIA case (a simulated 10 % right
pneumothorax): wall-clock and CPU (``time.process_time``) seconds per run and their medians; on a
shared machine the CPU figure is the one other processes do not inflate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ptx_annotator.proposers.classical import ClassicalProposer
from ptx_annotator.io import load_volume
from ptx_annotator.proposers.contract import propose_volume
from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct"
CTS = {"tcia": DATA / "tcia_lung_pet_ct_dx_A0001", "nrrd_lung1": DATA / "nrrd_lung1" / "lung1_image.nrrd"}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def run_case(proposer, volume) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    proposal = propose_volume(proposer, volume, keep_probabilities=False)
    return proposal.mask.astype(bool), time.perf_counter() - start


def timing(runs: int) -> int:
    """Wall-clock and CPU seconds of ``runs`` proposals on one 64-slice TCIA case."""
    path = CTS["tcia"]
    if not path.exists():
        print(f"tcia: {path} not present", file=sys.stderr)
        return 1
    volume = simulate_pneumothorax(load_volume(path), "right", 0.1, seed=5).volume
    proposer = ClassicalProposer()
    walls, cpus = [], []
    for run in range(1, runs + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        propose_volume(proposer, volume, keep_probabilities=False)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        print(f"run {run}: {walls[-1]:.2f} s wall, {cpus[-1]:.2f} s CPU", flush=True)
    print(f"{proposer.source_id}, {volume.shape[0]} slices: median {np.median(walls):.2f} s wall, "
          f"{np.median(cpus):.2f} s CPU over {runs} runs")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, two sizes")
    parser.add_argument("--timing", type=int, metavar="N", help="only time N proposals of one 64-slice TCIA case")
    args = parser.parse_args(argv)
    if args.timing:
        return timing(args.timing)
    fractions = (0.05, 0.3) if args.quick else (0.05, 0.1, 0.2, 0.3)
    seeds = (0,) if args.quick else (0, 1, 2)
    proposer = ClassicalProposer()
    rows, untouched = [], []
    print(f"{'ct':<11}{'side':<6}{'frac':>6}{'seed':>5}{'achieved':>9}{'truth mL':>9}{'dice':>7}{'FP mL':>8}"
          f"{'FN mL':>8}{'time s':>8}")
    for name, path in CTS.items():
        if not path.exists():
            print(f"{name}: {path} not present, skipped", file=sys.stderr)
            continue
        volume = load_volume(path)
        ml = volume.voxel_volume_ml
        found, seconds = run_case(proposer, volume)
        untouched.append((name, found.sum() * ml, seconds))
        for side in ("right", "left"):
            for fraction in fractions:
                for seed in seeds:
                    sim = simulate_pneumothorax(volume, side, fraction, seed=seed)
                    truth = sim.mask.astype(bool)
                    found, seconds = run_case(proposer, sim.volume)
                    row = (name, side, fraction, seed, sim.fraction_achieved, truth.sum() * ml, dice(found, truth),
                           (found & ~truth).sum() * ml, (truth & ~found).sum() * ml, seconds)
                    rows.append(row)
                    print(f"{row[0]:<11}{row[1]:<6}{row[2]:>6.2f}{row[3]:>5}{row[4]:>9.3f}{row[5]:>9.1f}{row[6]:>7.3f}"
                          f"{row[7]:>8.1f}{row[8]:>8.1f}{row[9]:>8.2f}", flush=True)
    print()
    for name, fp_ml, seconds in untouched:
        print(f"untouched {name}: false positive {fp_ml:.2f} mL, proposer {seconds:.2f} s")
    for name in CTS:
        dices = [r[6] for r in rows if r[0] == name]
        if dices:
            print(f"{name}: mean dice {np.mean(dices):.3f} (min {np.min(dices):.3f}) over {len(dices)} cases; "
                  f"mean time {np.mean([r[9] for r in rows if r[0] == name]):.2f} s")
    if rows:
        print(f"ALL: mean dice {np.mean([r[6] for r in rows]):.3f} over {len(rows)} cases; "
              f"max untouched FP {max(u[1] for u in untouched):.2f} mL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
