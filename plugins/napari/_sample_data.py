"""napari sample data: the procedural chest CT phantom with a pneumothorax and its truth mask."""

from __future__ import annotations

from ptx_annotator.synthetic.phantom import make_chest_phantom

from ._layers import image_layer_data


def make_phantom_sample():
    """The phantom CT (lung window, mm scale) and the exact pneumothorax mask as a Labels layer."""
    case = make_chest_phantom()
    image = image_layer_data(case.volume)
    truth = (case.truth, {"name": "pneumothorax (truth)", "scale": image[1]["scale"], "opacity": 0.4,
                          "units": "mm", "axis_labels": image[1]["axis_labels"]}, "labels")
    return [image, truth]
