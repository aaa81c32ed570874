"""The effort benchmark's scripted annotator: it really reaches the Dice target with the session's
tools, counts what it does (strokes, Clear slice, fill, accept) as documented, and ``--ct CT --truth
MASK`` ends with the documented line."""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ptx_annotator.review.states import ACCEPTED, EDITED, PROPOSED
from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "effort.py"


@pytest.fixture(scope="module")
def effort():
    spec = importlib.util.spec_from_file_location("effort_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def case():
    return make_chest_phantom(shape=(10, 128, 128), spacing=(5.0, 2.0, 2.0), side="left", fraction=0.3)


def test_scripted_annotator_reaches_the_target_on_every_slice(effort, case):
    truth = case.truth > 0
    proposal = truth.copy()
    proposal[4] = False  # the proposer missed a slice
    proposal[6, :, :64] |= truth[6, :, 64:]  # and added air on another
    proposed, session = effort.from_proposal(case.volume, truth, proposal)
    states = session.states()
    assert states[4] == EDITED and states[6] == EDITED and PROPOSED not in states
    assert states.count(ACCEPTED) == proposed.accepted_untouched == 8
    for z in range(10):
        assert effort.slice_dice(session.annotation.mask[z], truth[z]) >= effort.DICE_TARGET
    scratch, blank = effort.from_scratch(case.volume, truth, 3)
    for z in range(10):
        assert effort.slice_dice(blank.annotation.mask[z], truth[z]) >= effort.DICE_TARGET
    assert scratch.voxels > proposed.voxels and scratch.actions > proposed.actions
    assert proposed.voxels == int(np.count_nonzero(session.annotation.mask != (proposal > 0)))
    assert proposed.cleared == 0  # nothing to clear: every slice has air in the truth


def test_a_missed_run_is_drawn_as_from_scratch_and_false_air_is_cleared(effort, case):
    truth = case.truth > 0
    truth[0] = False  # no pneumothorax on the first slice ...
    proposal = case.truth > 0  # ... but the proposal marks air there
    proposal[2:7] = False  # and misses five slices outright
    per_slice, _ = effort.from_proposal(case.volume, truth, proposal, step=1)
    cache = {}
    drawn, session = effort.from_proposal(case.volume, truth, proposal, step=2, cache=cache)
    assert sorted(cache) == [2, 4, 6]  # the run's key slices, drawn from empty (shared with the scratch arm)
    assert drawn.actions < per_slice.actions and drawn.voxels < per_slice.voxels  # fill between saved work
    states = session.states()
    assert not session.annotation.mask[0].any() and states[0] == EDITED  # one Clear slice, not rubbing out
    assert drawn.cleared == int(proposal[0].sum()) and per_slice.cleared == drawn.cleared
    changed = int(np.count_nonzero(session.annotation.mask != proposal))
    assert drawn.voxels + drawn.cleared < changed  # the fill's voxels are the tool's, not painted
    assert states.count(ACCEPTED) == drawn.accepted_untouched == 4  # slices 1, 7, 8, 9 as proposed
    for z in range(10):
        assert effort.slice_dice(session.annotation.mask[z], truth[z]) >= effort.DICE_TARGET or drawn.short
    # the same missed run from scratch costs the same drawing: the cache replays it
    again, _ = effort.from_scratch(case.volume, truth, 2, cache=cache)
    fresh, _ = effort.from_scratch(case.volume, truth, 2)
    assert (again.voxels, again.actions) == (fresh.voxels, fresh.actions)


def test_a_slice_the_brush_cannot_bring_to_the_target_gets_only_strokes_worth_a_drag(effort, case):
    from ptx_annotator.review.session import ReviewSession

    truth = np.zeros(case.volume.shape, dtype=bool)
    yy, xx = np.mgrid[:128, :128]
    truth[5] = (yy - 64) ** 2 + (xx - 64) ** 2 <= 15 ** 2
    grid = np.zeros((128, 128), dtype=bool)
    grid[::6, ::6] = True
    truth[5] |= grid & ((yy - 64) ** 2 + (xx - 64) ** 2 > 25 ** 2)  # isolated pixels, finer than the brush
    truth[6] = (yy - 64) ** 2 + (xx - 64) ** 2 <= 15 ** 2  # the disk alone

    class Counting(effort.ScriptedAnnotator):
        gains: list = []

        def _brush(self, z, points, kind):
            before = np.count_nonzero((self.session.annotation.mask[z] > 0) == self.truth[z])
            changed = super()._brush(z, points, kind)
            self.gains.append(np.count_nonzero((self.session.annotation.mask[z] > 0) == self.truth[z]) - before)
            return changed

    session = ReviewSession(case.volume, effort._empty(case.volume))
    annotator = Counting(session, truth)
    assert not annotator._planned(5)[1]
    annotator.correct(5)
    assert annotator.effort.short == 1 and annotator.effort.actions == len(annotator.gains) >= 1
    assert min(annotator.gains) >= effort.WORTHWHILE_STROKE_PX  # the disk, drawn with strokes worth a drag
    assert effort.slice_dice(session.annotation.mask[5], (yy - 64) ** 2 + (xx - 64) ** 2 <= 15 ** 2) > 0.9
    left = annotator._plan(5, session.annotation.mask[5] > 0)  # what an eager reader would still rub at
    assert left is not None and 1 <= left[3] < effort.WORTHWHILE_STROKE_PX
    # a slice the brush can bring to the target still gets every stroke it needs
    assert annotator._planned(6)[1]
    annotator.correct(6)
    assert effort.slice_dice(session.annotation.mask[6], truth[6]) >= effort.DICE_TARGET
    assert annotator.effort.short == 1


def test_one_given_case_ends_with_the_ratio_line(effort, case, tmp_path, capsys):
    ct, truth = save_phantom(case, tmp_path)
    assert effort.main(["--ct", ct, "--truth", truth]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"voxels (\S+) actions (\S+) accepted (\d\.\d{3})", last)
    assert effort.main(["--ct", ct]) == 2
    assert "--truth" in capsys.readouterr().err
