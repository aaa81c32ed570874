"""One simulated case from one JSON-able spec: pneumothoraces, confounders beside them, a protocol.

A spec (every option seeded, so the same spec on the same CT gives the same case)::

    {"pneumothorax": [{"side": "right", "rim_mm": 2, "location": "anterior", "seed": 1}, ...],
     "confounders": [{"kind": "bulla", "side": "left", "seed": 2}, ...],
     "mediastinal_shift": {"shift_mm": 15, "seed": 4},
     "acquisition": {"slice_mm": 8, "noise_hu": 40, "kernel": "sharp", "seed": 3}}

``pneumothorax`` entries take the keyword options of
:func:`ptx_annotator.synthetic.pneumothorax.simulate_pneumothorax` (two sides: bilateral);
``confounders`` those of :func:`ptx_annotator.synthetic.confounders.add_confounder`;
``mediastinal_shift`` those of :func:`ptx_annotator.synthetic.shift.shift_mediastinum` (``away_from``
defaults to the side of the largest pneumothorax; a tension pneumothorax), applied after the
pneumothoraces and before the confounders, which are placed in the moved anatomy;
``acquisition`` those of :func:`ptx_annotator.synthetic.acquisition.reacquire`. The truth is
every voxel at least half filled by pneumothorax air (:mod:`ptx_annotator.synthetic.slab`): the
air shares travel through the shift and the re-acquisition, and the rule is applied last. An empty
``pneumothorax`` list is a confounder-only (negative) case. :func:`random_spec` draws one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ptx_annotator.anatomy import ThoraxAnatomy, segment_thorax
from ptx_annotator.synthetic.confounders import CONFOUNDERS, add_confounder
from ptx_annotator.synthetic.shape import LOCATIONS
from ptx_annotator.synthetic.slab import COVERED_SHARE
from ptx_annotator.volume import Volume

_PTX_KEYS = {"side", "fraction", "seed", "anterior_bias", "apical_bias", "location", "rim_mm", "rim_extent",
             "adhesions", "fluid_share"}


@dataclass
class SimulatedCase:
    """The CT of one spec and its truth: ``mask`` pneumothorax air, ``confounder_mask`` the other air."""

    volume: Volume
    mask: np.ndarray
    confounder_mask: np.ndarray
    fluid_mask: np.ndarray
    spec: dict
    records: list = field(default_factory=list)

    @property
    def volume_ml(self) -> float:
        return float(self.mask.astype(bool).sum() * self.volume.voxel_volume_ml)


def simulate_case(volume: Volume, spec: dict, anatomy: ThoraxAnatomy | None = None) -> SimulatedCase:
    """Build the case ``spec`` describes on ``volume`` (see the module docstring)."""
    from ptx_annotator.synthetic.acquisition import reacquire
    from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

    unknown = set(spec) - {"pneumothorax", "confounders", "mediastinal_shift", "acquisition", "name"}
    if unknown:
        raise ValueError(f"unknown spec keys {sorted(unknown)}; use pneumothorax, confounders, mediastinal_shift, "
                         "acquisition")
    anatomy = anatomy or segment_thorax(volume)
    current = volume
    air = np.zeros(volume.shape, dtype=np.float32)  # share of each voxel that is pneumothorax air
    fluid = np.zeros(volume.shape, dtype=bool)
    records = []
    for options in spec.get("pneumothorax", []):
        bad = set(options) - _PTX_KEYS
        if bad:
            raise ValueError(f"unknown pneumothorax options {sorted(bad)}; use {sorted(_PTX_KEYS)}")
        result = simulate_pneumothorax(current, anatomy=anatomy, **options)
        current = result.volume
        air = np.maximum(air, result.air_share)
        if result.fluid_mask is not None:
            fluid |= result.fluid_mask.astype(bool)
        records.append({"pneumothorax": result.options, "volume_ml": round(result.volume_ml, 2),
                        "fraction_achieved": round(result.fraction_achieved, 4)})
    if spec.get("mediastinal_shift"):
        current, anatomy, air, fluid, record = _shift(current, anatomy, air, fluid, records,
                                                      spec["mediastinal_shift"])
        records.append(record)
    others = np.zeros(volume.shape, dtype=bool)
    for options in spec.get("confounders", []):
        result = add_confounder(current, anatomy=anatomy, avoid=(air > 0) | fluid, **options)
        current = result.volume
        others |= result.mask.astype(bool)
        records.append({"confounder": result.options, "volume_ml": round(result.volume_ml, 2)})
    acquisition = spec.get("acquisition")
    if acquisition:
        current, masks = reacquire(current, {"mask": air, "confounders": others, "fluid": fluid}, **acquisition)
        mask, others, fluid = (masks[k].astype(bool) for k in ("mask", "confounders", "fluid"))
        records.append({"acquisition": dict(acquisition)})
    else:
        mask = air >= COVERED_SHARE
    return SimulatedCase(volume=current, mask=mask.astype(np.uint8), confounder_mask=others.astype(np.uint8),
                         fluid_mask=fluid.astype(np.uint8), spec=spec, records=records)


def _shift(volume, anatomy, air, fluid, records, options):
    """The mediastinal shift of ``options``, away from the largest pneumothorax unless ``away_from`` says."""
    from ptx_annotator.synthetic.shift import shift_mediastinum

    bad = set(options) - {"shift_mm", "away_from", "seed"}
    if bad:
        raise ValueError(f"unknown mediastinal_shift options {sorted(bad)}; use away_from, seed, shift_mm")
    if "shift_mm" not in options:
        raise ValueError("mediastinal_shift needs shift_mm (how far the mediastinum moves, in mm)")
    options = dict(options)
    if "away_from" not in options:
        sides = [(r["volume_ml"], r["pneumothorax"]["side"]) for r in records if "pneumothorax" in r]
        if not sides:
            raise ValueError("mediastinal_shift needs a pneumothorax to push the mediastinum, or away_from")
        options["away_from"] = max(sides)[1]
    result = shift_mediastinum(volume, anatomy, masks={"air": air, "fluid": fluid}, **options)
    air, fluid = result.masks["air"], result.masks["fluid"].astype(bool)
    record = {"mediastinal_shift": result.options,
              "volume_ml_after": round(float((air >= COVERED_SHARE).sum() * volume.voxel_volume_ml), 2)}
    return result.volume, result.anatomy, air, fluid, record


def random_spec(rng: np.random.Generator, positive_share: float = 0.75, confounder_share: float = 0.4,
                acquisition_share: float = 0.4) -> dict:
    """A random spec spanning the simulator's variety (sizes, rims, locations, shifts, confounders, protocols)."""
    spec: dict = {"pneumothorax": [], "confounders": []}
    seed = lambda: int(rng.integers(0, 2 ** 31 - 1))  # noqa: E731
    if rng.random() < positive_share:
        sides = ["right", "left"] if rng.random() < 0.15 else [str(rng.choice(["right", "left"]))]
        for side in sides:
            options = {"side": side, "seed": seed(), "location": str(rng.choice(LOCATIONS))}
            kind = rng.random()
            if kind < 0.3:
                options.update(rim_mm=round(float(rng.uniform(1.0, 3.0)), 1),
                               rim_extent=str(rng.choice(["surface", "apex"])), location="anterior")
            else:
                options["fraction"] = round(float(np.exp(rng.uniform(np.log(0.02), np.log(0.5)))), 3)
                if rng.random() < 0.2:
                    options["adhesions"] = round(float(rng.uniform(0.4, 0.7)), 2)
                if rng.random() < 0.15:
                    options.update(fluid_share=round(float(rng.uniform(0.2, 0.5)), 2), location="diffuse")
            spec["pneumothorax"].append(options)
        large = len(sides) == 1 and spec["pneumothorax"][0].get("fraction", 0) >= 0.3
        if large and rng.random() < 0.3:  # a tension pneumothorax
            spec["mediastinal_shift"] = {"shift_mm": round(float(rng.uniform(5.0, 25.0)), 1), "seed": seed()}
    if rng.random() < confounder_share or not spec["pneumothorax"]:
        for _ in range(int(rng.integers(1, 3))):
            spec["confounders"].append({"kind": str(rng.choice(CONFOUNDERS)),
                                        "side": str(rng.choice(["right", "left"])), "seed": seed()})
    if rng.random() < acquisition_share:
        spec["acquisition"] = {"slice_mm": round(float(rng.choice([1.0, 2.5, 5.0, 8.0])), 1),
                               "noise_hu": round(float(rng.uniform(0, 60)), 0),
                               "kernel": str(rng.choice(["smooth", "standard", "sharp"])), "seed": seed()}
    return spec
