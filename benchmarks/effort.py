"""Annotation effort from the proposal versus from an empty mask, with the review session's own tools.

A scripted annotator works slice by slice until each slice's Dice against the truth is at least
:data:`DICE_TARGET` (two empty slices agree). Its tools are those of the review widget, through
:class:`~ptx_annotator.review.session.ReviewSession`: brush and erase strokes of the widget's
default size (:data:`~ptx_annotator.review.tools.DEFAULT_BRUSH_SIZE`; the brush may be HU-limited
to pleural air), Clear slice, accept (a range of slices at once), fill between slices.

A stroke is one drag: it starts where one dab of the brush gains most (pixels put right minus
pixels put wrong) and moves on, dab by dab within one brush radius, while a dab still gains. One
stroke, one Clear slice, one fill and one accept of a range each count as one action. Where the
strokes, planned ahead, cannot bring a slice to the target at all (a thin rim or a partial-volume
edge finer than the brush), the reader makes only the strokes worth a drag (each putting at least
:data:`WORTHWHILE_STROKE_PX` pixels right) and accepts the slice as it is; such slices are counted
as left short, in both ways of working. Painted
voxels are those the reader's strokes changed; what Clear slice, fill and accept change is done
by the tool, not painted (the voxels a Clear took away are reported apart, ``cleared``).

From the proposal
    Every slice whose proposal already reaches the target is accepted untouched (all of them in
    one bulk accept at the end). A slice whose proposal marks air where the truth has none is
    cleared with one Clear slice (as a reader would, rather than rubbing it out); the others are
    corrected with strokes, except a run of three or more slices the proposal missed outright:
    that is drawn as from scratch (every k-th slice, the from-scratch run's best k, then fill
    between), since a reader facing a missed pneumothorax has the same tools as from an empty mask.
From an empty mask
    The annotator draws every k-th slice of the pneumothorax's extent (first and last included),
    fills between them, corrects the filled slices that miss the target and accepts the empty
    rest in one go. Every k in :data:`KEY_STEPS` is tried and the cheapest (fewest painted
    voxels) counts, so the from-scratch figure is the best a user of these tools could do.

Accepted untouched is counted over every slice of the study: the reader has to look at each one,
empty or not (the share over the slices where the truth or the proposal has air is printed too).

Cases: the evaluation suite of the detection issue (``benchmarks/ptx_suite.py``: its seeded
``SPECS`` on every shared chest CT, confounder-only and untouched CTs included, since a reader
reviews those too), proposed by the default proposer (:func:`ptx_annotator.proposers.get_proposer`,
what a fresh install uses). ``--quick`` runs :data:`QUICK_TUNING` on the two tuning CTs and
:data:`QUICK_HELD_OUT` on the other three; ``--ct CT --truth MASK`` runs one given case. Also
measured, on the last case: accepting every slice at once in the session, and ranking the next
slice (first call, then after an edit: only changed slices are rescored). The last line is
``voxels R actions S accepted A`` (R, S: from scratch divided by from the proposal, summed over
all cases; A: share of the slices of all cases accepted untouched from the proposal).

Run: ``.venv/bin/python benchmarks/effort.py [--quick] [--jobs 2] [--cts tcia lidc] [--cases NAME ...]``
or ``--ct CT --truth MASK`` (``--jobs N`` works on N CTs at once, one process each).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import fftconvolve

from ptx_annotator.proposers.contract import SliceResult
from ptx_annotator.review.session import ReviewSession
from ptx_annotator.review.states import EDITED
from ptx_annotator.review.tools import DEFAULT_BRUSH_SIZE, PLEURAL_AIR_HU, disk_stroke

DICE_TARGET = 0.95
KEY_STEPS = (1, 2, 3, 4)
#: A slice gets at most this many strokes (a safety stop; the table reports slices left short).
MAX_STROKES_PER_SLICE = 400
#: Gain maps of boxes larger than this (pixels) are summed by FFT (same integers, faster).
FFT_MIN_PIXELS = 4096
#: On a slice the brush cannot bring to the target (strokes planned until none gains), the reader
#: makes only the strokes that put at least this many pixels right, net (one brush width), and
#: accepts the rest: nobody drags an 8-pixel brush to put one pixel right, forty times over.
WORTHWHILE_STROKE_PX = DEFAULT_BRUSH_SIZE
#: A drag ends after this many dabs (a safety stop).
MAX_DABS_PER_STROKE = 5000
SUITE = Path(__file__).resolve().parent / "ptx_suite.py"
#: ``--quick``: suite cases on the tuning CTs, and on each held-out CT.
QUICK_TUNING = ("rim2_anterior", "medium15_basal_left", "large35_diffuse", "neg_oesophagus_bowel")
QUICK_HELD_OUT = ("medium10_posterior", "untouched")


def slice_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


@dataclass
class Effort:
    actions: int = 0
    voxels: int = 0  # painted by the reader's strokes
    cleared: int = 0  # taken away by Clear slice (one action each, not painted)
    accepted_untouched: int = 0
    short: int = 0  # slices left below the target (the brush could not get there)


class ScriptedAnnotator:
    """Corrects one session's mask towards ``truth`` with the session's tools, counting the effort."""

    def __init__(self, session: ReviewSession, truth: np.ndarray, size: int = DEFAULT_BRUSH_SIZE):
        self.session, self.truth, self.size = session, truth > 0, int(size)
        self.effort = Effort()
        self._kernel = disk_stroke((size + 1, size + 1), [(size / 2, size / 2)], size).astype(np.float32)
        hu = np.asarray(session.volume.hu)
        self._air = (hu >= PLEURAL_AIR_HU[0]) & (hu <= PLEURAL_AIR_HU[1])
        self._recording: list | None = None

    def good(self, z: int) -> bool:
        return slice_dice(self.session.annotation.mask[z], self.truth[z]) >= DICE_TARGET

    def correct(self, z: int) -> None:
        if not self.truth[z].any() and self.session.annotation.mask[z].any():
            self.clear(z)  # air where there is none: one Clear slice
            return
        drags, reachable = self._planned(z)
        if not reachable:  # a slice the brush cannot bring to the target gets only the strokes worth a drag
            drags = list(itertools.takewhile(lambda drag: drag[3] >= WORTHWHILE_STROKE_PX, drags))
        for points, kind, _, _ in drags:
            self._brush(z, points, kind)
        if not self.good(z):
            self.effort.short += 1

    def _planned(self, z: int) -> tuple[list, bool]:
        """The drags that bring slice ``z`` to the target, planned on a copy of its mask (the brush's
        own disk), and whether they get there (at most :data:`MAX_STROKES_PER_SLICE`)."""
        mask, truth = self.session.annotation.mask[z] > 0, self.truth[z]
        drags = []
        while slice_dice(mask, truth) < DICE_TARGET:
            drag = self._plan(z, mask) if len(drags) < MAX_STROKES_PER_SLICE else None
            if drag is None:
                return drags, False
            drags.append(drag)
            mask = drag[2]
        return drags, True

    def draw(self, z: int, cache: dict) -> None:
        """Draw the empty slice ``z``; ``cache`` keeps each slice's drags (the same from any empty start)."""
        if z in cache:
            drags, short = cache[z]
            for points, kind in drags:
                self._brush(z, points, kind)
            self.effort.short += short
            return
        self._recording, before = [], self.effort.short
        self.correct(z)
        cache[z] = (self._recording, self.effort.short - before)
        self._recording = None

    def clear(self, z: int) -> None:
        before = int(np.count_nonzero(self.session.annotation.mask[z]))
        self.session.clear(z)
        self.effort.actions += 1
        self.effort.cleared += before

    def accept(self, indices) -> None:
        indices = list(indices)
        if indices:
            self.session.accept_slices(indices)
            self.effort.actions += 1

    def fill(self, z0: int, z1: int) -> None:
        if self.session.fill_between(z0, z1):
            self.effort.actions += 1

    def _gain(self, z: int, mask: np.ndarray, box, kind: str) -> np.ndarray:
        """Per pixel of ``box``: pixels a dab there puts right minus pixels it puts wrong."""
        truth, mask = self.truth[z][box], mask[box]
        if kind == "erase":
            score = (mask & ~truth).astype(np.float32) - (mask & truth)
        else:
            empty = ~mask & (self._air[z][box] if kind == "air" else True)
            score = (truth & empty).astype(np.float32) - (~truth & empty)
        if score.size > FFT_MIN_PIXELS and self._kernel.shape[0] % 2:  # the same sums, faster on big boxes
            return np.rint(fftconvolve(score, self._kernel[::-1, ::-1], mode="same"))
        return ndi.correlate(score, self._kernel, mode="constant")

    def _plan(self, z: int, mask: np.ndarray):
        """The next drag on slice ``z`` showing ``mask``: ``(points, kind, mask after, pixels put right net)``,
        or None when no dab gains anything."""
        wrong = mask != self.truth[z]
        pad = self.size + 1
        rows, cols = np.flatnonzero(wrong.any(axis=1)), np.flatnonzero(wrong.any(axis=0))
        box = (slice(max(0, int(rows[0]) - pad), min(wrong.shape[0], int(rows[-1]) + 1 + pad)),
               slice(max(0, int(cols[0]) - pad), min(wrong.shape[1], int(cols[-1]) + 1 + pad)))
        gains = {kind: self._gain(z, mask, box, kind) for kind in ("air", "paint", "erase")}
        kind = max(gains, key=lambda k: gains[k].max())
        if gains[kind].max() <= 0:
            return None
        start = np.unravel_index(int(np.argmax(gains[kind])), gains[kind].shape)
        points = [(int(start[0] + box[0].start), int(start[1] + box[1].start))]
        sim = self._apply(mask, z, points, kind)
        radius = max(self.size // 2, 1)
        while len(points) < MAX_DABS_PER_STROKE:
            y, x = points[-1]
            near = (slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
            outer = tuple(slice(max(0, s.start - pad), s.stop + pad) for s in near)
            window = self._gain(z, sim, outer, kind)[near[0].start - outer[0].start: near[0].stop - outer[0].start,
                                                     near[1].start - outer[1].start: near[1].stop - outer[1].start]
            if window.max() <= 0:
                break
            best = np.unravel_index(int(np.argmax(window)), window.shape)
            points.append((int(near[0].start + best[0]), int(near[1].start + best[1])))
            sim = self._apply(sim, z, points[-2:], kind)
        truth = self.truth[z]
        return points, kind, sim, int(np.count_nonzero(sim == truth)) - int(np.count_nonzero(mask == truth))

    def _brush(self, z: int, points, kind: str) -> int:
        """One drag through the session's brush; returns the pixels it changed."""
        changed = self.session.brush(points, index=z, size=self.size, erase=kind == "erase",
                                     hu_range=PLEURAL_AIR_HU if kind == "air" else None)
        self.effort.actions += 1
        self.effort.voxels += changed
        if self._recording is not None:
            self._recording.append((points, kind))
        return changed

    def _apply(self, sim: np.ndarray, z: int, points, kind: str) -> np.ndarray:
        """``sim`` after one more segment of the drag (the brush's own disk, drawn in a window round it)."""
        corner = np.maximum(np.min(points, axis=0) - self.size, 0)
        far = np.minimum(np.max(points, axis=0) + self.size + 1, sim.shape)
        window = tuple(slice(int(a), int(b)) for a, b in zip(corner, far))
        covered = disk_stroke(tuple(int(b - a) for a, b in zip(corner, far)),
                              [(y - corner[0], x - corner[1]) for y, x in points], self.size)
        sim = sim.copy()
        if kind == "erase":
            sim[window] &= ~covered
        else:
            sim[window] |= covered & self._air[z][window] if kind == "air" else covered
        return sim


def from_proposal(volume, truth, proposal, anatomy=None, step: int = 1,
                  cache: dict | None = None) -> tuple[Effort, ReviewSession]:
    """Correct the proposal; a run of 3 or more slices it missed outright is drawn as from scratch, every ``step``-th."""
    session = ReviewSession(volume, _empty(volume), anatomy=anatomy)
    session.begin_proposal("benchmark-proposal", {}, with_probabilities=False)
    for z in range(volume.shape[0]):
        session.add_proposal_slice(_result(z, proposal[z], volume.shape[0]))
    annotator = ScriptedAnnotator(session, truth)
    cache = {} if cache is None else cache
    untouched = [z for z in range(volume.shape[0]) if annotator.good(z)]
    failing = sorted(set(range(volume.shape[0])) - set(untouched))
    runs = np.split(np.asarray(failing, dtype=int), np.flatnonzero(np.diff(failing) != 1) + 1) if failing else []
    for run in runs:
        run = [int(z) for z in run]
        if step > 1 and len(run) >= 3 and not any(np.asarray(proposal[z]).any() for z in run):
            keys = sorted(set(range(run[0], run[-1] + 1, step)) | {run[-1]})
            for z in keys:
                annotator.draw(z, cache)
            annotator.fill(run[0], run[-1])
            run = [z for z in run if z not in keys and not annotator.good(z)]
        for z in run:
            annotator.correct(z)
    # slices the brush could not bring to the target (counted in 'short') are accepted as they are
    annotator.accept(sorted(set(untouched) | set(session.proposed_slices())))
    annotator.effort.accepted_untouched = len(untouched)
    return annotator.effort, session


def from_scratch(volume, truth, step: int, anatomy=None, cache: dict | None = None) -> tuple[Effort, ReviewSession]:
    """Draw every ``step``-th slice, fill between, correct; ``cache`` shares the drawn slices between steps."""
    session = ReviewSession(volume, _empty(volume), anatomy=anatomy)
    annotator = ScriptedAnnotator(session, truth)
    cache = {} if cache is None else cache
    busy = np.flatnonzero(truth.reshape(truth.shape[0], -1).any(axis=1))
    if busy.size:
        first, last = int(busy[0]), int(busy[-1])
        keys = sorted(set(range(first, last + 1, step)) | {last})
        for z in keys:
            annotator.draw(z, cache)
            if session.state(z) != EDITED:
                annotator.accept([z])  # a key slice the truth leaves empty
        if step > 1:
            annotator.fill(first, last)
            for z in range(first, last + 1):
                if z not in keys and not annotator.good(z):
                    annotator.correct(z)
    annotator.accept([z for z in range(volume.shape[0]) if session.state(z) not in ("accepted", "edited")])
    return annotator.effort, session


def _empty(volume):
    from ptx_annotator.review.store import Annotation

    return Annotation.empty(volume, "scripted")


def _result(z, mask, total):
    return SliceResult(z, np.asarray(mask, dtype=np.uint8), None, z + 1, total)


def propose(volume) -> np.ndarray:
    from ptx_annotator.proposers import get_proposer, propose_volume

    return propose_volume(get_proposer(), volume, keep_probabilities=False).mask


def session_timings(volume, proposal, anatomy=None) -> dict:
    """Seconds to accept every slice at once, and to rank the next slice (all slices, then after one edit)."""
    session = ReviewSession(volume, _empty(volume), anatomy=anatomy)
    session.begin_proposal("timing", {}, with_probabilities=True)
    for z in range(volume.shape[0]):  # probabilities exercise the uncertainty part of the ranking
        session.add_proposal_slice(SliceResult(z, proposal[z].astype(np.uint8),
                                               np.where(proposal[z] > 0, 0.7, 0.1).astype(np.float32), z + 1, volume.shape[0]))
    start = time.perf_counter()
    session.next_slice(0)
    first = time.perf_counter() - start
    session.clear(volume.shape[0] // 2)
    start = time.perf_counter()
    session.next_slice(volume.shape[0] // 2)
    after_edit = time.perf_counter() - start
    start = time.perf_counter()
    session.accept_slices(range(volume.shape[0]))
    return {"accept_all": time.perf_counter() - start, "rank_first": first, "rank_after_edit": after_edit}


def run_case(name, volume, truth, proposal, started: float | None = None) -> dict:
    from ptx_annotator.anatomy import segment_thorax

    anatomy = segment_thorax(volume)  # once per case: every session of the case shares it
    cache: dict = {}
    scratch = {step: from_scratch(volume, truth, step, anatomy, cache)[0] for step in KEY_STEPS}
    step = min(scratch, key=lambda k: (scratch[k].voxels, scratch[k].actions))
    proposed = from_proposal(volume, truth, proposal, anatomy, step, cache)[0]
    content = int(np.count_nonzero((truth | (proposal > 0)).reshape(truth.shape[0], -1).any(axis=1)))
    row = {"case": name, "slices": volume.shape[0], "truth_ml": float(truth.sum() * volume.voxel_volume_ml),
           "proposed_ml": float((proposal > 0).sum() * volume.voxel_volume_ml),
           "proposal_dice": slice_dice(proposal, truth), "prop_actions": proposed.actions, "prop_voxels": proposed.voxels,
           "prop_cleared": proposed.cleared, "accepted": proposed.accepted_untouched, "content_slices": content,
           "prop_short": proposed.short, "step": step, "scratch_actions": scratch[step].actions,
           "scratch_voxels": scratch[step].voxels, "scratch_short": scratch[step].short,
           "seconds": round(time.perf_counter() - (started or time.perf_counter()), 1)}
    print(_line(row), flush=True)
    return row


#: Columns: R, S per case (from scratch / from the proposal, voxels and actions); s: seconds of the case
#: (simulating it, proposing, and both scripted ways).
HEADER = (f"{'case':<34}{'truth mL':>9}{'prop mL':>9}{'Dice':>7}{'prop vox':>10}{'acts':>6}{'cleared':>8}"
          f"{'accepted':>10}{'scr vox':>9}{'acts':>6}{'k':>3}{'short':>6}{'R':>7}{'S':>6}{'s':>6}")


def _line(row: dict) -> str:
    return (f"{row['case'][:33]:<34}{row['truth_ml']:>9.1f}{row['proposed_ml']:>9.1f}{row['proposal_dice']:>7.3f}"
            f"{row['prop_voxels']:>10}{row['prop_actions']:>6}{row['prop_cleared']:>8}"
            f"{row['accepted']:>6}/{row['slices']:<3}{row['scratch_voxels']:>9}{row['scratch_actions']:>6}"
            f"{row['step']:>3}{row['prop_short'] + row['scratch_short']:>6}"
            f"{_shown(row['scratch_voxels'], row['prop_voxels']):>7}{_shown(row['scratch_actions'], row['prop_actions']):>6}"
            f"{row['seconds']:>6.0f}")


def _shown(scratch: int, proposal: int) -> str:
    """A per-case ratio for the table ('-' when neither way took any)."""
    return "-" if scratch == proposal == 0 else f"{_ratio(scratch, proposal):.1f}"


def _ratio(scratch: int, proposal: int) -> float:
    """From scratch / from the proposal (inf when the proposal needed none)."""
    return scratch / proposal if proposal else float("inf")


def load_suite():
    """``benchmarks/ptx_suite.py`` as a module (its CTs, specs and canvas loader)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ptx_suite_for_effort", SUITE)
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    return suite


def suite_cases(suite, cts, tuning_names, held_out_names):
    """(name, volume, truth) of the detection suite's cases, built one at a time on each shared CT."""
    names_for = lambda ct: tuning_names if ct in suite.TUNING_CTS else held_out_names  # noqa: E731
    for ct, name, case, _ in suite.suite_cases(cts, names_for):
        yield f"{ct}/{name}", case.volume, case.mask > 0


def run_cases(cases) -> tuple[list, dict | None]:
    """Rows of ``cases`` ((name, volume, truth) ...), and the session timings on the last one."""
    rows, timed = [], None
    started = time.perf_counter()
    for name, volume, truth in cases:  # each case is simulated as the loop asks for it
        proposal = propose(volume)
        rows.append(run_case(name, volume, truth, proposal, started))
        timed = (volume, proposal)
        started = time.perf_counter()
    return rows, (session_timings(*timed) if timed else None)


def _run_one_ct(job) -> tuple[list, dict | None]:
    """A worker of ``--jobs``: the suite's cases on one CT."""
    import torch

    torch.set_num_threads(1)
    ct, tuning, held_out = job
    return run_cases(suite_cases(load_suite(), [ct], tuning, held_out))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", help="one CT (DICOM folder, NIfTI or NRRD) instead of the suite's cases")
    parser.add_argument("--truth", help="the truth mask of --ct (NIfTI, NRRD or DICOM SEG)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_TUNING)} cases on each tuning CT, {len(QUICK_HELD_OUT)} on each held-out one")
    parser.add_argument("--cts", nargs="+", help="shared CTs of the suite (default: all)")
    parser.add_argument("--cases", nargs="+", help="suite case names, on every CT (default: all, or --quick's)")
    parser.add_argument("--jobs", type=int, default=1, help="CTs worked on at once, one process each (default 1)")
    args = parser.parse_args(argv)
    from ptx_annotator.io import load_volume

    if args.jobs < 1:
        print(f"error: --jobs {args.jobs} must be 1 or more", file=sys.stderr)
        return 2
    if bool(args.ct) != bool(args.truth):
        print("error: give both --ct CT and --truth MASK (or neither, for the suite's cases)", file=sys.stderr)
        return 2
    rows = []
    started = time.perf_counter()
    if args.ct:
        from ptx_annotator.errors import PtxError
        from ptx_annotator.io.masks import read_mask

        try:
            volume = load_volume(args.ct)
            truth = np.asarray(read_mask(args.truth, volume).mask) > 0
        except PtxError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        cases = [(Path(args.ct).name, volume, truth)]
    else:
        suite = load_suite()
        cts = args.cts or list(suite.CTS)
        names = args.cases or list(suite.SPECS)
        unknown = sorted(set(cts) - set(suite.CTS)) + sorted(set(names) - set(suite.SPECS))
        if unknown:
            print(f"error: unknown CT or case {', '.join(unknown)}; CTs: {', '.join(suite.CTS)}; "
                  f"cases: {', '.join(suite.SPECS)}", file=sys.stderr)
            return 2
        if not any(suite.CTS[c].exists() for c in cts):
            print(f"error: none of the shared CTs is present under {suite.DATA}; give --ct CT --truth MASK",
                  file=sys.stderr)
            return 2
        tuning = names if args.cases or not args.quick else list(QUICK_TUNING)
        held_out = names if args.cases or not args.quick else list(QUICK_HELD_OUT)
        cases = suite_cases(suite, cts, tuning, held_out)
    print(f"proposer: {describe_proposer()}", flush=True)
    print(HEADER, flush=True)
    if args.ct or args.jobs == 1:
        rows, seconds = run_cases(cases)
    else:  # one CT per worker process; rows print as they come, the table is printed again in order
        import multiprocessing

        jobs = [(ct, tuning, held_out) for ct in cts]
        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            results = pool.map(_run_one_ct, jobs, chunksize=1)
        rows = [row for part, _ in results for row in part]
        seconds = next((t for _, t in reversed(results) if t), None)
        print("\n" + HEADER)
        for row in rows:
            print(_line(row))
    if not rows:
        print("error: no case was run", file=sys.stderr)
        return 2
    print(f"session: accept all at once {1000 * seconds['accept_all']:.1f} ms; "
          f"ranked next slice {1000 * seconds['rank_first']:.1f} ms (every slice scored), "
          f"{1000 * seconds['rank_after_edit']:.1f} ms after an edit (last case's CT)")
    total = {key: sum(r[key] for r in rows) for key in rows[0] if isinstance(rows[0][key], (int, float))}
    print(f"total {len(rows)} cases, {total['slices']} slices, {time.perf_counter() - started:.0f} s: from the proposal "
          f"{total['prop_voxels']} voxels painted, {total['prop_actions']} actions ({total['prop_cleared']} voxels "
          f"cleared), {total['accepted']} slices accepted untouched "
          f"({total['accepted'] / total['slices']:.0%} of all, "
          f"{_untouched_with_content(rows):.0%} of those where truth or proposal has air); from scratch "
          f"{total['scratch_voxels']} voxels, {total['scratch_actions']} actions; slices left short "
          f"{total['prop_short']} from the proposal, {total['scratch_short']} from scratch")
    voxels = _ratio(total["scratch_voxels"], total["prop_voxels"])
    actions = _ratio(total["scratch_actions"], total["prop_actions"])
    # two decimals for the ratios, three for the share: a figure just under its target (9.98, 0.796)
    # must not print as the target itself
    print(f"voxels {voxels:.2f} actions {actions:.2f} accepted {total['accepted'] / total['slices']:.3f}")
    return 0


def _untouched_with_content(rows) -> float:
    """Share of the slices with air (truth or proposal) that were accepted untouched."""
    content = sum(r["content_slices"] for r in rows)
    empty_agreed = sum(r["slices"] - r["content_slices"] for r in rows)  # empty in both: always untouched
    return (sum(r["accepted"] for r in rows) - empty_agreed) / content if content else 1.0


def describe_proposer() -> str:
    from ptx_annotator.proposers import get_proposer

    proposer = get_proposer()
    return getattr(proposer, "name", type(proposer).__name__)


if __name__ == "__main__":
    sys.exit(main())
