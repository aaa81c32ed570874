"""Input preprocessing shared by training and inference: HU window clipped and scaled to 0..1."""

from __future__ import annotations

import numpy as np

#: Lung window W 1500 / L -600 as (low, high) HU: air at 0, soft tissue near 1.
LUNG_WINDOW_HU = (-1350.0, 150.0)
#: Mediastinal window W 400 / L 40.
MEDIASTINAL_WINDOW_HU = (-160.0, 240.0)


def window_from_width_level(width: float, level: float) -> tuple[float, float]:
    return (level - width / 2.0, level + width / 2.0)


def hu_to_unit(hu: np.ndarray, window: tuple[float, float] = LUNG_WINDOW_HU) -> np.ndarray:
    """Clip HU to ``window`` and scale linearly to float32 in [0, 1]."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"HU window {window} is empty: the upper bound must exceed the lower one.")
    out = np.asarray(hu, dtype=np.float32) - np.float32(low)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)
    return out
