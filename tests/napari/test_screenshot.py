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


def proposal_pixels(rgb: np.ndarray) -> int:
    """Pixels in the amber of the proposal's outline (#e6b400, drawn opaque)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((r > 200) & (g > 150) & (g < 215) & (b < 60)).sum())


def reader_pixels(rgb: np.ndarray) -> int:
    """Pixels in the red of the reader's filled mask over the CT (never amber: blue stays near green)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((r > g + 60) & (r > b + 60) & (abs(g - b) < 40)).sum())


def render(path, out, **kwargs):
    _launch.render_screenshot(path, out, annotator="viewer", size=(1200, 900), **kwargs)
    return np.asarray(Image.open(out).convert("RGB"))


def test_screenshot_shows_the_ct_and_the_overlay(qapp, mock_app_model, phantom, tmp_path, monkeypatch):
    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    case, ct_path = phantom
    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    with_overlay = render(ct_path, tmp_path / "with.png", slice_index=busy, proposer=TruthProposer(case.truth))
    without = render(ct_path, tmp_path / "without.png", slice_index=busy, propose=False)
    assert with_overlay.shape == (900, 1200, 3)
    assert with_overlay.std() > 20  # not blank
    grey = (np.abs(with_overlay[..., 0].astype(int) - with_overlay[..., 2]) < 8) & (with_overlay[..., 0] > 150)
    assert grey.sum() > 5000  # bright CT structures (mediastinum, chest wall) in the lung window
    assert proposal_pixels(with_overlay) > 200 and proposal_pixels(without) < 20
    # without a proposal nothing fills the reader's mask; the red left is the widget's colour swatches
    assert reader_pixels(with_overlay) > reader_pixels(without) + 500
    assert not (tmp_path / "study" / ".ptx").exists()  # a screenshot writes nothing to the store


def test_cli_screenshot_shows_proposal_and_reader_mask_in_different_colours(qapp, mock_app_model, phantom, tmp_path,
                                                                           monkeypatch, capsys):
    """`ptx-annotate STUDY --screenshot PNG`, headless: the proposal is an amber outline, the reader's
    saved mask a red fill; where the reader erased half the pneumothorax only the outline shows. (The
    proposer is the phantom's truth here; the classical one on a real CT is the next test.)"""
    from ptx_annotator.cli import main
    from ptx_annotator.io import load_volume
    from ptx_annotator.plugins.napari._qt import _propose
    from ptx_annotator.review.store import Annotation, AnnotationStore

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    case, ct_path = phantom
    monkeypatch.setattr(_propose, "make_proposer", lambda checkpoint=None: TruthProposer(case.truth))
    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    volume = load_volume(ct_path)
    reader = Annotation.empty(volume, "reader")
    reader.mask[:] = case.truth
    reader.mask[:, :64] = 0  # the reader keeps only the posterior half
    store = tmp_path / "store"
    AnnotationStore(store).save(reader)
    out = tmp_path / "cli.png"
    assert main([ct_path, "--annotator", "reader", "--store", str(store), "--screenshot", str(out),
                 "--slice", str(busy)]) == 0
    assert "screenshot written" in capsys.readouterr().out
    both = np.asarray(Image.open(out).convert("RGB"))
    pictures = {}
    for annotator in ("reader", "nobody"):  # the reader's mask alone; then neither (the widget's own colours)
        pictures[annotator] = tmp_path / f"{annotator}.png"
        assert main([ct_path, "--annotator", annotator, "--store", str(store), "--screenshot",
                     str(pictures[annotator]), "--slice", str(busy), "--no-propose"]) == 0
    mask_only, neither = (np.asarray(Image.open(pictures[a]).convert("RGB")) for a in ("reader", "nobody"))
    assert proposal_pixels(both) > 100 and proposal_pixels(mask_only) < 20  # amber: the proposal's alone
    assert reader_pixels(mask_only) > reader_pixels(neither) + 300  # red: the reader's fill
    assert reader_pixels(both) > reader_pixels(neither) + 300
    assert AnnotationStore(store).load(volume.key, "nobody") is None  # a screenshot writes nothing


def test_cli_screenshot_of_a_real_ct_shows_the_classical_proposal(qapp, mock_app_model, tcia_volume, tmp_path,
                                                                  monkeypatch, capsys):
    """The real TCIA CT with a simulated right pneumothorax: the classical proposer's outline shows."""
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.cli import main
    from ptx_annotator.io.ct_writer import write_ct_nifti
    from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    sim = simulate_pneumothorax(tcia_volume, "right", 0.2, seed=0, anatomy=segment_thorax(tcia_volume))
    (tmp_path / "study").mkdir()
    ct_path = str(write_ct_nifti(sim.volume, sim.volume.hu, tmp_path / "study" / "ct.nii.gz"))
    busy = int(np.argmax(sim.mask.sum(axis=(1, 2))))
    out = tmp_path / "real.png"
    assert main([ct_path, "--annotator", "viewer", "--store", str(tmp_path / "store"), "--screenshot", str(out),
                 "--slice", str(busy)]) == 0
    assert "screenshot written" in capsys.readouterr().out
    assert proposal_pixels(np.asarray(Image.open(out).convert("RGB"))) > 100
