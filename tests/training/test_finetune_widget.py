"""Fine-tune on the reviewed slices of a study, then re-propose the unreviewed ones.

First `ptx-annotate train STUDY` and the plain re-proposal functions (no viewer), then the napari
widget under Xvfb. The study is one NIfTI CT (32 slices of the real TCIA CT at 64 px) whose store
holds annotator 'alice' with 24 reviewed slices (accepted / edited, with and without pneumothorax), 6 unreviewed and 2 flagged.
"""

import numpy as np
import pytest

from ptx_annotator.io import load_volume
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED, UNREVIEWED
from ptx_annotator.review.store import Annotation, AnnotationStore
from tiny_data import crescent_volume, write_ct_nifti

UNREVIEWED_SLICES = (2, 9, 15, 22, 27, 30)
FLAGGED_SLICES = (5, 18)


def make_study(folder, tiny_ct):
    hu, _, affine = tiny_ct
    start = 12
    study_hu, study_mask = crescent_volume(hu[start:start + 32], seed=5)
    study_affine = affine.copy()
    study_affine[:3, 3] = affine[:3, 3] + start * affine[:3, 0]
    path = folder / "study.nii.gz"
    write_ct_nifti(study_hu, study_affine, path)
    volume = load_volume(path)
    store = AnnotationStore.for_study(path)
    annotation = Annotation.empty(volume, "alice")
    for z in range(volume.shape[0]):
        if z in UNREVIEWED_SLICES:
            continue
        if z in FLAGGED_SLICES:
            annotation.review.mark(z, FLAGGED, "alice")
            continue
        annotation.mask[z] = study_mask[z]
        annotation.review.mark(z, EDITED if study_mask[z].any() else ACCEPTED, "alice")
    store.save(annotation)
    store.close()
    return path, volume, store.root


def _config():
    from ptx_annotator.training.trainer import TrainConfig

    return TrainConfig(epochs=1, input_size=64, batch_size=8, lr=1e-3, device="cpu")


def test_train_study_cli_then_repropose_only_unreviewed(tiny_ct, tmp_path, capsys):
    from ptx_annotator.cli import main
    from ptx_annotator.training.interactive import repropose_store, reproposal_results
    from ptx_annotator.training.registry import registry_for

    path, volume, store_root = make_study(tmp_path, tiny_ct)
    before = AnnotationStore(store_root).load(volume.key, "alice")
    rc = main(["train", str(path), "--annotator", "alice", "--fresh", "--epochs", "1", "--size", "64",
               "--encoder", "resnet34", "--device", "cpu", "--batch-size", "8", "--lr", "1e-3", "--threads", "1"])
    assert rc == 0
    registry = registry_for(path)  # <study folder>/.ptx/models
    assert registry.folder == store_root / "models"
    record = registry.active()
    assert record["version"] == "v0001" and sum(record["split_counts"].values()) == 24  # accepted / edited only
    assert registry.split().granularity == "slab"  # one patient: 20 mm slabs, frozen
    capsys.readouterr()
    assert main(["models", str(path)]) == 0
    assert "* v0001" in capsys.readouterr().out

    source, params, results = reproposal_results(volume, registry.active_path())
    results = list(results)
    assert len(results) == volume.shape[0]
    report = repropose_store(volume, store_root, source, params, results)
    assert report == {"alice": len(UNREVIEWED_SLICES)}
    after = AnnotationStore(store_root).load(volume.key, "alice")
    states = after.review.states()
    for z in range(volume.shape[0]):
        if z in UNREVIEWED_SLICES:
            assert states[z] == PROPOSED and after.review[z].source == source
        else:  # reviewed and flagged slices are untouched, masks included
            assert states[z] == before.review[z].state
            assert np.array_equal(after.mask[z], before.mask[z])
    assert source in after.proposals


def test_widget_trains_shows_dice_and_reproposes(make_napari_viewer, qtbot, tiny_ct, tmp_path, monkeypatch):
    """With the study open in the review widget, the re-proposal goes to that session (found
    through the viewer's one owner) and its state strip follows through the session's events."""
    from ptx_annotator.plugins.napari._qt._finetune_widget import FineTuneWidget
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    path, volume, store_root = make_study(tmp_path, tiny_ct)
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    session = review.open_study(path, "alice")  # the study's own store, by the one store-root rule
    assert review.image_layer.metadata["ptx_store_root"] == str(store_root)
    session.flag(UNREVIEWED_SLICES[0])  # unsaved work: training saves it first
    widget = FineTuneWidget(viewer)
    qtbot.addWidget(widget)
    widget.form.epochs.value = 1
    widget.form.size.value = 64
    widget.form.encoder.value = "resnet34"
    widget.config = _config  # the tiny recipe of these tests (lr, batch) on top of the UI values
    widget.start()
    assert not widget.train_button.isEnabled() and widget.cancel_button.isEnabled()
    assert AnnotationStore(store_root).load(volume.key, "alice").review[UNREVIEWED_SLICES[0]].state == FLAGGED
    qtbot.waitUntil(lambda: widget.worker is None, timeout=240_000)
    assert widget.outcome is not None and widget.outcome.registration.activated
    text = widget.status.text()
    assert "Hold-out Dice: new" in text and "no active model before" in text and "Re-proposed" in text
    assert widget.plot.history and widget.plot.history[0]["epoch"] == 1
    reproposed = [z for z in UNREVIEWED_SLICES[1:]]
    assert widget.reproposed == {"alice": len(reproposed)}
    assert review.strip.states == session.states()  # the strip followed the session's events
    assert [z for z, s in enumerate(review.strip.states) if s == PROPOSED] == reproposed
    assert review.autosave()
    states = AnnotationStore(store_root).load(volume.key, "alice").review.states()
    assert [z for z, s in enumerate(states) if s == PROPOSED] == reproposed
    assert UNREVIEWED not in states
    review.close_session()


def test_widget_without_a_study_says_so(make_napari_viewer, qtbot):
    from ptx_annotator.plugins.napari._qt._finetune_widget import FineTuneWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 8, 8)))
    widget = FineTuneWidget(viewer)
    qtbot.addWidget(widget)
    widget.start()
    assert widget.worker is None and "No CT opened" in widget.status.text()
