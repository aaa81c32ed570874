"""`ptx-annotate open --screenshot`: an off-screen render that shows the CT, the overlay and the widget."""

import numpy as np
import pytest
from PIL import Image

from ptx_annotator.plugins.napari import _launch
from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom
from ptx_annotator.proposers.contract import SliceResult, slice_order


class TruthProposer:
    source_id = "truth-test"

    def __init__(self, truth):
        self.truth = truth

    def describe(self):
        return {}

    def iter_slices(self, volume, first_slice=None, should_cancel=None):
        order = slice_order(volume.shape[0], first_slice)
        for done, index in enumerate(order, 1):
            yield SliceResult(index, self.truth[index], None, done, len(order))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    case = make_chest_phantom(shape=(24, 128, 128), spacing=(5.0, 2.25, 2.25))
    ct_path, _ = save_phantom(case, tmp_path_factory.mktemp("study"))
    return case, ct_path


def overlay_pixels(rgb: np.ndarray) -> int:
    """Pixels in the orange of the proposal (yellow, additive) over the red mask on lung grey."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((r > 180) & (g > 100) & (g < 170) & (b < 100)).sum())


def render(path, out, **kwargs):
    _launch.render_screenshot(path, out, annotator="viewer", size=(1200, 800), **kwargs)
    return np.asarray(Image.open(out).convert("RGB"))


def test_screenshot_shows_the_ct_and_the_overlay(qapp, mock_app_model, phantom, tmp_path, monkeypatch):
    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    case, ct_path = phantom
    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    with_overlay = render(ct_path, tmp_path / "with.png", slice_index=busy, proposer=TruthProposer(case.truth))
    without = render(ct_path, tmp_path / "without.png", slice_index=busy, propose=False)
    assert with_overlay.shape == (800, 1200, 3)
    assert with_overlay.std() > 20  # not blank
    grey = (np.abs(with_overlay[..., 0].astype(int) - with_overlay[..., 2]) < 8) & (with_overlay[..., 0] > 150)
    assert grey.sum() > 5000  # bright CT structures (mediastinum, chest wall) in the lung window
    assert overlay_pixels(with_overlay) > 500
    assert overlay_pixels(without) < 50
    assert not (tmp_path / "study" / ".ptx").exists()  # a screenshot writes nothing to the store


def test_cli_screenshot_writes_a_png_and_exits(qapp, mock_app_model, phantom, tmp_path, monkeypatch, capsys):
    pytest.importorskip("ptx_annotator.proposers.classical")
    from ptx_annotator.cli import main

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    case, ct_path = phantom
    out = tmp_path / "cli.png"
    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    assert main([ct_path, "--screenshot", str(out), "--slice", str(busy)]) == 0
    assert "screenshot written" in capsys.readouterr().out
    assert overlay_pixels(np.asarray(Image.open(out).convert("RGB"))) > 200  # the classical proposal shows
