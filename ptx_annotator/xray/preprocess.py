"""X-ray preprocessing as in the papers: resize to a square, CLAHE, normalise.

The same :func:`preprocess_xray` runs in training and in the demo; its settings travel in the
checkpoint (``CheckpointMeta.preprocessing``) so a model is always fed what it was trained on.
The order is: image (0..1) -> resize to ``size`` x ``size`` (anti-aliased) -> CLAHE ->
``(x - mean) / std``. The defaults (mean 0, std 1) keep the input in 0..1, which is what the
shared trainer (``ptx_annotator.training.trainer``) expects: its augmentation brightens and pads
in 0..1. A checkpoint that stores other values is fed accordingly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ptx_annotator.errors import CheckpointError

SIZES = (256, 512)
KIND = "xray-clahe"


@dataclass(frozen=True)
class XrayPreprocessing:
    """Settings of the X-ray input pipeline (stored in every X-ray checkpoint).

    Attributes
    ----------
    size : side of the square model input in pixels (the papers: 256 or 512).
    clahe : apply contrast-limited adaptive histogram equalisation (skimage ``equalize_adapthist``).
    clahe_clip_limit : CLAHE clip limit (skimage's scale, 0..1).
    clahe_tiles : the image is equalised over ``clahe_tiles x clahe_tiles`` tiles.
    mean, std : normalisation applied last: ``(x - mean) / std``.
    """

    size: int = 512
    clahe: bool = True
    clahe_clip_limit: float = 0.01
    clahe_tiles: int = 8
    mean: float = 0.0
    std: float = 1.0

    def to_json(self) -> dict:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_json(cls, payload: dict | None, where: str = "checkpoint") -> "XrayPreprocessing":
        payload = dict(payload or {})
        kind = payload.pop("kind", KIND)
        if kind != KIND:
            raise CheckpointError(f"{where}: preprocessing '{kind}' is not the X-ray pipeline '{KIND}'; "
                                  "this checkpoint is not an X-ray model.")
        known = {key: payload[key] for key in cls.__dataclass_fields__ if key in payload}
        try:
            settings = cls(**known)
            size, std = int(settings.size), float(settings.std)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: malformed X-ray preprocessing settings ({exc}).") from exc
        if size < 32 or size % 32 or not std > 0:
            raise CheckpointError(f"{where}: X-ray input size must be a multiple of 32 and std > 0 (got {size}, {std}).")
        return settings


def prepare_xray(pixels: np.ndarray, settings: XrayPreprocessing) -> np.ndarray:
    """Resize to ``settings.size`` square and apply CLAHE: float32 (size, size) in 0..1."""
    from skimage.exposure import equalize_adapthist

    image = _as_unit(pixels)
    image = resize_image(image, (settings.size, settings.size))
    if settings.clahe:
        kernel = max(8, settings.size // max(1, int(settings.clahe_tiles)))
        image = equalize_adapthist(image, kernel_size=kernel, clip_limit=float(settings.clahe_clip_limit))
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)


def normalise(image: np.ndarray, settings: XrayPreprocessing) -> np.ndarray:
    """``(image - mean) / std`` as float32."""
    return ((np.asarray(image, dtype=np.float32) - np.float32(settings.mean)) / np.float32(settings.std)).astype(
        np.float32, copy=False)


def preprocess_xray(pixels: np.ndarray, settings: XrayPreprocessing) -> np.ndarray:
    """The model input for one image: float32 (size, size)."""
    return normalise(prepare_xray(pixels, settings), settings)


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased bilinear resize of a float image (no change when the shape already fits)."""
    from skimage.transform import resize

    if tuple(image.shape[:2]) == tuple(shape):
        return np.asarray(image, dtype=np.float32)
    shrinking = image.shape[0] > shape[0] or image.shape[1] > shape[1]
    return resize(image, shape, order=1, mode="edge", anti_aliasing=shrinking, preserve_range=True).astype(np.float32)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask by area coverage (> 50 % of a target pixel is inside): uint8 0/1."""
    if tuple(mask.shape) == tuple(shape):
        return (np.asarray(mask) > 0).astype(np.uint8)
    covered = resize_image((np.asarray(mask) > 0).astype(np.float32), shape)
    return (covered > 0.5).astype(np.uint8)


def _as_unit(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255.0)
    return np.clip(pixels.astype(np.float32, copy=False), 0.0, 1.0)
