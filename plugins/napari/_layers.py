"""Layer data tuples and layer styles for a CT, a proposal and an annotator's mask.

Everything is in mm: a layer's ``scale`` is the voxel spacing (z, y, x), so napari's rulers,
scale bar and coordinates read in mm. The CT's patient geometry travels in the layer metadata
(``ptx_series_key``, ``ptx_affine``, ``ptx_source``) so a widget can rebuild the Volume; the
review widget adds ``ptx_store_root`` (where the study's annotations are saved, ``--store`` or
the study's own store) so the Compare and Fine-tune widgets use the same store.
"""

from __future__ import annotations

import numpy as np

from ptx_annotator.preprocessing import LUNG_WINDOW_HU, MEDIASTINAL_WINDOW_HU
from ptx_annotator.review.states import PROPOSED, STATE_COLORS
from ptx_annotator.review.tools import DEFAULT_BRUSH_SIZE
from ptx_annotator.volume import Volume

#: The reader's mask is filled in this colour (label 1) ...
MASK_RGBA = (1.0, 0.25, 0.2, 1.0)
#: ... and the machine's proposal is only outlined, in the colour of the ``proposed`` state, so
#: the two stay apart where they overlap (no blend: an outline over a fill). The outline is drawn
#: into an array of its own (:func:`update_outline`, when the proposal changes), not by napari's
#: ``contour``, which would compute it again on every slice change.
PROPOSAL_RGBA = tuple(int(STATE_COLORS[PROPOSED][i:i + 2], 16) / 255 for i in (1, 3, 5)) + (1.0,)
PROPOSAL_OUTLINE_PX = 2
PROPOSAL_LAYER = "proposal (outline, read-only)"
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


def outline(mask, width: int = 1) -> np.ndarray:
    """The inner rim, ``width`` pixels wide, of a 2D mask (bool)."""
    from scipy import ndimage as ndi

    from ptx_annotator.geometry import bounding_box

    mask = np.asarray(mask) > 0
    rim = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask, margin=1)
    if box is not None:
        inner = mask[box]
        rim[box] = inner & ~ndi.binary_erosion(inner, iterations=width, border_value=0)
    return rim


def update_outline(outlines: np.ndarray, proposal: np.ndarray, indices=None) -> None:
    """Redraw the axial outlines of the proposal's slices ``indices`` (all when None) in place."""
    for z in range(proposal.shape[0]) if indices is None else indices:
        outlines[int(z)] = outline(proposal[int(z)], PROPOSAL_OUTLINE_PX)


def add_review_layers(viewer, volume: Volume, mask: np.ndarray, proposal: np.ndarray, annotator: str,
                      image=None):
    """Add the CT (unless ``image`` is that layer already), the proposal outline and the editable mask.

    ``mask`` is shared, not copied: the session edits it in place. The proposal layer holds the
    outline of ``proposal`` (of the same shape), drawn with :func:`update_outline` by the views
    that follow the session (they draw it all when they start). Returns the three layers.
    """
    data, kwargs, _ = image_layer_data(volume)
    if image is None:
        image = viewer.add_image(data, **kwargs)
    labels = viewer.add_labels(
        mask, name=mask_layer_name(annotator), scale=kwargs["scale"], opacity=0.45, units="mm",
        axis_labels=AXIS_LABELS,
    )
    overlay = viewer.add_labels(  # above the fill, so the outline shows where the two coincide
        np.zeros(proposal.shape, dtype=np.uint8), name=PROPOSAL_LAYER, scale=kwargs["scale"], opacity=1.0,
        units="mm", axis_labels=AXIS_LABELS,
    )
    overlay.colormap = _one_label_colormap(PROPOSAL_RGBA)
    overlay.editable = False
    overlay.locked = True  # read-only: not a painting target, not movable
    _style_mask_layer(labels)
    viewer.layers.selection.active = labels
    viewer.scale_bar.visible = True
    return image, overlay, labels


def _one_label_colormap(rgba):
    from napari.utils import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: rgba})


def _style_mask_layer(labels) -> None:
    labels.colormap = _one_label_colormap(MASK_RGBA)
    labels.selected_label = 1
    labels.brush_size = DEFAULT_BRUSH_SIZE
    labels.mode = "paint"


def set_window(image_layer, name: str) -> None:
    """Switch the CT layer between the lung and mediastinal windows."""
    image_layer.contrast_limits = WINDOWS[name]


def store_root_of(meta: dict):
    """Where the annotations of a CT layer's study live: ``ptx_store_root`` (set when a review
    opened it, ``--store`` included), else the study's store by the one store-root rule."""
    from pathlib import Path

    from ptx_annotator.review.store_paths import store_root_for

    if meta.get("ptx_store_root"):
        return Path(meta["ptx_store_root"])
    return store_root_for(meta["ptx_source"]) if meta.get("ptx_source") else None
