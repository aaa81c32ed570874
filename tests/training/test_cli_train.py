"""`ptx-annotate train --images/--masks` twice into one registry, then `ptx-annotate models`."""

import json

import pytest

from ptx_annotator.cli import main
from ptx_annotator.model import load_checkpoint

TINY = ["--epochs", "1", "--size", "64", "--encoder", "resnet34", "--device", "cpu", "--batch-size", "8",
        "--lr", "1e-3", "--threads", "1"]


@pytest.fixture(scope="module")
def two_runs(tiny_pairs, tmp_path_factory):
    images, masks = tiny_pairs
    folder = tmp_path_factory.mktemp("cli_train")
    registry = folder / "models"
    out = folder / "first.safetensors"
    first_rc = main(["train", "--images", *map(str, images[:3]), "--masks", *map(str, masks[:3]),
                     "--registry", str(registry), "--out", str(out), "--fresh", *TINY])
    first_split = json.loads((registry / "registry.json").read_text())["split"]
    # the second run sees a fourth patient and another seed; it starts from the active model
    second_rc = main(["train", "--images", *map(str, images), "--masks", *map(str, masks),
                      "--registry", str(registry), "--seed", "7", *TINY])
    return folder, registry, out, first_rc, second_rc, first_split


def test_images_and_masks_train_into_the_registry(two_runs, capsys):
    folder, registry, out, first_rc, second_rc, _ = two_runs
    assert first_rc == 0 and second_rc == 0
    model, meta = load_checkpoint(out)  # --out is an ordinary, loadable checkpoint
    assert meta.encoder == "resnet34" and meta.input_size == 64
    assert set(meta.metrics) >= {"dice", "iou", "precision", "recall", "accuracy", "auc"}
    assert meta.provenance["version"] == "v0001" and meta.provenance["data_manifest"]
    choice = meta.provenance["threshold_choice"]  # the validation patient has pneumothorax slices
    assert choice is not None and meta.threshold == choice["threshold"]
    assert choice["dice"] >= choice["dice_at_0.5"]
    assert (folder / "first-loss.png").stat().st_size > 1000
    assert (registry / "v0001-loss.png").is_file() and (registry / "v0002.safetensors").is_file()
    payload = json.loads((registry / "registry.json").read_text())
    second = payload["versions"][1]
    assert second["parent"] == "v0001"  # started from the active model
    assert second["data_manifest"] != payload["versions"][0]["data_manifest"]
    assert second["baseline_dice"] is not None  # the active model was measured on the same hold-out
    assert (payload["active"] == "v0002") == (second["metrics"]["dice"] >= second["baseline_dice"])


def test_split_stays_frozen_across_runs(two_runs):
    _, registry, _, _, _, first_split = two_runs
    split = json.loads((registry / "registry.json").read_text())["split"]
    assert first_split["granularity"] == split["granularity"] == "patient"
    assert set(first_split["units"]) == {"patient0", "patient1", "patient2"}
    assert set(first_split["units"].values()) == {"train", "validation", "holdout"}
    for unit, subset in first_split["units"].items():
        assert split["units"][unit] == subset
    assert "patient3" in split["units"] and split["created"] == first_split["created"]


def test_models_lists_and_switches(two_runs, capsys):
    _, registry, _, _, _, _ = two_runs
    capsys.readouterr()
    assert main(["models", str(registry), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed["versions"]] == ["v0001", "v0002"]
    assert main(["models", str(registry.parent), "--activate", "1"]) == 0
    text = capsys.readouterr().out
    assert "v0001 is now the active model" in text and "* v0001" in text
    assert main(["models", str(registry), "--activate", "v0009"]) == 2
    assert "not in the registry" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(tiny_pairs, tmp_path, capsys):
    images, masks = tiny_pairs
    assert main(["train", "--images", str(images[0]), "--masks", str(masks[0]), str(masks[1]),
                 "--registry", str(tmp_path)]) == 2
    assert "one mask per image" in capsys.readouterr().err
    assert main(["train", "--registry", str(tmp_path)]) == 2
    assert "Nothing to train on" in capsys.readouterr().err
    assert main(["models", str(tmp_path / "nowhere")]) == 2
