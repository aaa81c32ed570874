"""A first model with no annotations: train on cases simulated in the user's own CTs.

For each CT, :func:`simulated_cases` builds ``cases`` simulated cases from the plan of
:mod:`.bootstrap_plan` (thin rims, small to large pneumothoraces at every location, loculated,
hydro- and bilateral ones, pneumothoraces beside bullae or subcutaneous air, confounder-only
negatives, other acquisitions; :func:`ptx_annotator.synthetic.cases.simulate_case`, each with its
exact mask). The slices the pneumothorax touches, the slices of the confounders (hard negatives,
empty mask) and a share of others become training data; the last cases of each plan are held
out, one in five for validation (early stopping, the threshold) and one in ten for the hold-out
table stored in the checkpoint. Every spec, with its seeds, is recorded in the checkpoint's
provenance. On the CPU a default run fits a time budget (:data:`DEFAULT_CPU_BUDGET_SECONDS`).
The result is an ordinary checkpoint for ``predict`` and fine-tuning; because the model learns
on the user's scanner, kernel and noise, it starts adapted to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint
from ptx_annotator.preprocessing import LUNG_WINDOW_HU
from .bootstrap_plan import CASE_CYCLE, SEED_FLOOR, plan_cases, plan_summary
from .data import LabelledSlice, SliceDataset, patient_id, study_volumes
from .evaluate import calibrated_threshold, evaluate
from .trainer import TrainConfig, TrainResult, fastest_cpu_threads, fit, seed_everything

#: Simulated cases per CT of a default run (the plan's cycle of ten kinds, twice).
DEFAULT_CASES = 20
NEGATIVE_SHARE = 0.3  # random slices per positive slice kept from each simulated case
#: Slices kept from a confounder-only case besides those its confounders touch.
NEGATIVE_CASE_RANDOM_SLICES = 4
#: At most this many slices of a case's confounders are kept (hard negatives).
MAX_CONFOUNDER_SLICES = 24
#: Validation and hold-out sets are capped (seeded subsets) so a CPU epoch is spent training.
MAX_VALIDATION_SLICES = 96
MAX_HOLDOUT_SLICES = 96
#: CPU only: a default run (no ``max_seconds``) fits the whole bootstrap into this many seconds.
DEFAULT_CPU_BUDGET_SECONDS = 25 * 60
#: Time kept aside, from the CPU budget, for threshold calibration, hold-out and saving.
FINISH_RESERVE_SECONDS = 180
MIN_TRAINING_SECONDS = 5 * 60


@dataclass
class SimulatedCase:
    patient: str
    case: int
    spec: dict
    volume_ml: float
    confounder_ml: float
    slices: list

    @property
    def kind(self) -> str:
        return self.spec.get("name", "")

    def record(self) -> dict:
        """What the checkpoint keeps about this case (its spec carries every seed)."""
        return {"patient": self.patient, "case": self.case, "kind": self.kind, "spec": self.spec,
                "volume_ml": round(self.volume_ml, 1), "confounder_ml": round(self.confounder_ml, 1),
                "slices": len(self.slices), "positive_slices": sum(s.positive for s in self.slices)}


@dataclass
class BootstrapOutcome:
    checkpoint: str
    metrics: dict | None
    result: TrainResult
    cases: list
    seconds_simulation: float
    seconds_training: float


def simulated_cases(volume, cases: int, seed: int = 0, patient: str | None = None, ct_index: int = 0,
                    should_cancel: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None) -> list:
    """``cases`` simulated cases in ``volume``, as :func:`.bootstrap_plan.plan_cases` plans them."""
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.synthetic.cases import simulate_case

    anatomy = segment_thorax(volume)
    patient = patient or patient_id(volume)
    plan = plan_cases(cases, seed=seed, ct_index=ct_index, native_slice_mm=float(volume.spacing[0]))
    rng = np.random.default_rng([int(seed), int(ct_index), 0x511CE])
    found = []
    for case, spec in enumerate(plan):
        if should_cancel is not None and should_cancel():
            break
        simulated = simulate_case(volume, spec, anatomy=anatomy)
        slices = _case_slices(simulated, f"{patient}#sim{case:03d}", volume.key, rng)
        voxel_ml = simulated.volume.voxel_volume_ml
        found.append(SimulatedCase(patient, case, spec, simulated.volume_ml,
                                   float(simulated.confounder_mask.astype(bool).sum() * voxel_ml), slices))
        del simulated
        if log:
            what = describe_spec(spec)
            log(f"simulated case {case + 1}/{len(plan)} ({what}): {found[-1].volume_ml:.0f} mL pneumothorax, "
                f"{found[-1].confounder_ml:.0f} mL other air, {sum(s.positive for s in slices)} of {len(slices)} "
                "slices with pneumothorax")
    return found


def describe_spec(spec: dict) -> str:
    """A short human line for one spec (kind, rim or size, location, confounders, protocol)."""
    parts = [spec.get("name", "case")]
    for item in spec.get("pneumothorax", []):
        size = f"{item['rim_mm']} mm rim {item.get('rim_extent', 'surface')}" if "rim_mm" in item \
            else f"{item.get('fraction', 0.2):.0%}"
        extra = "".join(f" {k}" for k in ("adhesions", "fluid_share") if item.get(k))
        parts.append(f"{item['side']} {size} {item.get('location', 'anterior')}{extra}")
    parts += [f"+{item['kind']}" for item in spec.get("confounders", [])]
    if spec.get("acquisition"):
        a = spec["acquisition"]
        parts.append(f"re-acquired {a.get('slice_mm', 'same')} mm {a.get('kernel')} +{a.get('noise_hu', 0):.0f} HU")
    return ", ".join(parts)


def _case_slices(simulated, unit: str, series_key: str, rng) -> list[LabelledSlice]:
    """Positive slices, the slices the confounders touch (hard negatives) and a few random others."""
    hu, mask = simulated.volume.hu, simulated.mask
    flat = lambda m: np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1))  # noqa: E731
    positive = flat(mask)
    confounder = np.setdiff1d(flat(simulated.confounder_mask), positive)
    if len(confounder) > MAX_CONFOUNDER_SLICES:
        confounder = np.sort(rng.choice(confounder, MAX_CONFOUNDER_SLICES, replace=False))
    rest = np.setdiff1d(np.arange(mask.shape[0]), np.concatenate([positive, confounder]))
    wanted = int(np.ceil(NEGATIVE_SHARE * len(positive))) if len(positive) else NEGATIVE_CASE_RANDOM_SLICES
    n_random = min(len(rest), wanted)
    chosen = np.concatenate([positive, confounder, rng.choice(rest, n_random, replace=False) if n_random else []])
    spacing_z = float(simulated.volume.spacing[0])
    # int16 HU: half the memory of float32 for the slices held until they are resized
    return [LabelledSlice(np.rint(np.clip(hu[z], -32768, 32767)).astype(np.int16), np.array(mask[z], dtype=np.uint8),
                          unit, series_key, int(z), spacing_z, "", "simulated")
            for z in sorted(int(z) for z in chosen)]


def split_cases(cases: list) -> tuple[list, list, list]:
    """(train, validation, hold-out) slices, the cases assigned by :func:`roles`."""
    parts = {"train": [], "validation": [], "hold-out": []}
    assigned = roles(cases)
    for case in cases:
        parts[assigned[(case.patient, case.case)]].extend(case.slices)
    return parts["train"], parts["validation"], parts["hold-out"]


def roles(cases: list) -> dict:
    """``(patient, case) -> 'train' | 'validation' | 'hold-out'``: the last cases of the plans, one in
    five for validation and one in ten for the hold-out table (the first ones, which hold every
    kind of the plan's cycle, train)."""
    n = len(cases)
    n_val = max(1, n // 5) if n >= 2 else 0
    n_hold = max(1, n // 10) if n >= 3 else 0
    order = sorted(range(n), key=lambda i: (cases[i].case, cases[i].patient))
    out = {}
    for rank, index in enumerate(order):
        out[(cases[index].patient, cases[index].case)] = ("hold-out" if rank >= n - n_hold else
                                                          "validation" if rank >= n - n_hold - n_val else "train")
    return out


def _cap(slices: list, limit: int, seed: int) -> list:
    """A seeded subset of at most ``limit`` slices, positives and negatives in their proportion."""
    if len(slices) <= limit:
        return slices
    keep = np.sort(np.random.default_rng(seed).choice(len(slices), limit, replace=False))
    return [slices[i] for i in keep]


def bootstrap(studies, out, *, cases: int = DEFAULT_CASES, encoder: str = "resnet34",
              config: TrainConfig | None = None, progress=None, should_cancel=None,
              log: Callable[[str], None] | None = None, save: bool = True,
              calibrate_threshold: bool = True, budget_seconds: float | None = None,
              auto_threads: bool = False) -> BootstrapOutcome:
    """Simulate ``cases`` cases per CT of ``studies`` (the plan of :mod:`.bootstrap_plan`), train,
    evaluate, save ``out``.

    With ``calibrate_threshold`` the checkpoint's threshold is the one with the best Dice on the
    validation cases (:func:`~ptx_annotator.training.evaluate.choose_threshold`); the hold-out
    table is then measured at that threshold. On the CPU, a config without ``max_seconds`` gets
    the training time left of ``budget_seconds`` (default :data:`DEFAULT_CPU_BUDGET_SECONDS`)
    after the simulation, so a default run ends in about that time. With ``auto_threads`` (the
    CLI's default without ``--threads``) a CPU run trains with the faster of one and all threads
    (:func:`~.trainer.fastest_cpu_threads`).
    """
    config = (config or TrainConfig()).resolved()
    started = time.monotonic()
    all_cases = []
    index = 0
    for study in studies:
        for volume in study_volumes(study):
            all_cases.extend(simulated_cases(volume, cases, seed=config.seed, ct_index=index,
                                             should_cancel=should_cancel, log=log))
            index += 1
            del volume
    seconds_simulation = time.monotonic() - started
    budget_note = None
    if config.max_seconds is None and not str(config.device).startswith("cuda"):
        budget = DEFAULT_CPU_BUDGET_SECONDS if budget_seconds is None else float(budget_seconds)
        config.max_seconds = max(min(MIN_TRAINING_SECONDS, budget / 2), budget - seconds_simulation - FINISH_RESERVE_SECONDS)
        budget_note = f"CPU budget {budget / 60:.0f} min: {config.max_seconds / 60:.1f} min of training"
    assigned = roles(all_cases)
    train, val, hold = split_cases(all_cases)
    val, hold = _cap(val, MAX_VALIDATION_SLICES, config.seed + 1), _cap(hold, MAX_HOLDOUT_SLICES, config.seed + 2)
    size = config.input_size
    if log:
        log(f"{len(train)} training, {len(val)} validation, {len(hold)} hold-out slices at {size} px "
            f"({seconds_simulation:.0f} s to simulate{'; ' + budget_note if budget_note else ''})")
    train_set, val_set, hold_set = SliceDataset(train, size), SliceDataset(val, size), SliceDataset(hold, size)
    records = [dict(c.record(), role=assigned[(c.patient, c.case)]) for c in all_cases]
    summary = [(c.patient, c.case, c.kind, round(c.volume_ml, 1)) for c in all_cases]
    plan = plan_summary([c.spec for c in all_cases])
    counts = {"train": len(train), "validation": len(val), "hold-out": len(hold),
              "train_positive": sum(s.positive for s in train)}
    del train, val, hold, all_cases  # the HU slices are no longer needed once resized
    seed_everything(config.seed)  # the initial weights are part of "deterministic per seed"
    model = build_model(encoder)
    threads = None
    if auto_threads and not str(config.device).startswith("cuda"):
        import torch

        chosen, timings = fastest_cpu_threads(model, crop=config.crop_size or size, batch_size=config.batch_size)
        torch.set_num_threads(chosen)
        threads = {"chosen": chosen, "seconds_per_step": timings}
        if log:
            log(f"training with {chosen} CPU thread(s) (seconds per step: "
                f"{', '.join(f'{n} thread(s) {t:.2f}' for n, t in timings.items())})")
    result = fit(model, train_set, val_set if len(val_set) else None, config, progress, should_cancel)
    threshold, choice = config.threshold, None
    if calibrate_threshold and result.best_state is not None:
        threshold, choice = calibrated_threshold(model, val_set, config.device, size, config.threshold)
        if log and choice:
            log(f"threshold {threshold:.2f} chosen on the validation cases (Dice {choice['dice']:.3f}; "
                f"{choice['dice_at_0.5']:.3f} at 0.50)")
    metrics = evaluate(model, hold_set, config.device, threshold, input_size=size) if len(hold_set) else None
    meta = CheckpointMeta(encoder=encoder, input_size=size, hu_window=LUNG_WINDOW_HU, threshold=threshold,
                          metrics=dict(metrics or {}), name="bootstrap",
                          preprocessing={"window": "lung", "resize": "bilinear"},
                          provenance={"kind": "bootstrap-simulated", "studies": [str(s) for s in studies],
                                      "cases_per_volume": cases, "plan": "bootstrap_plan.CASE_CYCLE",
                                      "case_cycle": list(CASE_CYCLE), "plan_summary": plan,
                                      "seed_floor": SEED_FLOOR, "cases": records, "slices": counts,
                                      "seconds_simulation": round(seconds_simulation, 1),
                                      "cpu_threads": threads,
                                      "epochs": result.epochs_run, "best_epoch": result.best_epoch,
                                      "config": config.to_json(), "threshold_choice": choice,
                                      "history": result.history})
    if save and result.best_state is not None:
        from .distributed import is_main_process

        if is_main_process():
            save_checkpoint(model, out, meta)
    return BootstrapOutcome(str(out), metrics, result, summary, seconds_simulation, result.seconds)
