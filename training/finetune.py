"""One fine-tuning run end to end: data -> frozen split -> train -> hold-out -> registry.

:func:`finetune` is the plain function behind ``ptx-annotate train`` and the napari Fine-tune
widget. It starts from ``init`` (a checkpoint), else from the registry's active model, else from
an untrained U-Net; it measures the new model AND the active one on the same hold-out slices, so
"not worse" compares like with like; it registers the new version (active only if not worse) and
draws the loss curve beside it. Under torchrun every rank trains; only rank 0 writes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ptx_annotator.errors import PtxError
from ptx_annotator.model import CheckpointMeta, build_model, load_checkpoint
from ptx_annotator.preprocessing import LUNG_WINDOW_HU
from .data import LabelledSlice, SliceDataset, manifest_hash
from .distributed import is_main_process
from .evaluate import calibrated_threshold, evaluate
from .registry import ModelRegistry, Registration
from .reporting import loss_curve_path, save_loss_curve
from .split import freeze_split
from .trainer import TrainConfig, TrainResult, fit, seed_everything


@dataclass
class FinetuneOutcome:
    """What a run produced and what the user should be told."""

    registration: Registration | None
    result: TrainResult
    new_metrics: dict | None
    old_metrics: dict | None
    old_version: str | None
    split_counts: dict
    loss_curve: Path | None = None
    out: Path | None = None

    @property
    def message(self) -> str:
        if self.registration is not None:
            return self.registration.message
        if self.result.cancelled:
            return "Training was cancelled before the first epoch ended; no model was saved."
        return "No model was saved."


def finetune(slices: list[LabelledSlice], registry_dir, config: TrainConfig | None = None, *,
             encoder: str = "resnet50", init=None, use_active: bool = True, out=None,
             progress: Callable | None = None, should_cancel: Callable[[], bool] | None = None,
             log: Callable[[str], None] | None = None) -> FinetuneOutcome:
    """Train on ``slices`` with the registry's frozen split and register the result."""
    if not slices:
        raise PtxError("No reviewed slices to train on: accept or edit some slices first (negative slices count too).")
    config = (config or TrainConfig()).resolved()
    say = log if (log is not None and is_main_process()) else (lambda _line: None)
    registry = ModelRegistry(registry_dir)
    split = registry.split()
    if split is None:
        split = freeze_split(slices, seed=config.seed)
        say(f"froze a new {split.granularity}-level split of {len(split.units)} units in {registry.index_path}")
    else:
        new_units = split.extend(slices)
        if new_units:
            say(f"{len(new_units)} new unit(s) added to the frozen split; existing units keep their subsets")
    if is_main_process():
        registry.save_split(split)
    parts = split.partition(slices)
    counts = {name: len(items) for name, items in parts.items()}
    if not parts["train"]:
        raise PtxError(f"All {len(slices)} slices fall in the validation / hold-out units of the frozen split; review "
                       "slices elsewhere in the scan (or of other patients) so that some can be trained on.")
    say(f"slices: {counts['train']} training, {counts['validation']} validation, {counts['holdout']} hold-out")

    active = registry.active()
    model, meta, parent = _starting_model(init, registry if use_active else None, encoder, config)
    size = config.input_size = meta.input_size if init is not None or (use_active and active) else config.input_size
    train_set = SliceDataset(parts["train"], size, meta.hu_window or LUNG_WINDOW_HU)
    val_set = SliceDataset(parts["validation"], size, meta.hu_window or LUNG_WINDOW_HU)
    hold_set = SliceDataset(parts["holdout"], size, meta.hu_window or LUNG_WINDOW_HU)

    old_metrics = None
    if active is not None and len(hold_set):
        old_model, old_meta = load_checkpoint(registry.folder / active["file"], config.device)
        old_metrics = evaluate(old_model, hold_set, config.device, old_meta.threshold, input_size=old_meta.input_size)
        del old_model
    result = fit(model, train_set, val_set if len(val_set) else None, config, progress, should_cancel)
    outcome = FinetuneOutcome(None, result, None, old_metrics, active["version"] if active else None, counts)
    if result.best_state is None:
        return outcome
    # the operating point: chosen on the validation slices, else the starting model's own
    threshold, choice = calibrated_threshold(model, val_set, config.device, size, meta.threshold)
    outcome.new_metrics = evaluate(model, hold_set, config.device, threshold, input_size=size)
    if not is_main_process():
        return outcome
    meta.input_size, meta.threshold = size, threshold
    meta.provenance = {"kind": "finetune", "init": str(init) if init is not None else None,
                       "config": config.to_json(), "best_epoch": result.best_epoch, "history": result.history,
                       "split_counts": counts, "cancelled": result.cancelled, "stopped_early": result.stopped_early,
                       "world_size": result.world_size, "threshold_choice": choice,
                       "annotators": sorted({s.annotator for s in slices if s.annotator}),
                       "series": sorted({s.series_key for s in slices})}
    meta.metrics, meta.name, meta.created = {}, "", CheckpointMeta().created
    outcome.registration = registry.register(
        model, meta, outcome.new_metrics, parent=parent, data_manifest=manifest_hash(slices),
        epochs=result.epochs_run, baseline_dice=(old_metrics or {}).get("dice"),
        extra={"best_epoch": result.best_epoch, "cancelled": result.cancelled, "split_counts": counts,
               "world_size": result.world_size})
    outcome.loss_curve = save_loss_curve(result.history, loss_curve_path(outcome.registration.path),
                                         title=f"{outcome.registration.version} ({meta.encoder}, {size} px)")
    if out is not None:
        outcome.out = Path(out)
        outcome.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(outcome.registration.path, outcome.out)
        if outcome.loss_curve is not None:
            shutil.copyfile(outcome.loss_curve, loss_curve_path(outcome.out))
    say(outcome.message)
    return outcome


def _starting_model(init, registry: ModelRegistry | None, encoder: str, config: TrainConfig):
    """(model, meta, parent version) to start from: ``init``, else the active model, else a fresh one."""
    if init is not None:
        model, meta = load_checkpoint(init, "cpu")
        parent = meta.provenance.get("version") or Path(init).name
        return model.train(), meta, parent
    if registry is not None and registry.active() is not None:
        active = registry.active()
        model, meta = load_checkpoint(registry.folder / active["file"], "cpu")
        return model.train(), meta, active["version"]
    seed_everything(config.seed)  # the initial weights are part of "deterministic per seed"
    model = build_model(encoder)
    return model, CheckpointMeta(encoder=encoder, input_size=config.input_size, hu_window=LUNG_WINDOW_HU,
                                 threshold=config.threshold), None
