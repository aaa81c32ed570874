"""The U-Net constrained by the classical anatomy: model pixels only inside the pleural cavities.

A U-Net trained on simulated cases learns what pleural air looks like, but on an unseen CT it also
marks air that merely looks like it: subcutaneous emphysema beyond the ribs, bowel gas below the
diaphragm, the trachea. The thoracic anatomy of :func:`ptx_annotator.anatomy.segment_thorax` (the
same one the classical proposer relies on) knows where a pneumothorax can be: inside a hemithorax
(lung + pleural space), outside the airways. :class:`CombinedProposer` runs the model as
:class:`~ptx_annotator.proposers.inference.ModelProposer` does and keeps only its pixels inside
that region (grown by ``margin_mm`` in-plane, so air at the parietal pleura is never cut), then
applies the model's own 3D clean-up. The anatomy is segmented once, before the first slice.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.proposers.contract import SliceResult, finish_after_last_slice
from ptx_annotator.volume import Volume

#: In-plane margin (mm) added around the hemithoraces: rim air at the chest wall stays in.
DEFAULT_MARGIN_MM = 2.0
REGION_RULE = "model mask inside hemithoraces (+margin, in-plane), outside the airways"


def pleural_region(anatomy, spacing_zyx, margin_mm: float = DEFAULT_MARGIN_MM) -> np.ndarray:
    """Where a pneumothorax can lie: both hemithoraces grown by ``margin_mm`` in-plane, minus airways."""
    region = np.asarray(anatomy.hemithorax_right | anatomy.hemithorax_left, dtype=bool)
    steps = int(round(float(margin_mm) / max(float(min(spacing_zyx[1:])), 1e-6)))
    if steps > 0:
        cross = np.zeros((3, 3, 3), dtype=bool)
        cross[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
        region = ndi.binary_dilation(region, structure=cross, iterations=steps)
    return region & ~np.asarray(anatomy.airways, dtype=bool)


def constrain(mask: np.ndarray, region: np.ndarray, model_proposer, spacing_zyx) -> np.ndarray:
    """A model mask kept to ``region``, then the model's 3D clean-up (the combined proposer's mask)."""
    kept = (np.asarray(mask) > 0) & region
    return (np.asarray(model_proposer.postprocess_volume(kept.astype(np.uint8), spacing_zyx)) > 0).astype(np.uint8)


class CombinedProposer:
    """A :class:`ModelProposer` whose mask is kept to the pleural cavities (see the module docstring)."""

    def __init__(self, model_proposer, margin_mm: float = DEFAULT_MARGIN_MM):
        self.model = model_proposer
        self.margin_mm = float(margin_mm)
        self.source_id = f"combined:{model_proposer.source_id}"

    @classmethod
    def from_checkpoint(cls, path, margin_mm: float = DEFAULT_MARGIN_MM, **options) -> "CombinedProposer":
        from ptx_annotator.proposers.inference import ModelProposer

        return cls(ModelProposer.from_checkpoint(path, **options), margin_mm=margin_mm)

    def __getattr__(self, name):
        # everything else callers read off a model proposer (meta, threshold, device, probabilities)
        # is the model's own
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def describe(self) -> dict:
        return {**self.model.describe(), "kind": "combined", "region": REGION_RULE, "margin_mm": self.margin_mm}

    def iter_slices(self, volume: Volume, first_slice: int | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> Iterator[SliceResult]:
        """The model's slices kept to the pleural region, then the 3D clean-up's revisions."""
        from ptx_annotator.anatomy import segment_thorax

        if should_cancel is not None and should_cancel():
            return iter(())
        region = pleural_region(segment_thorax(volume), volume.spacing, self.margin_mm)

        def slices():
            for result in self.model._slices(volume, first_slice, should_cancel):
                result.mask = ((np.asarray(result.mask) > 0) & region[result.index]).astype(np.uint8)
                yield result

        return finish_after_last_slice(slices(), volume, self.model.finish_volume, should_cancel)

    def finish_volume(self, mask: np.ndarray, volume: Volume) -> np.ndarray:
        return self.model.finish_volume(mask, volume)

    def postprocess_volume(self, mask: np.ndarray, spacing_zyx) -> np.ndarray:
        return self.model.postprocess_volume(mask, spacing_zyx)
