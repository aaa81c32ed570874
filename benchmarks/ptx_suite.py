"""Pneumothorax evaluation suite: simulated cases (and the untouched CTs) over every shared real chest CT.

Per case: truth mL, proposed mL, Dice, detected (at least 30 % of the truth covered), false-positive
mL (proposed outside the truth), the mL proposed on the confounders, and the proposer's seconds;
then tables by size (< 50, 50-200, > 200 mL), rim thickness, location and confounder, the figures
of issue #16, and a plot (PNG). The case grid is fixed (seeded specs, ``SPECS``); CTs named in
``TUNING_CTS`` were the ones looked at while tuning the classical proposer, the rest are held out.

A model checkpoint is scored leave-one-CT-out: ``--trained-on NAME ...`` lists the canvases it
was trained on, and those CTs are skipped for it (a model is never scored on a CT it saw).

Run: ``.venv/bin/python benchmarks/ptx_suite.py [--quick] [--cts tcia nrrd_lung1] [--out DIR]``.
Big CTs are slow on a shared CPU: the 1.25 mm COVID series is re-acquired at 2.5 mm (two slices
averaged, as a 2.5 mm reconstruction would) and said so in its row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct"
CTS = {"tcia": DATA / "tcia_lung_pet_ct_dx_A0001", "nrrd_lung1": DATA / "nrrd_lung1" / "lung1_image.nrrd",
       "lidc": DATA / "more" / "lidc_idri_0001", "cmb_lung_kernel": DATA / "more" / "cmb_crc_msb_01068_lung_kernel",
       "ricord_covid": DATA / "more" / "ricord1a_419639_000082_covid"}
#: Canvases re-acquired before use (slice mm), to keep the suite affordable on 2 shared cores.
REACQUIRE = {"ricord_covid": 2.5}
TUNING_CTS = ("tcia", "nrrd_lung1")
DETECTED_SHARE = 0.30


def _p(side="right", **options):
    return {"side": side, **options}


#: name -> (spec, location label, rim label, confounder label); seeds fixed per name.
SPECS = {
    "rim2_anterior": ({"pneumothorax": [_p(rim_mm=2.0, seed=11)]}, "anterior", "2 mm", "none"),
    "rim1.5_apex": ({"pneumothorax": [_p(rim_mm=1.5, rim_extent="apex", seed=12)]}, "apical", "1.5 mm", "none"),
    "rim3_lateral_left": ({"pneumothorax": [_p("left", rim_mm=3.0, location="lateral", seed=13)]}, "lateral",
                          "3 mm", "none"),
    "rim1_anterior_left": ({"pneumothorax": [_p("left", rim_mm=1.0, seed=14)]}, "anterior", "1 mm", "none"),
    "small3_anterior": ({"pneumothorax": [_p(fraction=0.03, seed=15)]}, "anterior", "-", "none"),
    "medium10_posterior": ({"pneumothorax": [_p(fraction=0.1, location="posterior", seed=16)]}, "posterior", "-",
                           "none"),
    "medium15_basal_left": ({"pneumothorax": [_p("left", fraction=0.15, location="basal", seed=17)]}, "basal", "-",
                            "none"),
    "small6_medial": ({"pneumothorax": [_p(fraction=0.06, location="medial", seed=18)]}, "medial", "-", "none"),
    "large35_diffuse": ({"pneumothorax": [_p(fraction=0.35, location="diffuse", seed=19)]}, "diffuse", "-", "none"),
    "loculated12": ({"pneumothorax": [_p(fraction=0.12, location="diffuse", anterior_bias=0.3, adhesions=0.6,
                                         seed=20)]}, "loculated", "-", "none"),
    "hydro25": ({"pneumothorax": [_p("left", fraction=0.25, location="diffuse", anterior_bias=0.4, fluid_share=0.4,
                                     seed=21)]}, "hydropneumothorax", "-", "none"),
    "bilateral5": ({"pneumothorax": [_p(fraction=0.05, seed=22), _p("left", fraction=0.05, seed=23)]}, "bilateral",
                   "-", "none"),
    "ptx10_bulla": ({"pneumothorax": [_p(fraction=0.1, seed=24)],
                     "confounders": [{"kind": "bulla", "side": "right", "seed": 25}]}, "anterior", "-", "bulla"),
    "ptx10_subcutaneous": ({"pneumothorax": [_p(fraction=0.1, seed=26)],
                            "confounders": [{"kind": "subcutaneous_emphysema", "side": "right", "seed": 27}]},
                           "anterior", "-", "subcutaneous_emphysema"),
    "rim2_bleb_other_side": ({"pneumothorax": [_p(rim_mm=2.0, rim_extent="apex", seed=28)],
                              "confounders": [{"kind": "subpleural_bleb", "side": "left", "seed": 29}]}, "apical",
                             "2 mm", "subpleural_bleb"),
    "ptx10_8mm_lowdose": ({"pneumothorax": [_p("left", fraction=0.1, seed=30)],
                           "acquisition": {"slice_mm": 8.0, "noise_hu": 40.0, "kernel": "sharp", "seed": 31}},
                          "anterior", "-", "none"),
    "rim2_smooth_noisy": ({"pneumothorax": [_p(rim_mm=2.0, seed=32)],
                           "acquisition": {"noise_hu": 30.0, "kernel": "smooth", "seed": 33}}, "anterior", "2 mm",
                          "none"),
    "rim2_smooth_left": ({"pneumothorax": [_p("left", rim_mm=2.0, seed=67)],
                          "acquisition": {"noise_hu": 20.0, "kernel": "smooth", "seed": 68}}, "anterior", "2 mm",
                         "none"),
    "rim2_smooth_apex": ({"pneumothorax": [_p(rim_mm=2.0, rim_extent="apex", seed=65)],
                          "acquisition": {"noise_hu": 30.0, "kernel": "smooth", "seed": 66}}, "apical", "2 mm",
                         "none"),
    "neg_bullae": ({"confounders": [{"kind": "bulla", "side": "right", "seed": 40},
                                    {"kind": "bulla", "side": "left", "seed": 41}]}, "-", "-", "bulla"),
    "neg_blebs": ({"confounders": [{"kind": "subpleural_bleb", "side": "right", "seed": 42},
                                   {"kind": "subpleural_bleb", "side": "left", "seed": 43}]}, "-", "-",
                  "subpleural_bleb"),
    "neg_emphysema": ({"confounders": [{"kind": "emphysema", "side": "right", "seed": 44}]}, "-", "-", "emphysema"),
    "neg_subcut_mediastinal": ({"confounders": [{"kind": "subcutaneous_emphysema", "side": "left", "seed": 45},
                                                {"kind": "pneumomediastinum", "side": "right", "seed": 46}]}, "-", "-",
                               "subcutaneous+mediastinal"),
    "neg_oesophagus_bowel": ({"confounders": [{"kind": "oesophageal_gas", "side": "left", "seed": 47},
                                              {"kind": "bowel_gas", "side": "left", "seed": 48},
                                              {"kind": "bowel_gas", "side": "right", "seed": 49}]}, "-", "-",
                             "oesophageal+bowel gas"),
    "neg_chest_tube": ({"confounders": [{"kind": "chest_tube", "side": "right", "seed": 50}]}, "-", "-",
                       "chest_tube"),
    "neg_sharp_8mm": ({"acquisition": {"slice_mm": 8.0, "noise_hu": 40.0, "kernel": "sharp", "seed": 91}}, "-", "-",
                      "real anatomy only (8 mm, sharp, low dose)"),
    "neg_emphysema_8mm_sharp": ({"confounders": [{"kind": "emphysema", "side": "right", "seed": 98}],
                                 "acquisition": {"slice_mm": 8.0, "noise_hu": 40.0, "kernel": "sharp", "seed": 99}},
                                "-", "-", "emphysema (8 mm, sharp, low dose)"),
    "untouched": ({}, "-", "-", "real anatomy only"),
}
QUICK = ("rim2_anterior", "rim1.5_apex", "small3_anterior", "medium15_basal_left", "hydro25", "ptx10_bulla",
         "neg_bullae", "neg_subcut_mediastinal", "neg_oesophagus_bowel", "untouched")


def size_bin(ml: float) -> str:
    return "none" if ml <= 0 else "<50 mL" if ml < 50 else "50-200 mL" if ml <= 200 else ">200 mL"


def score(truth: np.ndarray, proposed: np.ndarray, confounders: np.ndarray, voxel_ml: float) -> dict:
    truth, proposed = truth.astype(bool), proposed.astype(bool)
    overlap = float((truth & proposed).sum())
    total = float(truth.sum() + proposed.sum())
    truth_ml = float(truth.sum()) * voxel_ml
    return {"truth_ml": round(truth_ml, 2), "proposed_ml": round(float(proposed.sum()) * voxel_ml, 2),
            "dice": round(2 * overlap / total, 4) if total else 1.0,
            "covered": round(overlap / truth.sum(), 4) if truth.any() else None,
            "detected": bool(truth.any() and overlap >= DETECTED_SHARE * truth.sum()),
            "fp_ml": round(float((proposed & ~truth).sum()) * voxel_ml, 2),
            "on_confounders_ml": round(float((proposed & confounders.astype(bool)).sum()) * voxel_ml, 2)}


def load_canvas(name: str):
    from ptx_annotator.io import load_volume
    from ptx_annotator.synthetic.acquisition import reacquire

    volume = load_volume(CTS[name])
    if name in REACQUIRE:
        volume, _ = reacquire(volume, slice_mm=REACQUIRE[name])
    return volume


def suite_cases(cts, names_for):
    """``(ct, name, case, seconds to simulate)`` of the suite's cases, simulated one at a time.

    ``names_for(ct)`` gives the case names for that canvas; a canvas that is absent is skipped
    with a message. The canvas is loaded and its anatomy segmented once per CT.
    """
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.synthetic.cases import simulate_case

    for ct in cts:
        if not CTS[ct].exists():
            print(f"skip {ct}: {CTS[ct]} is absent", file=sys.stderr)
            continue
        volume = load_canvas(ct)
        anatomy = segment_thorax(volume)
        for name in names_for(ct):
            started = time.perf_counter()
            case = simulate_case(volume, SPECS[name][0], anatomy=anatomy)
            yield ct, name, case, time.perf_counter() - started


def run(cts, names, proposer_factory, out_dir: Path, label: str, held_out_names=None) -> list[dict]:
    from ptx_annotator.proposers.contract import propose_volume

    rows = []
    for ct, name, case, simulated in suite_cases(
            cts, lambda ct: names if ct in TUNING_CTS or not held_out_names else held_out_names):
        spec, location, rim, confounder = SPECS[name]
        proposer = proposer_factory()
        started = time.perf_counter()
        proposal = propose_volume(proposer, case.volume, keep_probabilities=False)
        mask = proposal.mask
        finish = getattr(proposer, "postprocess_volume", None)
        if finish is not None:
            mask = finish(mask, case.volume.spacing)
        seconds = time.perf_counter() - started
        row = {"ct": ct, "case": name, "split": "tuning" if ct in TUNING_CTS else "held-out",
               "slices": case.volume.shape[0], "slice_mm": case.volume.spacing[0], "location": location,
               "rim": rim, "confounder": confounder, "proposer": label, "seconds": round(seconds, 2),
               "simulate_s": round(simulated, 1),
               **score(case.mask, mask, case.confounder_mask, case.volume.voxel_volume_ml)}
        row["size"] = size_bin(row["truth_ml"])
        rows.append(row)
        print(f"{ct:16s} {name:24s} truth {row['truth_ml']:7.1f} prop {row['proposed_ml']:7.1f} "
              f"dice {row['dice']:.3f} det {row['detected']!s:5s} fp {row['fp_ml']:6.1f} "
              f"{row['seconds']:5.1f}s", flush=True)
        (out_dir / f"ptx_suite_{label}.partial.json").write_text(json.dumps(rows, indent=1))  # kept should it stop
    return rows


def summarise(rows: list[dict]) -> dict:
    positives = [r for r in rows if r["truth_ml"] > 0]
    negatives = [r for r in rows if r["truth_ml"] == 0]
    at_least_10 = [r for r in positives if r["truth_ml"] >= 10]
    small = [r for r in positives if r["truth_ml"] < 50]
    tcia = [r["seconds"] for r in rows if r["ct"] == "tcia" and r["slices"] == 64]

    def mean(values):
        return round(float(np.mean(values)), 4) if values else None

    return {"cases": len(rows), "positives": len(positives), "negatives": len(negatives),
            "detected_of_10ml_or_more": f"{sum(r['detected'] for r in at_least_10)}/{len(at_least_10)}",
            "missed": [f"{r['ct']}/{r['case']}" for r in at_least_10 if not r["detected"]],
            "mean_dice_positive": mean([r["dice"] for r in positives]),
            "mean_dice_under_50ml": mean([r["dice"] for r in small]),
            "max_fp_ml_negative": max((r["proposed_ml"] for r in negatives), default=None),
            "negatives_over_5ml": [f"{r['ct']}/{r['case']} {r['proposed_ml']:.1f} mL" for r in negatives
                                   if r["proposed_ml"] > 5],
            "held_out_mean_dice_positive": mean([r["dice"] for r in positives if r["split"] == "held-out"]),
            "median_seconds_tcia_64_slices": round(float(np.median(tcia)), 2) if tcia else None}


def tables(rows: list[dict]) -> str:
    lines = []
    for key in ("size", "rim", "location", "confounder", "ct"):
        lines.append(f"\n| {key} | cases | detected | mean Dice | mean FP mL | max FP mL |\n|---|---|---|---|---|---|")
        for value in sorted({r[key] for r in rows}, key=str):
            group = [r for r in rows if r[key] == value]
            pos = [r for r in group if r["truth_ml"] > 0]
            det = f"{sum(r['detected'] for r in pos)}/{len(pos)}" if pos else "-"
            dice = f"{np.mean([r['dice'] for r in pos]):.3f}" if pos else "-"
            fps = [r["fp_ml"] for r in group]
            lines.append(f"| {value} | {len(group)} | {det} | {dice} | {np.mean(fps):.1f} | {max(fps):.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    pos = [r for r in rows if r["truth_ml"] > 0]
    neg = [r for r in rows if r["truth_ml"] == 0]
    for group, colour, text in ((pos, None, "positive"),):
        truth = np.array([r["truth_ml"] for r in group])
        dice = np.array([r["dice"] for r in group])
        held = np.array([r["split"] == "held-out" for r in group], dtype=bool)  # bool even with no row
        left.scatter(truth[~held], dice[~held], c="tab:blue", label="tuning CTs")
        left.scatter(truth[held], dice[held], c="tab:orange", marker="s", label="held-out CTs")
    left.set_xscale("log")
    left.axhline(0.9, ls="--", c="grey")
    left.axvline(10, ls=":", c="grey")
    left.set(xlabel="truth volume (mL, log)", ylabel="Dice", title=f"{title}: positive cases", ylim=(-0.02, 1.02))
    left.legend(loc="lower right")
    names = [f"{r['ct']}/{r['case'].replace('neg_', '')}" for r in neg]
    right.barh(range(len(neg)), [r["proposed_ml"] for r in neg], color="tab:red")
    right.axvline(5, ls="--", c="grey")
    right.set_yticks(range(len(neg)), names, fontsize=7)
    right.set(xlabel="proposed mL (no pneumothorax present)", title="confounder-only and untouched CTs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(rows: list[dict], summary: dict, out_dir: Path, label: str) -> None:
    """Write the JSON, the markdown tables and the PNG; print the summary and the tables."""
    summary["canvases"] = {c: str(CTS[c].relative_to(DATA.parent)) + (f" (re-acquired at {REACQUIRE[c]} mm)"
                                                                       if c in REACQUIRE else "")
                           for c in dict.fromkeys(r["ct"] for r in rows)}
    text = tables(rows)
    (out_dir / f"ptx_suite_{label}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    (out_dir / f"ptx_suite_{label}.md").write_text(json.dumps(summary, indent=1) + "\n" + text + "\n")
    plot(rows, out_dir / f"ptx_suite_{label}.png", label)
    print(json.dumps(summary, indent=1))
    print(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{len(QUICK)} cases on the TCIA CT only")
    parser.add_argument("--cts", nargs="+", choices=sorted(CTS), help="canvases (default: all shared chest CTs)")
    parser.add_argument("--cases", nargs="+", choices=sorted(SPECS), help="case names (default: all)")
    parser.add_argument("--held-out-cases", nargs="+", choices=sorted(SPECS),
                        help="a shorter case list for the held-out (big) CTs, to fit the CPU time")
    parser.add_argument("--checkpoint", help="score this U-Net checkpoint instead of the classical proposer")
    parser.add_argument("--trained-on", nargs="*", default=[], choices=sorted(CTS),
                        help="canvases the checkpoint was trained on: skipped (leave-one-CT-out)")
    parser.add_argument("--out", default="benchmarks/out", help="folder for the JSON, the tables and the PNG")
    parser.add_argument("--from-rows", metavar="JSON",
                        help="summarise rows an earlier run wrote (its .partial.json when it was stopped)")
    args = parser.parse_args(argv)
    if args.from_rows:
        rows = json.loads(Path(args.from_rows).read_text())
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        report(rows, summarise(rows), out_dir, rows[0]["proposer"] if rows else "classical")
        return 0
    import torch

    torch.set_num_threads(2)
    cts = args.cts or (["tcia"] if args.quick else list(CTS))
    names = args.cases or (list(QUICK) if args.quick else list(SPECS))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        from ptx_annotator.proposers import get_proposer

        cts = [c for c in cts if c not in args.trained_on]
        label = Path(args.checkpoint).stem

        def factory():
            return get_proposer(checkpoint=args.checkpoint, device="cpu")
    else:
        from ptx_annotator.proposers.classical import ClassicalProposer

        label = "classical"
        factory = ClassicalProposer
    started = time.perf_counter()
    rows = run(cts, names, factory, out_dir, label, args.held_out_cases)
    summary = summarise(rows)
    summary["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
    report(rows, summary, out_dir, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
