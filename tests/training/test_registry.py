"""Checkpoint registry (not-worse activation rule, manual switch) and the frozen split."""

import json

import numpy as np
import pytest

from ptx_annotator.errors import PtxError
from ptx_annotator.model import CheckpointMeta, build_model, read_checkpoint_meta
from ptx_annotator.training.data import LabelledSlice
from ptx_annotator.training.registry import ModelRegistry, normalise_version, registry_for
from ptx_annotator.training.split import FrozenSplit, freeze_split


@pytest.fixture(scope="module")
def small_model():
    return build_model("resnet34")


def _metrics(dice):
    return {"dice": dice, "iou": dice / (2 - dice), "precision": 0.9, "recall": 0.8, "accuracy": 0.99, "auc": 0.97,
            "n_slices": 12}


def test_worse_model_is_kept_inactive_and_user_is_told(tmp_path, small_model):
    registry = ModelRegistry(tmp_path / "models")
    first = registry.register(small_model, CheckpointMeta(encoder="resnet34", input_size=64), _metrics(0.80),
                              data_manifest="abc", epochs=3)
    assert first.version == "v0001" and first.activated and "first model" in first.message
    worse = registry.register(small_model, CheckpointMeta(encoder="resnet34", input_size=64), _metrics(0.70),
                              parent="v0001", epochs=2, baseline_dice=0.80)
    assert worse.version == "v0002" and not worse.activated
    assert "kept inactive" in worse.message and "0.700" in worse.message and "0.800" in worse.message
    assert registry.active()["version"] == "v0001"
    equal = registry.register(small_model, CheckpointMeta(encoder="resnet34", input_size=64), _metrics(0.80),
                              parent="v0001", baseline_dice=0.80)
    assert equal.activated and registry.active()["version"] == "v0003"  # "not below" activates
    # without a measured baseline, the active version's stored Dice is the bar
    lower = registry.register(small_model, CheckpointMeta(encoder="resnet34", input_size=64), _metrics(0.5))
    assert not lower.activated
    unmeasured = registry.register(small_model, CheckpointMeta(encoder="resnet34", input_size=64), None)
    assert not unmeasured.activated and "no hold-out" in unmeasured.message

    payload = json.loads((tmp_path / "models" / "registry.json").read_text())
    assert payload["active"] == "v0003"
    assert [v["version"] for v in payload["versions"]] == ["v0001", "v0002", "v0003", "v0004", "v0005"]
    record = payload["versions"][1]
    assert record["parent"] == "v0001" and record["metrics"]["dice"] == 0.70 and record["epochs"] == 2
    meta = read_checkpoint_meta(tmp_path / "models" / "v0002.safetensors")  # an ordinary checkpoint
    assert meta.provenance["parent"] == "v0001" and meta.metrics["dice"] == 0.70
    assert set(meta.metrics) >= {"dice", "iou", "precision", "recall", "accuracy", "auc"}

    assert registry.activate("2")["version"] == "v0002"
    assert registry_for(tmp_path).active()["version"] == "v0002"
    with pytest.raises(PtxError, match="not in the registry"):
        registry.activate("v0042")


def test_version_names():
    assert normalise_version("3") == normalise_version("v3") == normalise_version("v0003") == "v0003"
    with pytest.raises(PtxError):
        normalise_version("latest")


def _slices(patients, n=6, spacing=5.0):
    out = []
    for p in patients:
        for z in range(n):
            mask = np.zeros((4, 4), np.uint8)
            mask[0, 0] = z % 2
            out.append(LabelledSlice(np.zeros((4, 4), np.float32), mask, p, f"series-{p}", z, spacing))
    return out


def test_split_is_patient_level_and_never_moves(tmp_path):
    first = _slices(["p1", "p2", "p3", "p4", "p5", "p6", "p7"])
    split = freeze_split(first, seed=0)
    assert split.granularity == "patient"
    assert set(split.units.values()) == {"train", "validation", "holdout"}
    parts = split.partition(first)
    for name, items in parts.items():  # no patient has slices in two subsets
        others = {s.patient for other, rest in parts.items() if other != name for s in rest}
        assert not {s.patient for s in items} & others
    registry = ModelRegistry(tmp_path)
    registry.save_split(split)
    frozen = dict(registry.split().units)

    again = registry.split()
    new_units = again.extend(_slices(["p1", "p8", "p9"]))
    assert new_units == ["p8", "p9"]
    registry.save_split(again)
    # a different seed or a rewritten split cannot move a frozen unit
    attack = FrozenSplit(seed=99, units={unit: "train" for unit in frozen})
    registry.save_split(attack)
    stored = registry.split().units
    assert {u: stored[u] for u in frozen} == frozen and {"p8", "p9"} <= set(stored)
    # the subset of a new unit depends only on (seed, unit): not on what else is present
    assert FrozenSplit(seed=0).subset_for_new_unit("p8") == stored["p8"]


def test_one_patient_gets_a_slab_split_and_too_little_data_is_refused():
    one = _slices(["only"], n=20)
    split = freeze_split(one, seed=0)
    assert split.granularity == "slab"
    assert set(split.units.values()) == {"train", "validation", "holdout"}
    slabs = {split.unit_of(s) for s in one}
    assert len(slabs) == 5  # 20 slices x 5 mm in 20 mm slabs
    with pytest.raises(PtxError, match="at least 3"):
        freeze_split(_slices(["only"], n=4), seed=0)
