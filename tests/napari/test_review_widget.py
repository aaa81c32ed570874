"""The review widget in a real napari viewer: actions, keys, painting, autosave, reopening, Propose."""

import threading
import time

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from phantom_dicom import write_dicom_series  # tests/napari is on sys.path
from ptx_annotator.synthetic.phantom import make_chest_phantom
from ptx_annotator.plugins.napari._qt import _propose
from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, MEDIASTINAL_WINDOW_HU
from ptx_annotator.proposers.contract import SliceResult, slice_order
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED, UNREVIEWED
from ptx_annotator.review.store import AnnotationStore


class TruthProposer:
    """Proposes the truth mask, optionally slowly and waiting on a gate after the first slice."""

    source_id = "truth-test"

    def __init__(self, truth, delay=0.0, gate=None, confidence=1.0):
        self.truth, self.delay, self.gate, self.confidence = truth, delay, gate, confidence
        self.first_seen = None

    def describe(self):
        return {"kind": "test"}

    def iter_slices(self, volume, first_slice=None, should_cancel=None):
        order = slice_order(volume.shape[0], first_slice)
        for done, index in enumerate(order, 1):
            if should_cancel is not None and should_cancel():
                return
            if self.first_seen is None:
                self.first_seen = index
            probability = self.truth[index].astype(np.float32) * self.confidence
            yield SliceResult(index, self.truth[index], probability, done, len(order))
            if self.gate is not None:
                self.gate.wait(5)
            time.sleep(self.delay)


@pytest.fixture(scope="module")
def case():
    return make_chest_phantom(shape=(10, 96, 96), spacing=(5.0, 3.0, 3.0), side="right", fraction=0.3)


def run_proposal(qtbot, widget, proposer, monkeypatch):
    monkeypatch.setattr(_propose, "make_proposer", lambda *a, **k: proposer)
    widget.start_proposal()
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=20000)


def saved(widget):
    widget.autosave()
    return AnnotationStore(widget.session.store.root).load(widget.session.volume.key, "alice")


def outlines_of(proposal, width=2):
    """What the proposal layer should show: each slice's inner rim, ``width`` pixels wide."""
    from scipy import ndimage as ndi

    proposal = np.asarray(proposal) > 0
    eroded = ndi.binary_erosion(proposal, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool),
                                iterations=width)
    return (proposal & ~eroded).astype(np.uint8)


def press(qtbot, widget, key, modifier=Qt.NoModifier):
    """A real key press on the canvas (napari asks the active layer's keymap first, then the viewer's)."""
    canvas = widget.viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, getattr(Qt, f"Key_{key}"), modifier)


def test_open_shows_ct_proposal_and_editable_mask_in_mm(widget, case):
    image, overlay, mask = widget.image_layer, widget.overlay_layer, widget.mask_layer
    assert tuple(image.scale) == case.volume.spacing == tuple(mask.scale) == tuple(overlay.scale)
    assert tuple(image.contrast_limits) == LUNG_WINDOW_HU
    assert mask.editable and widget.viewer.layers.selection.active is mask
    assert overlay.locked and not overlay.editable
    assert mask.contour == 0 == overlay.contour  # the reader's mask is filled; the outline is drawn in its data
    assert tuple(overlay.colormap.map(1)[:3]) != tuple(mask.colormap.map(1)[:3])
    assert mask.data is widget.session.annotation.mask
    assert np.array_equal(overlay.data, outlines_of(widget.session.proposal_mask))
    widget.window_check.setChecked(True)
    assert tuple(image.contrast_limits) == MEDIASTINAL_WINDOW_HU
    widget.toggle_window()
    assert tuple(image.contrast_limits) == LUNG_WINDOW_HU


def test_propose_fills_the_overlay_and_mask_slice_on_screen_first(qtbot, widget, case, monkeypatch):
    proposer = TruthProposer(case.truth)
    run_proposal(qtbot, widget, proposer, monkeypatch)
    session = widget.session
    assert proposer.first_seen == session.current_slice
    assert np.array_equal(session.proposal_mask, case.truth)
    assert np.array_equal(widget.overlay_layer.data, outlines_of(case.truth))  # the outline follows the proposal
    assert session.states() == [PROPOSED] * 10
    right_ml = case.truth.sum() * case.volume.voxel_volume_ml
    qtbot.waitUntil(lambda: f"right {right_ml:.1f} mL" in widget.volume_label.text(), timeout=20000)
    record = saved(widget).proposals["truth-test"]
    assert record["completed"] is True and record["with_probabilities"] is True


def test_each_button_changes_the_state_and_what_is_saved(qtbot, widget, case, monkeypatch):
    run_proposal(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    z = widget.session.current_slice
    qtbot.mouseClick(widget.buttons["accept"], Qt.LeftButton)
    assert widget.strip.states[z] == ACCEPTED and saved(widget).review[z].state == ACCEPTED
    qtbot.mouseClick(widget.buttons["flag"], Qt.LeftButton)
    assert saved(widget).review[z].state == FLAGGED
    qtbot.mouseClick(widget.buttons["clear"], Qt.LeftButton)
    on_disk = saved(widget)
    assert on_disk.review[z].state == EDITED and not on_disk.mask[z].any()
    widget.range_form.first.value = widget.range_form.last.value = z
    qtbot.mouseClick(widget.buttons["copy"], Qt.LeftButton)
    on_disk = saved(widget)
    assert on_disk.review[z].state == EDITED and np.array_equal(on_disk.mask[z], case.truth[z])  # a person's edit
    widget.session.accept(z + 1)
    widget.next_in_slice_order()
    assert widget.session.current_slice == z + 2  # z + 1 is accepted: skipped
    widget.previous_in_slice_order()
    assert widget.session.current_slice == z - 1  # z itself is edited: reviewed
    root, key = widget.session.store.root, widget.session.volume.key
    assert widget.close_session()  # closing saves the slice you were on
    assert AnnotationStore(root).load(key, "alice").current_slice == z - 1


def test_keys_act_even_when_the_mask_layer_is_active(qtbot, widget):
    z = widget.session.current_slice
    press(qtbot, widget, "F")
    assert widget.session.state(z) == FLAGGED
    press(qtbot, widget, "A")
    assert widget.session.state(z) == ACCEPTED and saved(widget).review[z].state == ACCEPTED
    press(qtbot, widget, "N", Qt.ShiftModifier)  # plain slice order
    assert widget.session.current_slice == z + 1
    widget.mask_layer.mode = "pan_zoom"
    press(qtbot, widget, "P", Qt.ShiftModifier)
    assert widget.session.current_slice == z - 1
    assert widget.mask_layer.mode == "pan_zoom"  # 'P' went to the review, not to the paint tool
    ranked = widget.session.next_slice(direction=1, ranked=True)
    press(qtbot, widget, "N")  # ranked by need
    assert widget.session.current_slice == ranked


def test_painting_marks_the_slice_edited_and_updates_the_volume(qtbot, widget, case):
    widget.go_to(3)
    assert widget.session.state(3) == UNREVIEWED
    widget.mask_layer.paint((3, 40, 70), 1)  # data coordinates: left lung side
    qtbot.waitUntil(lambda: widget.session.state(3) == EDITED, timeout=3000)
    assert widget.strip.states[3] == EDITED
    qtbot.waitUntil(lambda: "left 0.0 mL" not in widget.volume_label.text(), timeout=20000)
    assert widget.saver.edit_timer.isActive()
    on_disk = saved(widget)
    assert on_disk.review[3].state == EDITED and on_disk.mask[3, 40, 70] == 1


def test_undo_and_redo_restore_mask_and_state_and_are_saved(qtbot, widget):
    widget.go_to(3)
    widget.mask_layer.paint((3, 40, 70), 1)
    qtbot.waitUntil(lambda: widget.session.state(3) == EDITED, timeout=3000)
    assert saved(widget).mask[3, 40, 70] == 1
    widget.saver.stop()
    widget.go_to(5)
    press(qtbot, widget, "Z", Qt.ControlModifier)  # the session's undo, not the layer's
    assert widget.mask_layer.data[3, 40, 70] == 0
    assert widget.session.state(3) == UNREVIEWED and widget.strip.states[3] == UNREVIEWED  # the state comes back too
    assert widget.saver.edit_timer.isActive()
    on_disk = saved(widget)
    assert on_disk.mask[3, 40, 70] == 0 and on_disk.review[3].state == UNREVIEWED
    press(qtbot, widget, "Z", Qt.ControlModifier | Qt.ShiftModifier)
    on_disk = saved(widget)
    assert on_disk.mask[3, 40, 70] == 1 and on_disk.review[3].state == EDITED


def test_clicking_the_strip_jumps_to_that_slice(qtbot, widget):
    strip = widget.strip
    strip.resize(200, 24)
    cell = strip.cell_rect(7)
    qtbot.mouseClick(strip, Qt.LeftButton, pos=QPoint(cell.center().x(), 10))
    assert widget.session.current_slice == 7
    assert widget.viewer.dims.current_step[0] == 7 and strip.current == 7


def test_reopening_restores_mask_states_and_slice(qtbot, make_napari_viewer, widget, study):
    widget.go_to(2)
    widget.mask_layer.paint((2, 30, 30), 1)
    qtbot.waitUntil(lambda: widget.session.state(2) == EDITED, timeout=3000)
    widget.flag_slice()
    widget.go_to(6)
    mask, states = widget.session.annotation.mask.copy(), widget.session.states()
    assert widget.close_session()
    viewer = make_napari_viewer()
    again = ReviewWidget(viewer)
    assert again.annotator_edit.text() == "alice"  # remembered
    session = again.open_study(study[0], "alice", store_dir=study[1])
    assert np.array_equal(session.annotation.mask, mask) and mask[2].any()
    assert session.states() == states and states[2] == FLAGGED
    assert session.current_slice == 6 and viewer.dims.current_step[0] == 6
    assert again.close_session()


def test_a_failed_save_is_shown_and_the_work_kept(qtbot, widget, monkeypatch):
    widget.clear_slice()
    z = widget.session.current_slice
    widget.mask_layer.paint((z, 20, 20), 1)

    def broken(annotation):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(widget.session.store, "save", broken)
    assert widget.autosave() is False
    assert "Permission denied" in widget.status_label.text()
    assert widget.session.dirty and widget.session.annotation.mask.any()
    widget.go_to(0)  # navigation still works, the error stays visible
    assert "Could not save" in widget.status_label.text()
    qtbot.waitUntil(widget.saver.done.is_set, timeout=10000)
    monkeypatch.undo()  # the disk is back
    assert widget.autosave() and "Saved version" in widget.status_label.text()
    assert AnnotationStore(widget.session.store.root).load(widget.session.volume.key, "alice").mask[z, 20, 20] == 1


def test_actions_report_errors_instead_of_raising(widget):
    widget._run_action(widget.copy_proposal_range)  # no proposal yet
    assert "Propose" in widget.status_label.text()


def test_the_propose_worker_can_be_cancelled(qtbot, widget, case, monkeypatch):
    gate = threading.Event()
    proposer = TruthProposer(case.truth, delay=0.05, gate=gate)
    monkeypatch.setattr(_propose, "make_proposer", lambda *a, **k: proposer)
    run = widget.start_proposal()
    assert widget.propose_button.text() == "Cancel"
    qtbot.waitUntil(lambda: len(widget.session.proposal_indices) >= 1, timeout=10000)
    qtbot.mouseClick(widget.propose_button, Qt.LeftButton)  # Cancel
    assert run.cancelled
    gate.set()
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=10000)
    session = widget.session
    assert session.current_slice in session.proposal_indices
    assert len(session.proposal_indices) < 10
    assert saved(widget).proposals["truth-test"]["completed"] is False
    assert widget.propose_button.text() == "Propose"


def test_the_autosave_timer_saves_edits(qtbot, widget):
    widget.mask_layer.paint((widget.session.current_slice, 30, 30), 1)
    qtbot.waitUntil(widget.saver.edit_timer.isActive, timeout=3000)
    assert widget.saver.edit_timer.interval() == 30_000
    widget.saver.edit_timer.timeout.emit()
    qtbot.waitUntil(lambda: not widget.session.dirty, timeout=10000)
    store = AnnotationStore(widget.session.store.root)
    assert store.load(widget.session.volume.key, "alice").mask[widget.session.current_slice, 30, 30] == 1
    assert "Saved version 1" in widget.status_label.text()


def test_a_slice_change_saves_in_the_background(qtbot, widget):
    widget.go_to(2)
    widget.mask_layer.paint((2, 60, 30), 1)
    qtbot.waitUntil(lambda: widget.session.state(2) == EDITED, timeout=3000)
    widget.go_to(5)
    widget.flag_slice()  # an edit made while that save may still be running
    qtbot.waitUntil(lambda: widget.session.annotation.version >= 1 and widget.saver.done.is_set(), timeout=10000)
    store = AnnotationStore(widget.session.store.root)
    first = store.load(widget.session.volume.key, "alice")
    assert first.mask[2, 60, 30] == 1 and first.review[2].state == EDITED and first.current_slice == 5
    widget.go_to(6)  # the flag is still pending: the next slice change saves it
    qtbot.waitUntil(lambda: not widget.session.dirty, timeout=10000)
    assert store.load(widget.session.volume.key, "alice").review[5].state == FLAGGED


def test_closing_the_viewer_saves(qtbot, make_napari_viewer, study):
    viewer = make_napari_viewer(show=True)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    session = widget.open_study(study[0], "carol", store_dir=study[1])
    widget.mask_layer.paint((session.current_slice, 50, 20), 1)
    qtbot.waitUntil(lambda: session.state() == EDITED, timeout=3000)
    key = session.volume.key
    # The close event the window's close button sends (sent, not close(): under PyQt6 close() deletes
    # the Qt viewer, which make_napari_viewer's teardown then closes a second time).
    from qtpy.QtGui import QCloseEvent
    from qtpy.QtWidgets import QApplication

    QApplication.sendEvent(viewer.window._qt_window, QCloseEvent())
    saved = AnnotationStore(study[1]).load(key, "carol")
    assert saved is not None and saved.mask[session.current_slice, 50, 20] == 1
    assert widget.session is None


def test_study_opens_even_when_the_proposer_cannot_run(qtbot, make_napari_viewer, study, monkeypatch):
    from ptx_annotator.errors import PtxError

    def unavailable(*args, **kwargs):
        raise PtxError("The classical proposer is not available in this installation.")

    monkeypatch.setattr(_propose, "make_proposer", unavailable)
    widget = ReviewWidget(make_napari_viewer())
    session = widget.open_study(study[0], "dave", store_dir=study[1], propose=True)
    assert session is not None and widget.mask_layer is not None
    qtbot.waitUntil(lambda: "not available" in widget.status_label.text(), timeout=10000)
    assert widget.proposals.run is None and widget.propose_button.text() == "Propose"
    assert session.states() == [UNREVIEWED] * 10
    widget.close_session()


def test_a_study_with_two_series_offers_a_picker(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    shape, spacing = (6, 64, 64), (5.0, 4.5, 4.5)
    write_dicom_series(tmp_path / "study" / "a", make_chest_phantom(shape, spacing, side="right"), "right ptx")
    write_dicom_series(tmp_path / "study" / "b", make_chest_phantom(shape, spacing, side="left"), "left ptx")
    widget = ReviewWidget(make_napari_viewer())
    first = widget.open_study(tmp_path / "study", "erin", store_dir=tmp_path / "store")
    assert widget.series_combo.count() == 2 and not widget.series_combo.isHidden()
    assert "right ptx" in widget.series_combo.itemText(0)
    assert tuple(widget.image_layer.scale) == spacing
    widget.go_to(1)
    widget.flag_slice()
    widget.switch_series(1)
    second = widget.session
    assert second.volume.key != first.volume.key and second.volume.description == "left ptx"
    assert len(widget.viewer.layers) == 3  # the first series' layers were replaced
    store = AnnotationStore(tmp_path / "store")
    assert store.load(first.volume.key, "erin").review[1].state == FLAGGED  # saved on switching
    widget.close_session()


def test_open_command_asks_the_annotator_once_and_remembers(qapp, mock_app_model, study, tmp_path, monkeypatch):
    import napari
    from qtpy.QtWidgets import QInputDialog

    from ptx_annotator.cli import main
    from ptx_annotator.plugins.napari._qt._settings import remembered_annotator

    asked = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: asked.append(1) or ("zoe", True))
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)  # no event loop: the window "closes" at once
    ct_path, store = study
    assert main(["open", ct_path, "--store", str(store), "--no-propose", "--slice", "3"]) == 0
    assert remembered_annotator() == "zoe" and asked == [1]
    from ptx_annotator.io import load_volume

    saved = AnnotationStore(store).load(load_volume(ct_path).key, "zoe")
    assert saved is not None and saved.current_slice == 3
    assert main([ct_path, "--store", str(store), "--no-propose"]) == 0  # `ptx-annotate STUDY`
    assert asked == [1]  # remembered, not asked again


def test_the_threshold_slider_re_thresholds_the_proposal(qtbot, widget, case, monkeypatch):
    run_proposal(qtbot, widget, TruthProposer(case.truth, confidence=0.6), monkeypatch)
    z = int(np.argmax(case.truth.sum(axis=(1, 2))))
    widget.session.accept(z)
    widget.threshold_slider.setValue(70)  # above the proposer's 0.6: nothing is proposed any more
    assert widget.threshold_label.text() == "Threshold 0.70"
    assert not widget.overlay_layer.data.any() and not widget.session.proposal_mask.any()
    others = [i for i in range(10) if i != z and case.truth[i].any()]
    assert all(not widget.session.annotation.mask[i].any() for i in others)  # proposed slices follow
    assert np.array_equal(widget.session.annotation.mask[z], case.truth[z])  # the accepted one does not
    widget.threshold_slider.setValue(50)
    assert np.array_equal(widget.overlay_layer.data, outlines_of(case.truth))


def test_review_a_ct_layer_opened_from_the_sample_data(qtbot, make_napari_viewer, tmp_path, monkeypatch):
    from ptx_annotator.plugins.napari._sample_data import make_phantom_sample

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    viewer = make_napari_viewer()
    for data, kwargs, kind in make_phantom_sample():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    ct_layer = viewer.layers[0]
    widget = ReviewWidget(viewer)
    widget._run_action(widget.review_selected_layer)  # nothing typed yet: a message, no session
    assert widget.session is None and "annotator name" in widget.status_label.text()
    widget.annotator_edit.setText("frank")
    widget.review_selected_layer()  # the truth labels are selected: the CT layer is found anyway
    assert widget.image_layer is ct_layer and len(viewer.layers) == 4
    assert widget.session.volume.shape == (24, 192, 192) and widget.session.store is None
    widget.mask_layer.paint((widget.session.current_slice, 96, 40), 1)
    qtbot.waitUntil(lambda: widget.session.state() == EDITED, timeout=3000)


def test_switching_away_during_a_proposal_drops_its_late_slices(qtbot, widget, case, monkeypatch):
    gate = threading.Event()
    proposer = TruthProposer(case.truth, delay=0.02, gate=gate)
    monkeypatch.setattr(_propose, "make_proposer", lambda *a, **k: proposer)
    run = widget.start_proposal()
    qtbot.waitUntil(lambda: len(widget.session.proposal_indices) >= 1, timeout=10000)
    first = widget.session
    widget.switch_series(0)  # reopen: the running proposal belongs to the closed session
    assert run.cancelled and widget.proposals.run is None and widget.propose_button.text() == "Propose"
    gate.set()
    qtbot.waitUntil(lambda: run.worker.is_running is False, timeout=10000)
    qtbot.wait(100)
    assert widget.session is not first and not widget.session.proposal_indices
    assert "truth-test" not in saved(widget).proposals


def test_an_error_in_an_event_handler_becomes_a_message(widget, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk unplugged")

    monkeypatch.setattr(widget.session, "go_to", broken)
    widget.go_to(1)  # the dims move; the handler fails without raising
    assert "disk unplugged" in widget.status_label.text() and "still in memory" in widget.status_label.text()


def test_reopening_shows_the_kept_proposal_without_proposing_again(qtbot, make_napari_viewer, study, case,
                                                                   monkeypatch):
    from ptx_annotator.proposers.classical import ClassicalProposer

    class KeptClassical(TruthProposer):
        source_id = ClassicalProposer.source_id  # what the picker's default proposer calls itself

    made = []
    monkeypatch.setattr(_propose, "make_proposer", lambda *a, **k: made.append(1) or KeptClassical(case.truth))
    widget = ReviewWidget(make_napari_viewer())
    widget.open_study(study[0], "erin", store_dir=study[1], propose=True)
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=20000)
    assert made == [1] and widget.close_session()
    again = ReviewWidget(make_napari_viewer())
    again.open_study(study[0], "erin", store_dir=study[1], propose=True)
    assert made == [1] and again.proposals.run is None
    assert "restored" in again.status_label.text()
    assert np.array_equal(again.session.proposal_mask > 0, case.truth > 0)
    assert np.array_equal(again.overlay_layer.data, outlines_of(case.truth))
    again.close_session()
