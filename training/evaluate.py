"""Hold-out evaluation: the CT paper's table (DSC, IoU, precision, recall, accuracy, AUC).

Metrics are pooled over every pixel of every hold-out slice at the model's input size (one
confusion matrix), using :mod:`ptx_annotator.metrics` and its empty-mask rules (Dice 1.0 when
neither truth nor prediction has any pneumothorax; AUC ``None`` when the truth has one class).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import metrics as overlap
from .distributed import unwrap

MAX_AUC_PIXELS = 4_000_000
#: Thresholds tried when the operating point is chosen on validation data.
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(6, 20))  # 0.30 .. 0.95


@torch.no_grad()
def predict_dataset(model, dataset: Dataset, device: str = "cpu", batch_size: int = 8,
                    input_size: int | None = None, channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``[N,H,W]`` float32 and 0/1 truths ``[N,H,W]`` uint8 for a dataset."""
    import torch.nn.functional as F

    net = unwrap(model).to(device).eval()
    probabilities, truths = [], []
    on_cuda = str(device).startswith("cuda")
    for images, masks in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = images.to(device).float()
        if input_size is not None and tuple(images.shape[-2:]) != (input_size, input_size):
            images = F.interpolate(images, size=(input_size, input_size), mode="bilinear", align_corners=False)
            masks = F.interpolate(masks.float(), size=(input_size, input_size), mode="nearest")
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda and torch.cuda.is_bf16_supported()):
            logits = net(images)
        probabilities.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        truths.append((masks[:, 0] > 0.5).numpy().astype(np.uint8))
    if not probabilities:
        return np.zeros((0, 1, 1), np.float32), np.zeros((0, 1, 1), np.uint8)
    return np.concatenate(probabilities), np.concatenate(truths)


def score(probabilities: np.ndarray, truths: np.ndarray, threshold: float = 0.5) -> dict:
    """Pooled metrics of probabilities against truths (see the module docstring)."""
    predicted = probabilities >= threshold
    table = overlap.overlap_metrics(truths, predicted)
    flat_truth, flat_prob = truths.ravel(), probabilities.ravel()
    if flat_truth.size > MAX_AUC_PIXELS:  # a fixed, evenly spaced subsample keeps the rank AUC fast
        step = int(np.ceil(flat_truth.size / MAX_AUC_PIXELS))
        flat_truth, flat_prob = flat_truth[::step], flat_prob[::step]
    result = {key: float(table[key]) for key in ("dice", "iou", "precision", "recall", "accuracy")}
    auc = overlap.auc(flat_truth, flat_prob)
    result["auc"] = None if auc is None else float(auc)
    result["n_slices"] = int(truths.shape[0])
    result["n_positive_slices"] = int(np.count_nonzero(truths.reshape(len(truths), -1).any(axis=1))) if len(truths) else 0
    result["threshold"] = float(threshold)
    return result


def evaluate(model, dataset: Dataset, device: str = "cpu", threshold: float = 0.5, batch_size: int = 8,
             input_size: int | None = None) -> dict | None:
    """The metric table of ``model`` on ``dataset``; None when the dataset is empty."""
    if dataset is None or len(dataset) == 0:
        return None
    probabilities, truths = predict_dataset(model, dataset, device, batch_size, input_size)
    return score(probabilities, truths, threshold)


def choose_threshold(probabilities: np.ndarray, truths: np.ndarray, grid=THRESHOLD_GRID) -> dict:
    """The threshold of ``grid`` with the best pooled Dice on validation data (ties: nearest 0.5).

    Returns ``{"threshold", "dice", "dice_at_0.5", "grid"}``; with no positive pixel in the
    truths there is nothing to choose and 0.5 is kept.
    """
    grid = sorted({float(t) for t in grid} | {0.5})
    at_half = float(overlap.dice(truths, probabilities >= 0.5))
    if not np.any(truths):
        return {"threshold": 0.5, "dice": at_half, "dice_at_0.5": at_half, "grid": grid}
    scores = [(float(overlap.dice(truths, probabilities >= t)), -abs(t - 0.5), t) for t in grid]
    best_dice, _, best = max(scores)
    return {"threshold": float(best), "dice": best_dice, "dice_at_0.5": at_half, "grid": grid}


def calibrated_threshold(model, dataset: Dataset, device: str, input_size: int | None,
                         fallback: float) -> tuple[float, dict | None]:
    """``(threshold, choice)``: the best-Dice threshold on ``dataset``, or ``fallback`` (and None)
    when the dataset is empty or holds no pneumothorax to calibrate on."""
    if dataset is None or len(dataset) == 0:
        return float(fallback), None
    probabilities, truths = predict_dataset(model, dataset, device, input_size=input_size)
    if not np.any(truths):
        return float(fallback), None
    choice = choose_threshold(probabilities, truths)
    return choice["threshold"], choice
