"""A patient-level train / validation / hold-out split that is frozen once and never changes.

Slices of one patient are strongly correlated, so they must all fall in the same subset, or the
hold-out Dice measures memory rather than skill. And the split must not be redrawn on every run
(the MONAI Label #1752 bug: a re-drawn validation set slowly leaks into training). So the first
run freezes a split in the registry and every later run reuses it:

* units that were ever assigned keep their subset forever;
* a unit never seen before gets its subset from a hash of (seed, unit key): it does not depend on
  which other data happen to be present or on their order.

The unit is the patient when the first run sees at least three patients ("patient"
granularity). With fewer (a single study being annotated), no patient-level hold-out exists;
the unit is then a slab of ``slab_mm`` mm of one patient ("slab" granularity, a weaker
guarantee: neighbouring slabs of one patient are related). The granularity is frozen too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from ptx_annotator.errors import PtxError
from ptx_annotator.review.states import utc_now
from .data import LabelledSlice

SUBSETS = ("train", "validation", "holdout")
FRACTIONS = {"validation": 0.15, "holdout": 0.15}
MIN_PATIENTS_FOR_PATIENT_SPLIT = 3
DEFAULT_SLAB_MM = 20.0


@dataclass
class FrozenSplit:
    """Which subset each unit (patient, or patient slab) belongs to, for good."""

    granularity: str = "patient"
    slab_mm: float = DEFAULT_SLAB_MM
    seed: int = 0
    created: str = field(default_factory=utc_now)
    units: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"granularity": self.granularity, "slab_mm": self.slab_mm, "seed": self.seed,
                "created": self.created, "units": dict(sorted(self.units.items()))}

    @classmethod
    def from_json(cls, payload: dict) -> "FrozenSplit":
        return cls(granularity=payload.get("granularity", "patient"), slab_mm=float(payload.get("slab_mm", DEFAULT_SLAB_MM)),
                   seed=int(payload.get("seed", 0)), created=payload.get("created", ""),
                   units=dict(payload.get("units") or {}))

    def unit_of(self, item: LabelledSlice) -> str:
        if self.granularity == "patient":
            return item.patient
        slab = int(math.floor(item.z * max(item.spacing_z, 1e-3) / self.slab_mm))
        return f"{item.patient}/{item.series_key}/slab{slab:03d}"

    def subset_for_new_unit(self, unit: str) -> str:
        u = _hash_unit(self.seed, unit)
        if u < FRACTIONS["holdout"]:
            return "holdout"
        if u < FRACTIONS["holdout"] + FRACTIONS["validation"]:
            return "validation"
        return "train"

    def extend(self, slices: list[LabelledSlice]) -> list[str]:
        """Assign the units of ``slices`` not yet in the split (old ones never move); return the new ones."""
        new = sorted({self.unit_of(item) for item in slices} - set(self.units))
        for unit in new:
            self.units[unit] = self.subset_for_new_unit(unit)
        return new

    def partition(self, slices: list[LabelledSlice]) -> dict[str, list[LabelledSlice]]:
        """The slices of each subset (every unit must already be in the split: call :meth:`extend`)."""
        parts = {name: [] for name in SUBSETS}
        for item in slices:
            parts[self.units[self.unit_of(item)]].append(item)
        return parts


def freeze_split(slices: list[LabelledSlice], seed: int = 0, slab_mm: float = DEFAULT_SLAB_MM) -> FrozenSplit:
    """The first split of a registry: stratified by whether a unit holds any pneumothorax."""
    patients = {item.patient for item in slices}
    granularity = "patient" if len(patients) >= MIN_PATIENTS_FOR_PATIENT_SPLIT else "slab"
    split = FrozenSplit(granularity=granularity, slab_mm=slab_mm, seed=seed)
    positive: dict[str, bool] = {}
    for item in slices:
        unit = split.unit_of(item)
        positive[unit] = positive.get(unit, False) or item.positive
    if len(positive) < 3:
        raise PtxError(f"Only {len(positive)} separate {granularity}(s) of reviewed data: a train / validation / hold-out "
                       f"split needs at least 3. Review slices spread over more of the scan (units of {slab_mm:g} mm) "
                       "or add studies of other patients.")
    groups = [sorted((u for u, pos in positive.items() if pos), key=lambda u: _hash_unit(seed, u)),
              sorted((u for u, pos in positive.items() if not pos), key=lambda u: _hash_unit(seed, u))]
    for group in groups:
        _assign_group(split, group, total=len(positive))
    for name in ("holdout", "validation"):  # every subset gets at least one unit
        if name not in split.units.values():
            donor = max((u for u, s in split.units.items() if s == "train"), key=lambda u: (positive[u], u))
            split.units[donor] = name
    return split


def _assign_group(split: FrozenSplit, units: list[str], total: int) -> None:
    n = len(units)
    n_hold = int(round(n * FRACTIONS["holdout"]))
    n_val = int(round(n * FRACTIONS["validation"]))
    if n >= 3 and total >= 3:
        n_hold, n_val = max(n_hold, 1), max(n_val, 1)
    for index, unit in enumerate(units):
        split.units[unit] = "holdout" if index < n_hold else "validation" if index < n_hold + n_val else "train"


def _hash_unit(seed: int, unit: str) -> float:
    digest = hashlib.sha256(f"{seed}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
