"""The case plan of a default ``bootstrap``: the simulator's whole variety, seeded and recorded.

A model trained only on medium, smooth pneumothoraces missed every thin rim on unseen CTs and
marked bullae and subcutaneous air. So every CT gets a stratified cycle of case kinds
(:data:`CASE_CYCLE`), each drawn into a :mod:`ptx_annotator.synthetic.cases` spec:

* ``rim`` - a thin rim, 1-3 mm of air over the anterior (or lateral) surface or only the apex;
* ``small`` / ``large`` - 2-10 % / 10-50 % of the hemithorax at any of the seven locations,
  sometimes loculated (adhesions) or with a fluid level (hydropneumothorax);
* ``special`` - bilateral, hydropneumothorax or loculated, in turn;
* ``beside`` - a pneumothorax with a confounder next to it (bulla, bleb, subcutaneous air ...);
* ``negative`` - three confounders, no pneumothorax (bullae, blebs, emphysema, subcutaneous emphysema,
  pneumomediastinum, oesophageal and bowel gas, a chest tube, in turn): their
  slices are hard negatives with an empty mask.

Two cases in five are also re-acquired (thicker slices, noise, a smooth or sharp kernel).
Every seed comes from one ``numpy`` generator seeded by (``seed``, CT index), offset to at least
:data:`SEED_FLOOR`, so no bootstrap case re-uses a seed of the evaluation suite's fixed grid
(``benchmarks/ptx_suite.py`` uses seeds below 100). Same seed, same plan.
"""

from __future__ import annotations

import numpy as np

from ptx_annotator.synthetic.confounders import CONFOUNDERS
from ptx_annotator.synthetic.shape import LOCATIONS

#: One cycle of case kinds; case ``k`` of a CT is ``CASE_CYCLE[k % len(CASE_CYCLE)]``.
#: The first 14 cases of a default run of 20 train (the rest validate and are held out): they hold
#: three rims (two over a surface, one at the apex), three small ones, three confounder-only cases
#: (all eight kinds), and bilateral, hydro- and loculated pneumothoraces.
CASE_CYCLE = ("rim", "small", "negative", "special", "large", "rim", "small", "negative", "special", "beside")
#: Bootstrap seeds are at least this (the suite's fixed cases use seeds below 100).
SEED_FLOOR = 100_000
#: Share of cases re-acquired with another protocol.
ACQUISITION_SHARE = 0.4
#: Slice thicknesses (mm) a re-acquisition may choose; thinner than the CT itself is never chosen.
ACQUISITION_SLICE_MM = (2.5, 5.0, 8.0)
#: Confounders in each confounder-only case (three negatives cover all eight kinds).
NEGATIVE_CONFOUNDERS = 3
#: Confounders put beside a pneumothorax in ``beside`` cases.
BESIDE = ("bulla", "subpleural_bleb", "subcutaneous_emphysema", "emphysema", "pneumomediastinum", "chest_tube")


def plan_cases(cases: int, seed: int = 0, ct_index: int = 0, native_slice_mm: float | None = None) -> list[dict]:
    """``cases`` specs for one CT (see the module docstring); each carries its ``kind`` in ``name``."""
    rng = np.random.default_rng([int(seed), int(ct_index), 0xB007])

    def new_seed() -> int:
        return int(rng.integers(SEED_FLOOR, 2 ** 31 - 1))

    def side() -> str:
        return str(rng.choice(["right", "left"]))

    plan = []
    n_negative = n_special = n_beside = n_rim = 0
    for case in range(int(cases)):
        kind = CASE_CYCLE[case % len(CASE_CYCLE)]
        spec: dict = {"pneumothorax": [], "confounders": []}
        if kind == "rim":
            extent = "apex" if n_rim % 3 == 1 else "surface"
            n_rim += 1
            location = "anterior" if extent == "apex" or rng.random() < 0.7 else "lateral"
            spec["pneumothorax"].append({"side": side(), "rim_mm": round(float(rng.uniform(1.0, 3.0)), 1),
                                         "rim_extent": extent, "location": location, "seed": new_seed()})
        elif kind in ("small", "large", "beside"):
            low, high = (0.02, 0.10) if kind == "small" else (0.10, 0.50) if kind == "large" else (0.04, 0.25)
            options = {"side": side(), "fraction": round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 3),
                       "location": str(rng.choice(LOCATIONS)), "seed": new_seed()}
            if kind == "large" and rng.random() < 0.25:
                options["adhesions"] = round(float(rng.uniform(0.4, 0.7)), 2)
            spec["pneumothorax"].append(options)
            if kind == "beside":
                spec["confounders"].append({"kind": BESIDE[n_beside % len(BESIDE)], "side": side(),
                                            "seed": new_seed()})
                n_beside += 1
        elif kind == "special":
            variant = ("bilateral", "hydro", "loculated")[n_special % 3]
            n_special += 1
            if variant == "bilateral":
                for which in ("right", "left"):
                    spec["pneumothorax"].append({"side": which, "seed": new_seed(),
                                                 "fraction": round(float(rng.uniform(0.03, 0.2)), 3),
                                                 "location": str(rng.choice(LOCATIONS))})
            elif variant == "hydro":
                spec["pneumothorax"].append({"side": side(), "fraction": round(float(rng.uniform(0.15, 0.4)), 3),
                                             "location": "diffuse", "anterior_bias": 0.4,
                                             "fluid_share": round(float(rng.uniform(0.2, 0.5)), 2),
                                             "seed": new_seed()})
            else:
                spec["pneumothorax"].append({"side": side(), "fraction": round(float(rng.uniform(0.06, 0.25)), 3),
                                             "location": "diffuse", "anterior_bias": 0.3,
                                             "adhesions": round(float(rng.uniform(0.4, 0.7)), 2),
                                             "seed": new_seed()})
        else:  # negative: confounders only, every kind in turn, sometimes two
            for _ in range(NEGATIVE_CONFOUNDERS):
                spec["confounders"].append({"kind": CONFOUNDERS[n_negative % len(CONFOUNDERS)], "side": side(),
                                            "seed": new_seed()})
                n_negative += 1
        if (case * 2) % 5 < 2:  # two cases in five (ACQUISITION_SHARE), spread over the cycle
            choices = [None] + [mm for mm in ACQUISITION_SLICE_MM
                                if native_slice_mm is None or mm > float(native_slice_mm) + 1e-3]
            slice_mm = choices[int(rng.integers(len(choices)))]
            acquisition = {"noise_hu": float(round(rng.uniform(0, 50))),
                           "kernel": str(rng.choice(["smooth", "standard", "sharp"])), "seed": new_seed()}
            if slice_mm is not None:
                acquisition["slice_mm"] = float(slice_mm)
            spec["acquisition"] = acquisition
        spec["name"] = kind
        plan.append(spec)
    return plan


def plan_summary(plan: list[dict]) -> dict:
    """Counts by kind, confounder and protocol (for the log and the checkpoint)."""
    kinds: dict = {}
    confounders: dict = {}
    for spec in plan:
        kinds[spec.get("name", "?")] = kinds.get(spec.get("name", "?"), 0) + 1
        for item in spec.get("confounders", []):
            confounders[item["kind"]] = confounders.get(item["kind"], 0) + 1
    return {"kinds": kinds, "confounders": confounders,
            "reacquired": sum(1 for spec in plan if spec.get("acquisition"))}
