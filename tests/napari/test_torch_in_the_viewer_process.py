"""A model can be loaded in a process whose napari canvas is already drawn (software OpenGL here)."""

import subprocess
import sys

SCRIPT = """
import numpy as np
import ptx_annotator.plugins.napari  # what napari imports first when it uses this plugin
import napari

viewer = napari.Viewer(show=False)
viewer.add_image(np.random.default_rng(0).random((32, 32)))
viewer.screenshot(canvas_only=False, flash=False)  # the canvas is drawn: OpenGL is loaded
import torch
from ptx_annotator.model import build_model  # torchvision and smp come in now

model = build_model("resnet34").eval()
with torch.inference_mode():
    print(tuple(model(torch.zeros(1, 1, 64, 64)).shape))
viewer.close()
"""


def test_a_model_loads_after_the_canvas_is_drawn():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip().splitlines()[-1] == "(1, 1, 64, 64)"
