"""The training loop on tiny learnable data made from the real TCIA CT (CPU, 64 px, resnet34)."""

import numpy as np
import pytest
import torch

from ptx_annotator.training.augment import AugmentedDataset, augment_pair
from ptx_annotator.training.data import SliceDataset
from ptx_annotator.training.evaluate import evaluate
from ptx_annotator.training.trainer import TrainConfig, fit, make_loss

FAST = dict(batch_size=8, lr=3e-3, input_size=64, seed=0, device="cpu")


def small_unet():
    """A shallow smp U-Net: ``fit`` takes any model, and this one trains ~4x faster than resnet34."""
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1, encoder_depth=3,
                    decoder_channels=(32, 16, 8))


@pytest.fixture(scope="session")
def trained_tiny(tiny_slices, tmp_path_factory):
    """One training run shared by several tests: 3 patients train, 1 validates."""
    train = SliceDataset([s for patient in tiny_slices[:3] for s in patient], 64)
    val = SliceDataset(tiny_slices[3], 64)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the initial weights (fit seeds everything else)
    model = small_unet()
    events = []
    result = fit(model, train, val, TrainConfig(epochs=12, patience=12, **FAST), progress=events.append)
    best_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    return model, result, events, best_state, train, val


def test_loss_falls_and_dice_clears_the_bar(trained_tiny):
    model, result, events, _, _, val = trained_tiny
    history = result.history
    assert len(history) >= 6 and not result.cancelled
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    best = history[result.best_epoch - 1]
    assert best["val_loss"] == min(row["val_loss"] for row in history)
    metrics = evaluate(model, val, "cpu", input_size=64)  # the returned model holds the best weights
    assert metrics["dice"] >= 0.6, metrics
    assert metrics["auc"] > 0.9
    assert metrics["dice"] == pytest.approx(best["val_dice"], abs=1e-6)
    kinds = {event.kind for event in events}
    assert kinds == {"step", "epoch"}
    assert [e.epoch for e in events if e.kind == "epoch"] == [row["epoch"] for row in history]


def test_cancel_keeps_best_and_resume_starts_lower(trained_tiny, tiny_slices):
    _, first_run, _, best_state, train, val = trained_tiny
    resumed = small_unet()
    resumed.load_state_dict(best_state)
    calls = {"n": 0}

    def cancel_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > len(train) // 8 + 2  # steps per epoch + 1: inside epoch 2

    finetune = {**FAST, "lr": 1e-4}  # resuming = fine-tuning at the recipe's learning rate
    result = fit(resumed, train, val, TrainConfig(epochs=5, **finetune), should_cancel=cancel_in_second_epoch)
    assert result.cancelled and result.epochs_run == 1 and result.best_state is not None
    # resumed from the trained weights, its first epoch is far better than a fresh model's first epoch
    assert result.history[0]["val_loss"] < 0.7 * first_run.history[0]["val_loss"]
    assert result.history[0]["val_dice"] > first_run.history[0]["val_dice"] + 0.3
    for name, tensor in resumed.state_dict().items():  # the model holds exactly the best state
        assert torch.equal(tensor, result.best_state[name])


def test_cancel_before_any_epoch_returns_no_state(tiny_slices):
    data = SliceDataset(tiny_slices[0], 64)
    result = fit(small_unet(), data, None, TrainConfig(epochs=3, **FAST), should_cancel=lambda: True)
    assert result.cancelled and result.best_state is None and result.history == []


def test_same_seed_same_result(tiny_slices):
    data = SliceDataset(tiny_slices[0][:4], 64)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # a different global state must not matter: fit seeds everything
        model = small_unet()
        runs.append(fit(model, data, None, TrainConfig(epochs=1, **FAST)).history[0]["train_loss"])
    assert runs[0] == runs[1]


def test_augmentation_moves_image_and_mask_together(tiny_slices):
    item = next(s for s in tiny_slices[1] if s.positive)
    image, mask = SliceDataset([item], 64)[0]
    changed = 0
    for seed in range(6):
        aug_image, aug_mask = augment_pair(image, mask, torch.Generator().manual_seed(seed))
        assert aug_image.shape == image.shape and set(torch.unique(aug_mask).tolist()) <= {0.0, 1.0}
        # the painted rim is uniform air (-1000 HU -> ~0.23 in the lung window, times <= 1.15 brightness)
        inside = aug_image[aug_mask > 0.5]
        assert float(inside.mean()) < 0.32
        changed += int(not torch.equal(aug_mask, mask))
    assert changed >= 5
    wrapped = AugmentedDataset(SliceDataset([item], 64), seed=1)
    wrapped.set_epoch(1)
    first = wrapped[0][0]
    assert torch.equal(first, wrapped[0][0])  # reproducible per (seed, epoch, index)
    wrapped.set_epoch(2)
    assert not torch.equal(first, wrapped[0][0])


def test_losses_fall_with_better_predictions():
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 8:20, 8:20] = 1
    for name in ("bce_jaccard", "focal_dice"):
        loss = make_loss(name)
        good, bad = (target * 2 - 1) * 6, torch.zeros_like(target)
        assert float(loss(good, target)) < 0.1 < float(loss(bad, target))
    with pytest.raises(ValueError):
        make_loss("mse")


def test_cpu_defaults_to_smaller_input():
    config = TrainConfig(device="cpu").resolved()
    assert config.input_size == 256 and not config.amp and not config.channels_last
    assert np.isclose(TrainConfig().lr, 1e-4) and TrainConfig().patience == 8 and TrainConfig().loss == "bce_jaccard"


def test_ctrl_c_stops_cleanly_keeping_the_best_epoch(tiny_slices):
    data = SliceDataset(tiny_slices[0], 64)

    def interrupt_in_second_epoch(event):
        if event.kind == "step" and event.epoch == 2:
            raise KeyboardInterrupt

    model = small_unet()
    result = fit(model, data, data, TrainConfig(epochs=4, **FAST), progress=interrupt_in_second_epoch)
    assert result.cancelled and result.epochs_run == 1 and result.best_epoch == 1
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, result.best_state[name])
