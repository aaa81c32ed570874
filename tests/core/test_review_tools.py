"""Bulk review, ranked navigation, undo, events and the labour-cutting tools of ReviewSession,
each checked on what the store holds afterwards."""

import numpy as np
import pytest

from ptx_annotator.errors import PtxError
from ptx_annotator.proposers.contract import SliceResult
from ptx_annotator.review.ranking import SliceRanker, next_in_order
from ptx_annotator.review.session import ReviewSession
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED, UNREVIEWED, review_provenance
from ptx_annotator.review.store import AnnotationStore
from ptx_annotator.review.tools import PLEURAL_AIR_HU, disk_stroke, interpolate_slices
from ptx_annotator.synthetic.phantom import make_chest_phantom


@pytest.fixture(scope="module")
def case():
    return make_chest_phantom(shape=(12, 96, 96), spacing=(5.0, 3.0, 3.0), side="right", fraction=0.3)


@pytest.fixture(scope="module")
def truth(case):
    """The phantom's pneumothorax with the first and last two slices left empty."""
    truth = (case.truth > 0).astype(np.uint8)
    truth[:2] = truth[-2:] = 0
    return truth


@pytest.fixture
def store(tmp_path):
    store = AnnotationStore(tmp_path / "store")
    yield store
    store.close()


def propose(session, masks, probabilities=None, source="test-proposer"):
    session.begin_proposal(source, {"kind": "test"}, with_probabilities=probabilities is not None)
    for z in range(session.n_slices):
        p = None if probabilities is None else probabilities[z]
        session.add_proposal_slice(SliceResult(z, masks[z].astype(np.uint8), p, z + 1, session.n_slices))
    session.finish_proposal(True)


def saved(store, case, annotator="alice"):
    return store.load(case.volume.key, annotator)


def test_bulk_accept_and_empty_proposed_slices_are_saved(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    propose(session, truth)
    empty = [z for z in range(12) if not truth[z].any()]
    assert session.proposed_slices() == list(range(12))
    assert session.empty_proposed_slices() == empty and empty
    seen = []
    session.events.states_changed.connect(seen.append)
    assert session.accept_empty_proposed() == empty
    assert seen == [empty]  # one event for the whole action
    assert session.proposed_slices() == [z for z in range(12) if z not in empty]
    session.accept_slices(range(12))
    assert session.save()
    on_disk = saved(store, case)
    assert on_disk.review.states() == [ACCEPTED] * 12
    assert np.array_equal(on_disk.mask, truth > 0)
    prov = review_provenance(on_disk.review, on_disk.mask)
    assert prov["reviewed_slices"] == 12 and prov["proposed_slices"] == 0 and not prov["mostly_unreviewed"]


def test_undo_restores_mask_and_previous_state_and_redo_repeats(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    propose(session, truth)
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    session.annotation.mask[z, :5, :5] = 1  # a stroke painted straight into the shared array
    session.mark_edited([z])
    assert session.state(z) == EDITED
    assert session.undo() == [z]
    assert session.state(z) == PROPOSED and np.array_equal(session.annotation.mask[z], truth[z] > 0)
    assert session.save() and saved(store, case).review[z].state == PROPOSED
    session.redo()
    assert session.state(z) == EDITED and session.annotation.mask[z, :5, :5].all()
    session.accept_slices([1, 2, 3])
    session.undo()
    assert [session.state(i) for i in (1, 2, 3)] == [PROPOSED] * 3
    assert session.save() and saved(store, case).review[z].state == EDITED


def test_a_viewers_own_undo_brings_the_state_back(case, truth):
    session = ReviewSession.open(case.volume, None, "alice")
    propose(session, truth)
    z = 6
    before = session.annotation.mask[z].copy()
    session.annotation.mask[z, 10:20, 10:20] = 1
    session.mark_edited([z])
    session.annotation.mask[z] = before  # napari's Ctrl+Z put the pixels back
    assert session.restore_slice_state(z) == PROPOSED
    session.annotation.mask[z, 0:3, 0:3] = 1  # a change nobody recorded counts as an edit
    assert session.restore_slice_state(z) == EDITED


def test_events_name_the_slices_that_changed(case, truth):
    session = ReviewSession.open(case.volume, None, "alice")
    masks, proposals, states = [], [], []
    session.events.mask_changed.connect(masks.append)
    session.events.proposal_changed.connect(proposals.append)
    session.events.states_changed.connect(states.append)
    session.clear(3)
    assert states[-1] == [3] and masks[-1] == [3]
    session.begin_proposal("p", {}, with_probabilities=False)
    assert proposals[-1] == list(range(12))
    session.add_proposal_slice(SliceResult(5, truth[5], None, 1, 12))
    assert proposals[-1] == [5] and masks[-1] == [5] and states[-1] == [5]


def test_threshold_without_probabilities_changes_nothing(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    propose(session, truth)  # like the classical proposer: no probabilities
    assert not session.has_probabilities
    mask = session.annotation.mask.copy()
    assert session.set_threshold(0.95) == []
    assert np.array_equal(session.annotation.mask, mask) and session.threshold == 0.5


def test_threshold_never_changes_reviewed_or_flagged_slices(case, truth):
    session = ReviewSession.open(case.volume, None, "alice")
    probabilities = np.where(truth > 0, 0.8, 0.0).astype(np.float32)
    propose(session, truth, probabilities)
    busy = [z for z in range(12) if truth[z].any()]
    session.accept(busy[0])
    session.flag(busy[1])
    kept = session.annotation.mask[busy[:2]].copy()
    assert set(session.set_threshold(0.9)) == set(busy)
    assert np.array_equal(session.annotation.mask[busy[:2]], kept)
    assert not session.annotation.mask[busy[2]].any()  # a proposed slice follows the threshold


def test_ranked_next_slice_goes_to_the_uncertain_slice_first(case, truth):
    session = ReviewSession.open(case.volume, None, "alice")
    probabilities = np.where(truth > 0, 0.95, 0.0).astype(np.float32)
    busy = [z for z in range(12) if truth[z].any()]
    middle = busy[len(busy) // 2]
    probabilities[middle][truth[middle] > 0] = 0.55  # the model hesitates here
    propose(session, truth, probabilities)
    session.accept_empty_proposed()
    # the slices where the pneumothorax starts and ends rank high (large change): reviewed here
    session.accept_slices([busy[0], busy[-1]])
    assert session.next_slice(0, ranked=True) == middle
    assert session.next_slice(0, ranked=False) == busy[1]
    order = session.ranker.order(session.states())
    assert next_in_order(order, order[0], 1) == order[1]
    assert next_in_order(order, order[1], -1) == order[0]
    assert next_in_order(order, order[-1], 1) is None  # past the least needed slice ...
    assert next_in_order(order, order[-1], 1, wrap=True) == order[0]  # ... or back to the most needed
    assert session.next_slice(order[-1], ranked=True) == order[0] and session.next_slice(order[0], -1) == order[-1]


def test_ranker_scores_a_slice_that_breaks_with_its_neighbours_higher():
    mask = np.zeros((5, 20, 20), np.uint8)
    mask[:, 5:15, 5:15] = 1
    mask[2] = 0
    mask[2, 0:4, 0:4] = 1
    scores = SliceRanker(mask).scores(["proposed"] * 5)
    assert int(np.argmax(scores)) == 2


def test_brush_and_hu_limited_brush(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    z = 6
    hu = np.asarray(case.volume.hu[z])
    air = (hu >= PLEURAL_AIR_HU[0]) & (hu <= PLEURAL_AIR_HU[1]) & (truth[z] > 0)
    y, x = np.argwhere(air)[len(np.argwhere(air)) // 2]
    points = [(y, x - 20), (y, x + 20)]
    painted = session.brush(points, index=z, size=12, hu_range=PLEURAL_AIR_HU)
    stroke = disk_stroke(hu.shape, points, 12)
    assert 0 < painted < stroke.sum()
    inside = session.annotation.mask[z] > 0
    assert inside.any() and ((hu[inside] >= PLEURAL_AIR_HU[0]) & (hu[inside] <= PLEURAL_AIR_HU[1])).all()
    session.brush(points, index=z, size=12, erase=True)
    assert not session.annotation.mask[z].any()
    # a stroke made by the viewer straight into the array, limited afterwards
    session.annotation.mask[z][stroke] = 1
    limited = session.limit_stroke_to_hu(index=z)
    assert np.array_equal(limited > 0, stroke & (hu >= PLEURAL_AIR_HU[0]) & (hu <= PLEURAL_AIR_HU[1]))
    assert session.save()
    on_disk = saved(store, case)
    assert on_disk.review[z].state == EDITED and np.array_equal(on_disk.mask[z] > 0, limited > 0)
    session.undo()
    assert not session.annotation.mask[z].any()  # back to before the stroke, not to its unlimited form


def test_fill_between_interpolates_skipped_slices(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    busy = [z for z in range(12) if truth[z].any()]
    keys = [busy[0], busy[0] + 3, busy[0] + 6]  # the annotator drew every third slice
    for z in keys:
        session.annotation.mask[z] = truth[z]
        session.mark_edited([z])
    filled = session.fill_between(keys[0], keys[-1])
    assert filled == [z for z in range(keys[0] + 1, keys[-1]) if z not in keys]
    from ptx_annotator.metrics import dice

    for z in filled:
        assert session.state(z) == EDITED
        assert dice(session.annotation.mask[z], truth[z]) > 0.8
    for z in keys:
        assert np.array_equal(session.annotation.mask[z], truth[z])  # drawn slices are kept
    assert session.save()
    on_disk = saved(store, case)
    assert [on_disk.review[z].state for z in filled] == [EDITED] * len(filled)
    assert np.array_equal(on_disk.mask[filled] > 0, session.annotation.mask[filled] > 0)
    session.undo()
    assert not session.annotation.mask[filled].any() and session.state(filled[0]) == UNREVIEWED


def test_interpolation_of_two_discs_lies_between_them():
    a = disk_stroke((40, 40), [(20, 10)], 10)
    b = disk_stroke((40, 40), [(20, 30)], 10)
    middle = interpolate_slices(a, b, 1, (1.0, 1.0))[0]
    ys, xs = np.nonzero(middle)
    assert middle.sum() > 0.5 * a.sum() and abs(xs.mean() - 20) < 2
    tapering = interpolate_slices(a, np.zeros_like(a), 3, (1.0, 1.0))
    sizes = [m.sum() for m in tapering]
    assert sizes[0] > sizes[1] >= sizes[2] == 0


def test_grow_region_fills_the_pleural_air_within_limits(tmp_path):
    from ptx_annotator.metrics import dice
    from ptx_annotator.review.tools import GROW_CORE_HU

    case = make_chest_phantom()  # fine enough for the anatomy to hold all the pleural air
    store = AnnotationStore(tmp_path / "store")
    session = ReviewSession.open(case.volume, store, "alice")
    hu = np.asarray(case.volume.hu)
    truth = case.truth > 0
    air = np.argwhere(truth & (hu >= GROW_CORE_HU[0]) & (hu <= GROW_CORE_HU[1]))
    seed = tuple(air[len(air) // 2])
    changed = session.grow_region(seed)
    mask = session.annotation.mask > 0
    assert changed and all(session.state(z) == EDITED for z in changed)
    assert dice(truth, mask) > 0.9
    assert session.save()
    on_disk = store.load(case.volume.key, "alice")
    assert np.array_equal(on_disk.mask > 0, mask) and on_disk.review[changed[0]].state == EDITED
    small = ReviewSession.open(case.volume, None, "bob", anatomy=session._sides.anatomy)
    small.grow_region(seed, max_ml=5.0)
    assert 0 < small.annotation.mask.sum() * case.volume.voxel_volume_ml <= 5.0 + case.volume.voxel_volume_ml
    with pytest.raises(PtxError, match="outside the air range"):
        small.grow_region(tuple(np.argwhere(hu > 0)[0]))  # a click on soft tissue
    airway = np.argwhere(session._sides.anatomy.airways & (hu < PLEURAL_AIR_HU[1]))
    with pytest.raises(PtxError, match="airway"):  # the phantom has a trachea
        small.grow_region(tuple(airway[0]))
    outside = tuple(np.argwhere(session._sides.anatomy.outside_air)[0])
    wide = ReviewSession.open(case.volume, None, "carol", anatomy=session._sides.anatomy)
    wide.grow_region(outside, max_ml=50.0)  # the click is trusted; the limit still holds
    assert 0 < wide.annotation.mask.sum() * case.volume.voxel_volume_ml <= 50.0 + case.volume.voxel_volume_ml
    store.close()


def test_copy_proposal_into_a_range_marks_it_edited(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    propose(session, truth)
    session.clear(4)
    session.clear(5)
    assert session.copy_proposal(4, 5) == [4, 5]
    assert session.save()
    on_disk = saved(store, case)
    assert [on_disk.review[z].state for z in (4, 5)] == [EDITED, EDITED]
    assert on_disk.review[4].source == "test-proposer"
    assert np.array_equal(on_disk.mask[4:6] > 0, truth[4:6] > 0)


def test_autosaves_of_one_visit_are_one_version(case, truth, store):
    session = ReviewSession.open(case.volume, store, "alice")
    session.go_to(3)
    for z in (3, 3, 3):
        session.clear(z)
        assert session.autosave()
    assert len(store.versions(case.volume.key, "alice")) == 1
    saved_versions = []
    session.events.saved.connect(saved_versions.append)
    assert session.save()  # an explicit save adds a version
    assert len(store.versions(case.volume.key, "alice")) == 2 and saved_versions == [session.annotation.version]
