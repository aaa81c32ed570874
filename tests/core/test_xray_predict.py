"""The SIIM triplet decision rule and the X-ray checkpoint checks (no model weights needed)."""

import numpy as np
import pytest

from ptx_annotator.errors import CheckpointError
from ptx_annotator.model import CheckpointMeta
from ptx_annotator.xray.predict import decide, decision_defaults, rule_text, scaled_min_area, xray_settings
from ptx_annotator.xray.preprocess import XrayPreprocessing


def _probability(confident_pixels: int, shape=(100, 100), low=0.5) -> np.ndarray:
    probability = np.full(shape, 0.1, dtype=np.float32)
    probability.ravel()[:confident_pixels] = 0.9
    probability.ravel()[confident_pixels:confident_pixels + 300] = low  # above the mask threshold only
    return probability


def test_too_few_confident_pixels_is_negative_with_empty_mask():
    positive, mask, min_area = decide(_probability(99), threshold=0.4, top_threshold=0.75, min_area_px=100)
    assert not positive and mask.sum() == 0 and min_area == 100


def test_enough_confident_pixels_gives_the_low_threshold_mask():
    positive, mask, _ = decide(_probability(100), threshold=0.4, top_threshold=0.75, min_area_px=100)
    assert positive and mask.sum() == 100 + 300
    positive, mask, _ = decide(_probability(100), threshold=0.6, top_threshold=0.75, min_area_px=100)
    assert positive and mask.sum() == 100


def test_min_area_scales_with_image_size():
    assert scaled_min_area((1024, 1024), 2000) == 2000
    assert scaled_min_area((512, 512), 2000) == 500
    assert scaled_min_area((1955, 1841), 2000) == round(2000 * 1955 * 1841 / 1024 ** 2)
    assert "at least 500 pixels" in rule_text(0.75, 500, 0.4)


def test_settings_come_from_the_checkpoint_and_ct_models_are_refused():
    meta = CheckpointMeta(encoder="resnet34", input_size=256, hu_window=None, threshold=0.35, modality="XR",
                          preprocessing=XrayPreprocessing(size=256, clahe_clip_limit=0.02).to_json(),
                          provenance={"decision_rule": {"top_threshold": 0.8, "min_area_at_1024": 1500}})
    settings = xray_settings(meta)
    assert settings.size == 256 and settings.clahe_clip_limit == 0.02
    assert decision_defaults(meta) == {"top_threshold": 0.8, "min_area_at_1024": 1500, "threshold": 0.35}
    with pytest.raises(CheckpointError, match="not a chest X-ray model"):
        xray_settings(CheckpointMeta(encoder="resnet34", input_size=256))
    with pytest.raises(CheckpointError, match="not the X-ray pipeline"):
        xray_settings(CheckpointMeta(encoder="resnet34", input_size=256, modality="XR",
                                     preprocessing={"kind": "ct-window"}))
