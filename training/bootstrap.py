"""A first model with no annotations: train on pneumothoraces simulated in the user's own CTs.

For each CT, :func:`simulated_cases` inserts ``cases`` pneumothoraces of varied side, size and
shape (:func:`ptx_annotator.synthetic.pneumothorax.simulate_pneumothorax`, each with its exact mask). The slices
the air touches, plus a share of slices without any, become training data; one case in five (at
least one) is held out for validation and early stopping, and one more for the hold-out table
stored in the checkpoint. The result is an ordinary checkpoint for ``predict`` and fine-tuning.
Because the model learns on the user's scanner, kernel and noise, it starts adapted to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint
from ptx_annotator.preprocessing import LUNG_WINDOW_HU
from .data import LabelledSlice, SliceDataset, patient_id, study_volumes
from .evaluate import calibrated_threshold, evaluate
from .trainer import TrainConfig, TrainResult, fit, seed_everything

FRACTION_RANGE = (0.05, 0.45)
NEGATIVE_SHARE = 0.3  # negative slices per positive slice kept from each simulated case


@dataclass
class SimulatedCase:
    patient: str
    case: int
    side: str
    fraction: float
    seed: int
    slices: list


@dataclass
class BootstrapOutcome:
    checkpoint: str
    metrics: dict | None
    result: TrainResult
    cases: list
    seconds_simulation: float
    seconds_training: float


def simulated_cases(volume, cases: int, seed: int = 0, patient: str | None = None,
                    should_cancel: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None) -> list:
    """``cases`` simulated pneumothoraces in ``volume`` (alternating sides, varied size and shape)."""
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

    rng = np.random.default_rng(seed)
    anatomy = segment_thorax(volume)
    patient = patient or patient_id(volume)
    found = []
    for case in range(cases):
        if should_cancel is not None and should_cancel():
            break
        side = ("right", "left")[(case + seed) % 2]
        fraction = float(rng.uniform(*FRACTION_RANGE))
        case_seed = int(seed * 1000 + case)
        simulated = simulate_pneumothorax(volume, side=side, fraction=fraction, seed=case_seed, anatomy=anatomy)
        slices = _case_slices(simulated.volume.hu, simulated.mask, f"{patient}#sim{case:03d}", volume.key,
                              float(volume.spacing[0]), rng)
        found.append(SimulatedCase(patient, case, side, fraction, case_seed, slices))
        if log:
            log(f"simulated case {case + 1}/{cases}: {side} {simulated.fraction_achieved:.0%} of the hemithorax, "
                f"{simulated.volume_ml:.0f} mL, {sum(s.positive for s in slices)} slices with air")
    return found


def _case_slices(hu, mask, unit: str, series_key: str, spacing_z: float, rng) -> list[LabelledSlice]:
    positive = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    negative = np.setdiff1d(np.arange(mask.shape[0]), positive)
    n_negative = min(len(negative), int(np.ceil(NEGATIVE_SHARE * max(len(positive), 1))))
    chosen = sorted(list(positive) + list(rng.choice(negative, n_negative, replace=False)) if n_negative else positive)
    return [LabelledSlice(np.array(hu[z]), np.array(mask[z]), unit, series_key, int(z), spacing_z, "", "simulated")
            for z in chosen]


def split_cases(cases: list) -> tuple[list, list, list]:
    """(train, validation, hold-out) slices: one case in five for validation, one for hold-out."""
    n = len(cases)
    n_val = max(1, n // 5) if n >= 2 else 0
    n_hold = max(1, n // 5) if n >= 3 else 0
    order = sorted(range(n), key=lambda i: (cases[i].case, cases[i].patient))
    hold = set(order[n - n_hold:]) if n_hold else set()
    val = set(order[n - n_hold - n_val:n - n_hold]) if n_val else set()
    parts = ([], [], [])
    for index, case in enumerate(cases):
        parts[2 if index in hold else 1 if index in val else 0].extend(case.slices)
    return parts


def bootstrap(studies, out, *, cases: int = 6, encoder: str = "resnet34", config: TrainConfig | None = None,
              progress=None, should_cancel=None, log: Callable[[str], None] | None = None,
              save: bool = True, calibrate_threshold: bool = True) -> BootstrapOutcome:
    """Simulate ``cases`` pneumothoraces per CT of ``studies``, train, evaluate, save ``out``.

    With ``calibrate_threshold`` the checkpoint's threshold is the one with the best Dice on the
    validation cases (:func:`~ptx_annotator.training.evaluate.choose_threshold`); the hold-out
    table is then measured at that threshold.
    """
    config = (config or TrainConfig()).resolved()
    started = time.monotonic()
    all_cases = []
    for study in studies:
        for volume in study_volumes(study):
            all_cases.extend(simulated_cases(volume, cases, seed=config.seed, should_cancel=should_cancel, log=log))
    seconds_simulation = time.monotonic() - started
    train, val, hold = split_cases(all_cases)
    size = config.input_size
    if log:
        log(f"{len(train)} training, {len(val)} validation, {len(hold)} hold-out slices at {size} px "
            f"({seconds_simulation:.0f} s to simulate)")
    train_set, val_set, hold_set = SliceDataset(train, size), SliceDataset(val, size), SliceDataset(hold, size)
    summary = [(c.patient, c.case, c.side, round(c.fraction, 3)) for c in all_cases]
    del train, val, hold, all_cases  # the HU slices are no longer needed once resized
    seed_everything(config.seed)  # the initial weights are part of "deterministic per seed"
    model = build_model(encoder)
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
                                      "cases_per_volume": cases, "epochs": result.epochs_run,
                                      "best_epoch": result.best_epoch, "config": config.to_json(),
                                      "threshold_choice": choice,
                                      "history": result.history})
    if save and result.best_state is not None:
        from .distributed import is_main_process

        if is_main_process():
            save_checkpoint(model, out, meta)
    return BootstrapOutcome(str(out), metrics, result, summary, seconds_simulation, result.seconds)
