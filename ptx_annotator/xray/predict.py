"""Pneumothorax on one chest X-ray: model probabilities, the SIIM winners' decision rule, areas.

The decision is the "triplet" rule of the SIIM-ACR winning solutions:

1. count the pixels whose probability is at least ``top_threshold`` (default 0.75);
2. if fewer than ``min_area_px`` pixels pass (default 2,000 at 1024 x 1024, scaled to the image
   size), the image is called negative and the mask is empty;
3. otherwise it is positive and the mask is every pixel with probability >= ``threshold``
   (the mask threshold, default the checkpoint's).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ptx_annotator.errors import CheckpointError
from ptx_annotator.xray.io import XrayImage
from ptx_annotator.xray.preprocess import XrayPreprocessing, preprocess_xray

TOP_THRESHOLD = 0.75
#: Minimum area of the top-probability pixels at 1024 x 1024; scaled by the image's pixel count.
MIN_AREA_AT_1024 = 2000
REFERENCE_PIXELS = 1024 * 1024


def xray_settings(meta) -> XrayPreprocessing:
    """The preprocessing a checkpoint was trained with; refuses CT checkpoints."""
    if getattr(meta, "modality", "CT") != "XR":
        raise CheckpointError(f"Checkpoint '{getattr(meta, 'name', '') or 'given'}' is a {meta.modality} model, not a "
                              "chest X-ray model. Train one with 'ptx-annotate train-xray'.")
    settings = XrayPreprocessing.from_json(meta.preprocessing)
    if settings.size != int(meta.input_size):
        settings = replace(settings, size=int(meta.input_size))
    return settings


def decision_defaults(meta) -> dict:
    """The triplet stored with the checkpoint (``provenance['decision_rule']``) or the SIIM defaults."""
    stored = dict((getattr(meta, "provenance", None) or {}).get("decision_rule") or {})
    return {
        "top_threshold": float(stored.get("top_threshold", TOP_THRESHOLD)),
        "min_area_at_1024": int(stored.get("min_area_at_1024", MIN_AREA_AT_1024)),
        "threshold": float(getattr(meta, "threshold", 0.5)),
    }


def predict_probability(image: XrayImage, model, settings: XrayPreprocessing, device: str = "cpu") -> np.ndarray:
    """Model probability (float32, the image's own shape) for one X-ray."""
    import torch

    x = torch.from_numpy(preprocess_xray(image.pixels, settings))[None, None].to(device)
    x = x.contiguous(memory_format=torch.channels_last)  # a little faster on CPU and GPU alike
    with torch.inference_mode():
        logits = model(x)
        if tuple(logits.shape[-2:]) != image.shape:
            logits = torch.nn.functional.interpolate(logits, size=image.shape, mode="bilinear", align_corners=False)
        probability = torch.sigmoid(logits)[0, 0].float().cpu().numpy()
    return probability


def decide(probability: np.ndarray, threshold: float, top_threshold: float = TOP_THRESHOLD,
           min_area_px: int | None = None) -> tuple[bool, np.ndarray, int]:
    """Apply the triplet rule; returns (positive, mask uint8, the min area used in pixels)."""
    if min_area_px is None:
        min_area_px = scaled_min_area(probability.shape, MIN_AREA_AT_1024)
    confident = int(np.count_nonzero(probability >= top_threshold))
    if confident < max(1, int(min_area_px)):
        return False, np.zeros(probability.shape, dtype=np.uint8), int(min_area_px)
    return True, (probability >= threshold).astype(np.uint8), int(min_area_px)


def scaled_min_area(shape, min_area_at_1024: int = MIN_AREA_AT_1024) -> int:
    return max(1, int(round(min_area_at_1024 * shape[0] * shape[1] / REFERENCE_PIXELS)))


def predict_xray(image: XrayImage, model, meta, threshold: float | None = None, top_threshold: float | None = None,
                 min_area_px: int | None = None, device: str = "cpu") -> dict:
    """Pneumothorax yes/no, mask, probability and areas for one X-ray.

    Returns
    -------
    dict with ``pneumothorax`` (bool), ``mask`` (uint8, image shape), ``probability`` (float32),
    ``max_probability``, ``area_px``, ``area_cm2`` (None without a valid pixel spacing),
    ``threshold``, ``top_threshold``, ``min_area_px``, ``rule`` (the rule in words),
    ``image_shape``, ``spacing_mm`` and ``warnings``.
    """
    settings = xray_settings(meta)
    defaults = decision_defaults(meta)
    threshold = defaults["threshold"] if threshold is None else float(threshold)
    top_threshold = defaults["top_threshold"] if top_threshold is None else float(top_threshold)
    if min_area_px is None:
        min_area_px = scaled_min_area(image.shape, defaults["min_area_at_1024"])
    if not (0.0 < threshold < 1.0 and 0.0 < top_threshold <= 1.0):
        raise ValueError(f"thresholds must lie in (0, 1): got mask {threshold}, top {top_threshold}")
    probability = predict_probability(image, model, settings, device)
    positive, mask, min_area_px = decide(probability, threshold, top_threshold, min_area_px)
    area_px = int(mask.sum())
    area_cm2 = None
    if image.spacing_mm is not None:
        area_cm2 = round(area_px * float(image.spacing_mm[0]) * float(image.spacing_mm[1]) / 100.0, 2)
    return {
        "pneumothorax": bool(positive),
        "mask": mask,
        "probability": probability,
        "max_probability": round(float(probability.max()), 4),
        "area_px": area_px,
        "area_cm2": area_cm2,
        "threshold": threshold,
        "top_threshold": top_threshold,
        "min_area_px": int(min_area_px),
        "rule": rule_text(top_threshold, min_area_px, threshold),
        "image_shape": list(image.shape),
        "spacing_mm": None if image.spacing_mm is None else [float(v) for v in image.spacing_mm],
        "warnings": list(image.meta.get("warnings", [])),
    }


def rule_text(top_threshold: float, min_area_px: int, threshold: float) -> str:
    return (f"pneumothorax = at least {int(min_area_px)} pixels with probability >= {top_threshold:.2f}; "
            f"then the mask is every pixel with probability >= {threshold:.2f} (SIIM winners' triplet rule)")
