"""Bootstrap: a first checkpoint from simulated pneumothoraces, its threshold chosen on validation."""

from __future__ import annotations

import numpy as np

from ptx_annotator.cli import main
from ptx_annotator.model import load_checkpoint
from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom
from ptx_annotator.training.evaluate import THRESHOLD_GRID, calibrated_threshold, choose_threshold


def test_choose_threshold_finds_the_operating_point():
    rng = np.random.default_rng(0)
    probabilities = rng.random((4, 32, 32)).astype(np.float32)
    truths = (probabilities >= 0.7).astype(np.uint8)
    choice = choose_threshold(probabilities, truths)
    assert choice["threshold"] == 0.7 and choice["dice"] == 1.0
    assert choice["dice_at_0.5"] < 0.8 and choice["grid"] == sorted(set(THRESHOLD_GRID))
    nothing = choose_threshold(probabilities, np.zeros_like(truths))
    assert nothing["threshold"] == 0.5  # no positive pixel: nothing to calibrate on


def test_calibration_falls_back_to_the_starting_threshold_without_positives():
    import torch

    from ptx_annotator.model import build_model

    class Negatives(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return torch.rand(1, 64, 64), torch.zeros(1, 64, 64)

    model = build_model("resnet34").eval()
    assert calibrated_threshold(model, Negatives(), "cpu", 64, fallback=0.8) == (0.8, None)
    assert calibrated_threshold(model, None, "cpu", 64, fallback=0.7) == (0.7, None)


def test_bootstrap_cli_writes_a_checkpoint_with_its_provenance(tmp_path, capsys):
    case = make_chest_phantom(shape=(12, 128, 128), spacing=(5.0, 2.6, 2.6), side="none", seed=1)
    ct, _ = save_phantom(case, tmp_path / "ct")
    out = tmp_path / "first.safetensors"
    rc = main(["bootstrap", ct, "--out", str(out), "--size", "64", "--cases", "3", "--epochs", "2",
               "--device", "cpu", "--seed", "3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "threshold" in captured.err and "chosen on the validation cases" in captured.err
    model, meta = load_checkpoint(out, device="cpu")
    assert meta.input_size == 64 and meta.encoder == "resnet34"
    provenance = meta.provenance
    assert provenance["kind"] == "bootstrap-simulated" and provenance["cases_per_volume"] == 3
    choice = provenance["threshold_choice"]
    assert meta.threshold == choice["threshold"] and meta.threshold in choice["grid"]
    assert choice["dice"] >= choice["dice_at_0.5"]
    assert set(meta.metrics) >= {"dice", "iou", "precision", "recall", "accuracy", "auc"}
    assert meta.metrics["threshold"] == meta.threshold  # the hold-out table is measured at it
    assert (tmp_path / "first-loss.png").stat().st_size > 0
