"""Layer data tuples and layer styles for a CT, a proposal and an annotator's mask.

Everything is in mm: a layer's ``scale`` is the voxel spacing (z, y, x), so napari's rulers,
scale bar and coordinates read in mm. The CT's patient geometry travels in the layer metadata
(``ptx_series_key``, ``ptx_affine``, ``ptx_source``) so a widget can rebuild the Volume.
"""

from __future__ import annotations

import numpy as np

from ptx_annotator.preprocessing import LUNG_WINDOW_HU, MEDIASTINAL_WINDOW_HU
from ptx_annotator.volume import Volume

#: Colour of the annotator's mask (label 1) and of the read-only proposal overlay.
MASK_RGBA = (1.0, 0.25, 0.2, 1.0)
PROPOSAL_COLORMAP = "yellow"
PROPOSAL_LAYER = "proposal (read-only)"
WINDOWS = {"lung": LUNG_WINDOW_HU, "mediastinal": MEDIASTINAL_WINDOW_HU}
#: Array axes (z runs from the first slice along the slice normal, inferior for axial series).
AXIS_LABELS = ("z", "y", "x")


def ct_layer_name(volume: Volume) -> str:
    return f"CT {volume.description}".strip() if volume.description else "CT"


def mask_layer_name(annotator: str) -> str:
    return f"pneumothorax ({annotator})"


def image_layer_data(volume: Volume) -> tuple:
    """A napari layer data tuple of the CT in the lung window, scale in mm."""
    metadata = {
        "ptx_series_key": volume.key,
        "ptx_series_uid": volume.series_uid,
        "ptx_affine": np.asarray(volume.affine, dtype=float).tolist(),
        "ptx_source": volume.source,
        "ptx_spacing": list(volume.spacing),
        "ptx_orientation": volume.orientation,
    }
    kwargs = {
        "name": ct_layer_name(volume),
        "scale": tuple(float(s) for s in volume.spacing),
        "contrast_limits": LUNG_WINDOW_HU,
        "colormap": "gray",
        "metadata": metadata,
        "units": "mm",
        "axis_labels": AXIS_LABELS,
    }
    return (volume.hu, kwargs, "image")


def volume_from_layer(layer) -> Volume | None:
    """Rebuild the Volume behind an image layer this plugin made (None for other layers)."""
    meta = getattr(layer, "metadata", {}) or {}
    if "ptx_affine" not in meta or np.ndim(layer.data) != 3:
        return None
    return Volume(
        hu=np.asarray(layer.data),
        spacing=tuple(float(s) for s in meta.get("ptx_spacing", layer.scale)),
        affine=np.asarray(meta["ptx_affine"], dtype=float),
        series_uid=meta.get("ptx_series_uid"),
        source=meta.get("ptx_source", ""),
        description=str(layer.name).removeprefix("CT ").strip(),
    )


def add_review_layers(viewer, volume: Volume, mask: np.ndarray, proposal: np.ndarray, annotator: str,
                      image=None):
    """Add the CT (unless ``image`` is that layer already), the read-only proposal and the editable mask.

    ``mask`` and ``proposal`` are shared, not copied: the session edits them in place.
    Returns the three layers.
    """
    data, kwargs, _ = image_layer_data(volume)
    if image is None:
        image = viewer.add_image(data, **kwargs)
    overlay = viewer.add_image(
        proposal, name=PROPOSAL_LAYER, scale=kwargs["scale"], colormap=PROPOSAL_COLORMAP,
        contrast_limits=(0, 1), blending="additive", opacity=0.55, units="mm", axis_labels=AXIS_LABELS,
    )
    overlay.locked = True  # read-only: not a painting target, not movable
    labels = viewer.add_labels(
        mask, name=mask_layer_name(annotator), scale=kwargs["scale"], opacity=0.45, units="mm",
        axis_labels=AXIS_LABELS,
    )
    _style_mask_layer(labels)
    viewer.layers.selection.active = labels
    viewer.scale_bar.visible = True
    return image, overlay, labels


def _style_mask_layer(labels) -> None:
    from napari.utils import DirectLabelColormap

    labels.colormap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: MASK_RGBA})
    labels.selected_label = 1
    labels.brush_size = 8
    labels.mode = "paint"


def set_window(image_layer, name: str) -> None:
    """Switch the CT layer between the lung and mediastinal windows."""
    image_layer.contrast_limits = WINDOWS[name]
