"""The review workflow without a viewer: actions, proposals, thresholds, volumes per side, saving."""

import numpy as np
import pytest

from ptx_annotator.errors import PtxError
from ptx_annotator.synthetic.phantom import make_chest_phantom
from ptx_annotator.proposers.contract import SliceResult, slice_order
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED, UNREVIEWED
from ptx_annotator.review.session import ReviewSession
from ptx_annotator.review.store import AnnotationStore


class TruthProposer:
    """Proposes the phantom's truth mask; probability 0.8 inside it, 0.3 in a ring around it."""

    source_id = "truth-test"

    def __init__(self, truth):
        self.truth = truth

    def describe(self):
        return {"kind": "test"}

    def iter_slices(self, volume, first_slice=None, should_cancel=None):
        from scipy.ndimage import binary_dilation

        order = slice_order(volume.shape[0], first_slice)
        for done, index in enumerate(order, 1):
            if should_cancel is not None and should_cancel():
                return
            inside = self.truth[index] > 0
            ring = binary_dilation(inside, iterations=2) & ~inside
            probability = np.where(inside, 0.8, np.where(ring, 0.3, 0.0)).astype(np.float32)
            yield SliceResult(index, inside.astype(np.uint8), probability, done, len(order))


@pytest.fixture(scope="module")
def case():
    return make_chest_phantom(shape=(8, 96, 96), spacing=(5.0, 3.0, 3.0), side="right", fraction=0.3)


@pytest.fixture
def store(tmp_path):
    store = AnnotationStore(tmp_path / "store")
    yield store
    store.close()


def proposed(session, case):
    proposer = TruthProposer(case.truth)
    session.begin_proposal(proposer.source_id, proposer.describe())
    for result in proposer.iter_slices(session.volume, session.current_slice):
        session.add_proposal_slice(result)
    session.finish_proposal(True)
    return session


def test_fresh_session_starts_mid_series_with_an_empty_mask(case, store):
    session = ReviewSession.open(case.volume, store, "alice")
    assert session.current_slice == 4
    assert session.states() == [UNREVIEWED] * 8
    assert not session.annotation.mask.any()
    assert session.volume_ml()["total"] == 0


def test_proposal_fills_untouched_slices_and_spares_reviewed_ones(case, store):
    session = ReviewSession.open(case.volume, store, "alice")
    session.annotation.mask[2, 10:20, 10:20] = 1
    session.mark_edited([2])
    session.flag(3)
    proposed(session, case)
    assert session.state(2) == EDITED and session.annotation.mask[2, 10:20, 10:20].all()
    assert not np.array_equal(session.annotation.mask[2], case.truth[2])
    assert session.state(3) == FLAGGED and not session.annotation.mask[3].any()
    for z in (0, 1, 4, 5, 6, 7):
        assert session.state(z) == PROPOSED
        assert np.array_equal(session.annotation.mask[z], case.truth[z])
    assert session.annotation.review[4].source == "truth-test"
    assert session.annotation.proposals["truth-test"]["completed"] is True


def test_accept_flag_clear_copy_change_state_and_mask(case, store):
    session = proposed(ReviewSession.open(case.volume, store, "alice"), case)
    z = session.current_slice
    session.accept()
    assert session.state(z) == ACCEPTED
    session.flag()
    assert session.state(z) == FLAGGED
    session.clear()
    assert session.state(z) == EDITED and not session.annotation.mask[z].any()
    session.copy_proposal()  # a person chose the proposal for this slice: their edit
    assert session.state(z) == EDITED and session.annotation.review[z].source == "truth-test"
    assert np.array_equal(session.annotation.mask[z], case.truth[z])
    with pytest.raises(PtxError):
        session.accept(99)


def test_copy_proposal_without_a_proposal_is_a_clear_error(case, store):
    session = ReviewSession.open(case.volume, store, "alice")
    with pytest.raises(PtxError, match="Propose"):
        session.copy_proposal()


def test_accept_an_unreviewed_slice_takes_the_proposal_when_the_mask_is_empty(case):
    session = ReviewSession.open(case.volume, None, "alice")
    session.proposal_source = "truth-test"
    session.proposal_mask[5] = case.truth[5]
    session.proposal_indices.add(5)
    session.accept(5)
    assert session.state(5) == ACCEPTED
    assert np.array_equal(session.annotation.mask[5], case.truth[5])


def test_next_and_previous_skip_reviewed_slices(case, store):
    session = ReviewSession.open(case.volume, store, "alice")
    session.accept(5)
    session.mark_edited([6])
    assert session.next_needing_review(1) == 7 and session.current_slice == 7
    assert session.next_needing_review(1) is None and session.current_slice == 7
    assert session.next_needing_review(-1) == 4
    session.flag(3)
    assert session.next_needing_review(-1) == 3  # flagged slices still need a look


def test_threshold_reshapes_proposed_slices_only(case, store):
    session = proposed(ReviewSession.open(case.volume, store, "alice"), case)
    busy = int(np.argmax(case.truth.sum(axis=(1, 2))))
    other = (busy + 1) % 8
    session.accept(other)
    accepted_mask = session.annotation.mask[other].copy()
    changed = session.set_threshold(0.25)  # the 0.3 ring joins the proposal
    assert busy in changed
    assert session.proposal_mask[busy].sum() > case.truth[busy].sum()
    assert np.array_equal(session.annotation.mask[busy], session.proposal_mask[busy])
    assert np.array_equal(session.annotation.mask[other], accepted_mask)
    session.set_threshold(0.9)  # above every probability: nothing proposed
    assert not session.proposal_mask.any()


def test_volume_per_side_follows_the_affine(case):
    session = proposed(ReviewSession.open(case.volume, None, "alice"), case)
    ml = session.volume_ml()
    expected = case.truth.sum() * case.volume.voxel_volume_ml
    assert ml["right"] == pytest.approx(expected) and ml["left"] == 0
    flipped = make_chest_phantom(shape=(8, 96, 96), spacing=(5.0, 3.0, 3.0), side="left", fraction=0.3)
    mirrored = flipped.volume
    mirrored.affine = mirrored.affine.copy()
    mirrored.affine[0, 2] *= -1  # x index now runs to patient right: the same voxels are on the other side
    mirrored.affine[0, 3] *= -1
    session = proposed(ReviewSession.open(mirrored, None, "bob"), flipped)
    assert session.volume_ml()["right"] == pytest.approx(flipped.truth.sum() * mirrored.voxel_volume_ml)
    assert session.volume_ml()["left"] == 0


def test_opening_a_painted_mask_segments_nothing_until_sides_are_asked_for(case, tmp_path, monkeypatch):
    from ptx_annotator import anatomy as anatomy_module
    from ptx_annotator.review.store import Annotation

    calls = []
    real = anatomy_module.segment_thorax
    monkeypatch.setattr(anatomy_module, "segment_thorax", lambda volume: calls.append(1) or real(volume))
    annotation = Annotation.empty(case.volume, "alice")
    annotation.mask[:] = case.truth
    session = ReviewSession(case.volume, annotation, None)
    assert calls == [] and not session.sides_known and session.anatomy is None
    expected = case.truth.sum() * case.volume.voxel_volume_ml
    shown = session.volume_ml(segment=False)  # a viewer waiting for its worker: total now, sides later
    assert shown == {"right": None, "left": None, "total": pytest.approx(expected)}
    session.set_anatomy(real(case.volume))  # handed over (the viewer's worker): still no segmentation here
    assert calls == [] and session.sides_known
    assert session.volume_ml(segment=False)["right"] == pytest.approx(expected)
    again = ReviewSession(case.volume, annotation, None)
    assert again.volume_ml()["right"] == pytest.approx(expected) and calls == [1]  # asked for: segmented once


def test_slice_change_autosaves_and_reopening_restores(case, tmp_path):
    store = AnnotationStore(tmp_path / "store")
    session = proposed(ReviewSession.open(case.volume, store, "alice"), case)
    session.accept(4)
    session.flag(1)
    session.annotation.mask[6, 40:50, 60:70] = 1
    session.mark_edited([6])
    session.go_to(6)
    assert not session.dirty and session.annotation.version == 1
    states, mask = session.states(), session.annotation.mask.copy()
    assert session.close()
    store.close()
    reopened = ReviewSession.open(case.volume, AnnotationStore(tmp_path / "store"), "alice")
    assert reopened.states() == states
    assert np.array_equal(reopened.annotation.mask, mask)
    assert reopened.current_slice == 6
    assert reopened.volume_ml()["total"] == pytest.approx(mask.sum() * case.volume.voxel_volume_ml)
    reopened.close()


def test_failed_save_keeps_the_work_and_says_why(case, store, monkeypatch):
    session = ReviewSession.open(case.volume, store, "alice")
    session.clear(2)
    session.annotation.mask[2, 5:9, 5:9] = 1
    session.mark_edited([2])

    def broken_save(annotation, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save", broken_save)
    assert session.save() is False
    assert "No space left" in session.last_save_error and "memory" in session.last_save_error
    assert session.dirty and session.annotation.mask[2, 5:9, 5:9].all()
    assert session.go_to(3) and session.current_slice == 3  # moving on still works
    monkeypatch.undo()
    assert session.save() and session.last_save_error is None
    assert store.load(case.volume.key, "alice").review[2].state == EDITED


def test_undone_paint_is_noticed_on_slice_change(case, store):
    session = ReviewSession.open(case.volume, store, "alice")
    session.save()
    session.annotation.mask[4, 30:40, 30:40] = 1  # changed behind the session's back
    session.go_to(5)
    assert session.annotation.version == 2  # saved because the mask changed
    assert session.volume_ml()["total"] > 0


def test_changes_made_while_a_snapshot_is_written_stay_pending(case, store):
    session = ReviewSession.open(case.volume, store, "alice")
    session.flag(1)
    snapshot = session.snapshot()
    session.flag(2)  # made while the snapshot is being written elsewhere
    assert session.write_snapshot(snapshot) is None
    assert session.finish_save(snapshot, None)
    assert session.dirty and session.annotation.version == 1
    on_disk = store.load(case.volume.key, "alice")
    assert on_disk.review[1].state == FLAGGED and on_disk.review[2].state == UNREVIEWED
    assert session.save() and not session.dirty
    assert store.load(case.volume.key, "alice").review[2].state == FLAGGED


def test_the_running_volume_per_side_is_quantifys(case):
    """One side rule: the viewer's count and quantify agree, also for a region across the midline."""
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.quantify import quantify

    anatomy = segment_thorax(case.volume)
    session = ReviewSession.open(case.volume, None, "alice", anatomy=anatomy)
    z = 4
    session.annotation.mask[z, 20:24, 30:52] = 1  # across the middle of the image
    session.annotation.mask[z, 60:62, 70:80] = 1  # a separate region on the left
    session.annotation.mask[5] = case.truth[5]
    session.mark_edited([z, 5])
    volumes = session.volume_ml()
    measured = quantify(session.annotation.mask, case.volume, anatomy)
    assert volumes["right"] == pytest.approx(measured.volume_right_ml)
    assert volumes["left"] == pytest.approx(measured.volume_left_ml)
    assert volumes["right"] > 0 and volumes["left"] > 0


def test_the_proposal_is_kept_with_the_mask_and_shown_again_on_reopening(case, store):
    session = proposed(ReviewSession.open(case.volume, store, "alice"), case)
    assert session.save()
    path = store.proposal_path(case.volume.key, "alice")
    written = path.stat().st_mtime_ns
    session.flag(1)
    assert session.save()
    assert path.stat().st_mtime_ns == written  # an unchanged proposal is not written again
    session.close()
    again = ReviewSession.open(case.volume, store, "alice")
    assert np.array_equal(again.proposal_mask, case.truth > 0)
    assert again.proposal_source == "truth-test" and again.proposal_params == {"kind": "test"}
    assert again.states() == session.states()
    again.copy_proposal(2)  # a restored proposal works like a fresh one
    assert np.array_equal(again.annotation.mask[2], case.truth[2] > 0)
    for source in ("other-test", "truth-test"):  # a source proposing again is the newest one
        again.begin_proposal(source, {"kind": source})
        again.finish_proposal(True)
    assert again.save() and again.close()
    third = ReviewSession.open(case.volume, store, "alice")
    assert third.proposal_source == "truth-test" and third.proposal_params == {"kind": "truth-test"}
    third.close()


def test_a_damaged_or_foreign_kept_proposal_is_ignored(case, store):
    session = proposed(ReviewSession.open(case.volume, store, "alice"), case)
    assert session.save() and session.close()
    path = store.proposal_path(case.volume.key, "alice")
    path.write_bytes(b"not a nifti")
    again = ReviewSession.open(case.volume, store, "alice")
    assert again.proposal_source is None and not again.proposal_mask.any()
    again.close()
    store.save_proposal(case.volume.key, "alice", np.ones((3, 96, 96), np.uint8), case.volume.affine)
    assert store.load_proposal(case.volume, "alice") is None  # another grid
