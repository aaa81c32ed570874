"""The review room (issue 12) in a real napari viewer: every point asserts what is saved, not only shown.

Bulk accept with its confirmation, accept empty, ranked and plain navigation, undo of a bulk
action, the labour-cutting tools, version restore, the threshold slider with a proposer that has
no probabilities, the coronal / sagittal views, the shortcut help, Propose's progress and the
proposer loaded once inside the worker, the one owner, and "Review CT layer" asking first.
"""

import os
import sys
import threading

import napari
import numpy as np
import pytest
from qtpy.QtCore import Qt

from ptx_annotator.plugins.napari._qt import _dialogs, _propose, _review_views
from ptx_annotator.plugins.napari._qt._ortho import CORONAL, SAGITTAL
from ptx_annotator.plugins.napari._qt._owner import owner_of
from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget
from ptx_annotator.plugins.napari._qt._shortcuts import SHORTCUTS
from ptx_annotator.proposers.contract import SliceResult, slice_order
from ptx_annotator.review.states import ACCEPTED, EDITED, PROPOSED, UNREVIEWED
from ptx_annotator.review.store import AnnotationStore
from ptx_annotator.synthetic.phantom import make_chest_phantom


class TruthProposer:
    """Proposes the truth mask (with or without probabilities), recording the thread it ran in."""

    source_id = "truth-test"

    def __init__(self, truth, probabilities=True):
        self.truth, self.probabilities = truth, probabilities
        self.threads = []

    def describe(self):
        return {"kind": "test"}

    def iter_slices(self, volume, first_slice=None, should_cancel=None):
        self.threads.append(threading.current_thread())
        order = slice_order(volume.shape[0], first_slice)
        for done, index in enumerate(order, 1):
            probability = self.truth[index].astype(np.float32) * 0.6 if self.probabilities else None
            yield SliceResult(index, self.truth[index], probability, done, len(order))


@pytest.fixture(scope="module")
def case():
    case = make_chest_phantom(shape=(10, 96, 96), spacing=(5.0, 3.0, 3.0), side="right", fraction=0.3)
    case.truth[[0, 1, 9]] = 0  # slices a proposer finds empty
    return case


def propose(qtbot, widget, proposer, monkeypatch):
    monkeypatch.setattr(_propose, "make_proposer", lambda *a, **k: proposer)
    run = widget.start_proposal()
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=20000)
    return run


def saved(widget):
    assert widget.autosave()
    return AnnotationStore(widget.session.store.root).load(widget.session.volume.key, "alice")


def answer(monkeypatch, reply):
    asked = []
    monkeypatch.setattr(_dialogs, "confirm", lambda parent, title, text: asked.append(text) or reply)
    return asked


def test_accept_range_says_how_many_and_which_are_empty(qtbot, widget, case, monkeypatch):
    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    empty = [z for z in range(10) if not case.truth[z].any()]
    widget.range_form.first.value, widget.range_form.last.value = 0, 6
    asked = answer(monkeypatch, False)
    assert widget.accept_range() == [] and saved(widget).review.states() == [PROPOSED] * 10  # "no": nothing
    in_range_empty = [z for z in empty if z <= 6]
    assert "Accept 7 proposed slices" in asked[0] and f"{len(in_range_empty)} of them are empty" in asked[0]
    answer(monkeypatch, True)
    qtbot.keyClick(widget.viewer.window._qt_viewer.canvas.native, Qt.Key_A, Qt.ShiftModifier)
    states = saved(widget).review.states()
    assert states[:7] == [ACCEPTED] * 7 and states[7:] == [PROPOSED] * 3
    widget.undo()  # one undo takes the whole bulk action back
    assert saved(widget).review.states() == [PROPOSED] * 10


def test_accept_empty_proposed_in_one_go(qtbot, widget, case, monkeypatch):
    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    empty = [z for z in range(10) if not case.truth[z].any()]
    assert empty, "the phantom has slices without pneumothorax"
    asked = answer(monkeypatch, True)
    assert widget.accept_empty() == empty
    assert f"Accept {len(empty)} empty proposed slices" in asked[0]
    on_disk = saved(widget)
    assert [z for z, s in enumerate(on_disk.review.states()) if s == ACCEPTED] == empty
    assert all(on_disk.review[z].state == PROPOSED for z in range(10) if z not in empty)


def test_the_slider_is_off_for_a_proposal_without_probabilities_and_changes_nothing(qtbot, widget, case,
                                                                                    monkeypatch):
    """The regression of issue 12: dragging the slider wiped a classical proposal and the mask."""
    propose(qtbot, widget, TruthProposer(case.truth, probabilities=False), monkeypatch)
    before = saved(widget)
    assert not widget.threshold_slider.isEnabled()
    assert before.proposals["truth-test"]["with_probabilities"] is False
    widget.threshold_slider.setValue(95)  # even if it were moved, nothing changes
    after = saved(widget)
    assert np.array_equal(after.mask, before.mask) and np.array_equal(after.mask, case.truth)
    assert np.array_equal(widget.session.proposal_mask, case.truth)
    assert not (widget.overlay_layer.data.astype(bool) & ~case.truth.astype(bool)).any()  # its outline


def test_the_real_classical_proposer_leaves_the_slider_off(qtbot, widget):
    widget.start_proposal()  # the picker's default: the classical proposer, no probabilities
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=60000)
    mask = saved(widget).mask.copy()
    assert not widget.threshold_slider.isEnabled()
    widget.threshold_slider.setValue(95)
    assert np.array_equal(saved(widget).mask, mask)


def test_the_slider_never_changes_reviewed_slices(qtbot, widget, case, monkeypatch):
    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    widget.go_to(busy)
    widget.accept_slice()
    assert widget.threshold_slider.isEnabled()
    widget.threshold_slider.setValue(80)  # above 0.6: the proposal empties
    on_disk = saved(widget)
    assert np.array_equal(on_disk.mask[busy], case.truth[busy]) and on_disk.review[busy].state == ACCEPTED
    assert not on_disk.mask[[z for z in range(10) if z != busy]].any()


def test_n_goes_to_the_most_needed_slice_and_shift_n_in_order(qtbot, widget, case, monkeypatch):
    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    session = widget.session
    ranked_order = session.ranker.order(session.states())
    assert ranked_order[-1] == 0  # the empty first slice needs review least
    widget.go_to(ranked_order[2])
    widget.next_needing_review()
    assert session.current_slice == ranked_order[3]  # by need, not by position
    widget.previous_needing_review()
    assert session.current_slice == ranked_order[2]
    widget.go_to(0)
    widget.next_needing_review()  # past the least needed: back to the most needed
    assert session.current_slice == ranked_order[0]
    widget.go_to(0)
    widget.next_in_slice_order()
    assert session.current_slice == 1
    assert saved(widget).current_slice == 1


def test_fill_between_interpolates_and_marks_edited(qtbot, widget):
    session = widget.session
    for z in (2, 6):
        widget.go_to(z)
        session.brush([(40, 30), (40, 50)], size=10)
    widget.range_form.first.value, widget.range_form.last.value = 2, 6
    qtbot.keyClick(widget.viewer.window._qt_viewer.canvas.native, Qt.Key_I)
    on_disk = saved(widget)
    assert all(on_disk.mask[z, 40, 40] == 1 and on_disk.review[z].state == EDITED for z in (3, 4, 5))
    widget.undo()
    on_disk = saved(widget)
    assert not on_disk.mask[3:6].any() and on_disk.review[4].state == UNREVIEWED


def test_the_hu_limited_brush_paints_only_air(qtbot, widget, case):
    hu = case.volume.hu
    z = widget.session.current_slice
    air = tuple(np.argwhere(hu[z] < -950)[len(np.argwhere(hu[z] < -950)) // 2])
    tissue = tuple(np.argwhere((hu[z] > -100) & (hu[z] < 200))[0])
    qtbot.keyClick(widget.viewer.window._qt_viewer.canvas.native, Qt.Key_U)
    assert widget.hu_check.isChecked()
    widget.mask_layer.brush_size = 1
    widget.mask_layer.paint((z, *tissue), 1)
    widget.mask_layer.paint((z, *air), 1)
    qtbot.waitUntil(lambda: widget.session.state(z) == EDITED, timeout=3000)
    qtbot.wait(50)
    on_disk = saved(widget)
    assert on_disk.mask[(z, *air)] == 1 and on_disk.mask[(z, *tissue)] == 0
    assert on_disk.review[z].state == EDITED


def test_a_stroke_shows_as_napari_drew_it_and_an_hu_limited_one_as_the_session_kept_it(qtbot, widget, case,
                                                                                        monkeypatch):
    hu, layer = case.volume.hu, widget.mask_layer
    z = widget.session.current_slice
    airs = np.argwhere(hu[z] < -950)
    air, tissue = tuple(airs[len(airs) // 2]), tuple(np.argwhere((hu[z] > -100) & (hu[z] < 200))[0])
    refreshed = []  # refreshes asked for by this plugin (napari refreshes the layer itself after a stroke)
    real_refresh, napari_dir = layer.refresh, os.path.dirname(napari.__file__)

    def refresh(*args, **kwargs):
        if not sys._getframe(1).f_code.co_filename.startswith(napari_dir):
            refreshed.append(z)
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr(layer, "refresh", refresh)
    layer.brush_size = 1
    layer.paint((z, *air), 1)
    qtbot.waitUntil(lambda: widget.session.state(z) == EDITED, timeout=3000)
    assert layer._slice.image.view[air] != 0  # on the canvas as napari drew it ...
    assert refreshed == []  # ... so the session's bookkeeping re-slices nothing (a slice change after an edit)
    qtbot.keyClick(widget.viewer.window._qt_viewer.canvas.native, Qt.Key_U)
    assert widget.hu_check.isChecked()
    layer.paint((z, *tissue), 1)
    qtbot.waitUntil(lambda: bool(refreshed), timeout=3000)  # the session took soft tissue out again: shown so
    assert layer._slice.image.view[tissue] == 0 and layer._slice.image.view[air] != 0
    on_disk = saved(widget)
    assert on_disk.mask[(z, *air)] == 1 and on_disk.mask[(z, *tissue)] == 0


def test_a_click_grows_the_pleural_air_region(qtbot, widget, case):
    from types import SimpleNamespace

    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    seed = tuple(np.argwhere(case.truth[busy])[0])
    widget.go_to(busy)
    qtbot.keyClick(widget.viewer.window._qt_viewer.canvas.native, Qt.Key_G)
    assert widget.grow_check.isChecked() and widget.mask_layer.mode == "pan_zoom"  # the click will not paint
    position = widget.mask_layer.data_to_world((busy, *seed))
    widget._on_canvas_click(widget.mask_layer, SimpleNamespace(position=position))
    assert "Grew the air region" in widget.status_label.text(), widget.status_label.text()
    on_disk = saved(widget)
    grown = on_disk.mask > 0
    assert grown[(busy, *seed)] and grown.sum() > 50
    assert all(on_disk.review[z].state == EDITED for z in np.flatnonzero(grown.any(axis=(1, 2))))
    assert not widget.grow_check.isChecked() and widget.mask_layer.mode == "paint"


def test_copy_the_proposal_into_a_range(qtbot, widget, case, monkeypatch):
    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    for z in range(10):
        widget.session.clear(z)
    widget.range_form.first.value, widget.range_form.last.value = 3, 5
    qtbot.keyClick(widget.viewer.window._qt_viewer.canvas.native, Qt.Key_C)
    on_disk = saved(widget)
    assert np.array_equal(on_disk.mask[3:6], case.truth[3:6]) and not on_disk.mask[:3].any()
    assert [on_disk.review[z].state for z in (3, 4, 5)] == [EDITED] * 3


def test_a_version_is_restored_from_the_list(qtbot, widget):
    session = widget.session
    session.brush([(30, 30)], size=6)
    assert widget.autosave()
    first_mask = session.annotation.mask.copy()
    session.clear()
    assert widget.autosave()
    assert widget.versions_list.count() >= 2
    rows = [widget.versions_list.item(i).data(_review_views.ROLE_VERSION) for i in range(widget.versions_list.count())]
    target = [v for v in rows if v != max(rows)][0]
    widget.versions_list.setCurrentRow(rows.index(target))
    widget.restore_selected_version()
    assert np.array_equal(widget.session.annotation.mask, first_mask)
    on_disk = AnnotationStore(widget.session.store.root).load(widget.session.volume.key, "alice")
    assert np.array_equal(on_disk.mask, first_mask) and on_disk.version > max(rows)
    assert widget.versions_list.count() == len(rows) + 1
    assert widget.mask_layer.data is widget.session.annotation.mask


def test_coronal_and_sagittal_views_show_fill_and_outline_and_pick_slices(qtbot, widget, case, monkeypatch):
    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    ortho = widget.ortho
    z, y, x = np.argwhere(case.truth)[len(np.argwhere(case.truth)) // 2]
    ortho.sliders[CORONAL].setValue(int(y))
    ortho.sliders[SAGITTAL].setValue(int(x))
    for axis in (CORONAL, SAGITTAL):
        picture = ortho.picture(axis).astype(int)
        assert picture.shape[0] == 10
        red = (picture[..., 0] > picture[..., 1] + 60) & (picture[..., 0] > picture[..., 2] + 60)
        amber = (picture[..., 0] > 200) & (picture[..., 1] > 150) & (picture[..., 2] < 60)
        assert red.any() and amber.any()  # the reader's fill and the proposal's outline
    widget.session.clear(int(z))
    assert (ortho.picture(CORONAL)[9 - int(z)] != ortho.picture(CORONAL)[9 - int(z) - 1]).any()
    seen = []
    ortho.sliceClicked.connect(seen.append)
    ortho._on_click(CORONAL, 0.5, 0.0)  # the top row is the most superior slice
    assert seen == [9] and widget.session.current_slice == 9 and saved(widget).current_slice == 9


def test_the_shortcut_help_lists_every_key(qtbot, widget):
    assert not widget.help_panel.isVisible()
    widget.toggle_help()
    assert not widget.help_panel.isHidden()
    text = widget.help_panel.text()
    for key, description, method in SHORTCUTS:
        assert description in text and callable(getattr(widget, method))


def test_propose_progress_moves_and_the_proposer_loads_once_in_the_worker(qtbot, widget, case, monkeypatch):
    proposer = TruthProposer(case.truth)
    made = []
    monkeypatch.setattr(_propose, "make_proposer", lambda *a, **k: made.append(threading.current_thread()) or proposer)
    seen = []
    widget.session.events.proposal_changed.connect(  # connected before the worker starts: nothing is missed
        lambda indices: seen.append(widget.proposals.run.progress.n) if widget.proposals.run is not None else None)
    widget.start_proposal()
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=20000)
    # the bar's value as each slice arrives (it counts the slice right after): it moves during the run
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 9 and len({v for v in seen if 0 < v < 10}) >= 5
    assert made and made[0] is not threading.main_thread() and proposer.threads[0] is not threading.main_thread()
    widget.start_proposal()
    qtbot.waitUntil(lambda: widget.proposals.run is None, timeout=20000)
    assert len(made) == 1 and len(proposer.threads) == 2  # cached: loaded once, used twice
    assert saved(widget).proposals["truth-test"]["completed"] is True


def test_the_owner_publishes_the_session_and_its_store(widget, study):
    owner = owner_of(widget.viewer)
    assert owner.session is widget.session and owner.image_layer is widget.image_layer
    assert owner.session_for(widget.session.volume.key) is widget.session
    assert widget.image_layer.metadata["ptx_store_root"] == str(study[1])
    assert widget.close_session() and owner.session is None


def test_volumes_per_side_follow_the_core_side_rule(qtbot, widget, case, monkeypatch):
    from ptx_annotator.quantify import quantify

    propose(qtbot, widget, TruthProposer(case.truth), monkeypatch)
    qtbot.waitUntil(lambda: widget.views.volume_ml() is not None, timeout=60000)
    numbers = quantify(widget.session.annotation.mask, widget.session.volume)
    shown = widget.views.volume_ml()
    assert shown["right"] == pytest.approx(numbers.volume_right_ml) and shown["left"] == pytest.approx(numbers.volume_left_ml)
    assert f"right {numbers.volume_right_ml:.1f} mL" in widget.volume_label.text()
    qtbot.waitUntil(lambda: widget.case_label.text().startswith("Proposal:"), timeout=60000)
    assert "right" in widget.case_label.text()


def test_review_ct_layer_asks_where_to_save(qtbot, make_napari_viewer, study, monkeypatch):
    from ptx_annotator.plugins.napari._reader import get_reader
    from ptx_annotator.review.store import store_root_for

    ct_path = study[0]
    viewer = make_napari_viewer()
    for data, kwargs, kind in get_reader(ct_path)(ct_path):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = ReviewWidget(viewer)
    widget.annotator_edit.setText("gina")
    asked = []
    monkeypatch.setattr(_dialogs, "choose_store", lambda parent, proposed: asked.append(proposed) or None)
    widget.review_selected_layer()
    assert asked == [str(store_root_for(ct_path))] and widget.session.store is None
    widget.session.flag()
    assert widget.close_session() and not store_root_for(ct_path).exists()  # "memory only": nothing written
    chosen = study[1] / "chosen"
    monkeypatch.setattr(_dialogs, "choose_store", lambda parent, proposed: str(chosen))
    widget.review_selected_layer()
    widget.session.flag()
    assert widget.autosave() and widget.session.store.root == chosen
    assert AnnotationStore(chosen).load(widget.session.volume.key, "gina").review[widget.session.current_slice].state == "flagged"
    widget.close_session()
