"""Annotation effort from the proposal versus from an empty mask, with the review session's own tools.

A scripted annotator works slice by slice until each slice's Dice against the truth is at least
:data:`DICE_TARGET` (two empty slices agree). Its tools are those of
:class:`~ptx_annotator.review.session.ReviewSession`: brush and erase strokes of the widget's
default size (:data:`~ptx_annotator.review.tools.DEFAULT_BRUSH_SIZE`; the brush may be HU-limited
to pleural air), accept (a range of slices at once), fill between slices.

A stroke is one drag: it starts where one dab of the brush gains most (pixels put right minus
pixels put wrong) and moves on, dab by dab within one brush radius, while a dab still gains. One
stroke, one fill and one accept of a range each count as one action; painted voxels are those a
stroke changed.

From the proposal
    Every slice whose proposal already reaches the target is accepted untouched (all of them in
    one bulk accept at the end); the others are corrected with strokes.
From an empty mask
    The annotator draws every k-th slice of the pneumothorax's extent (first and last included),
    fills between them, corrects the filled slices that miss the target and accepts the empty
    rest in one go. Every k in :data:`KEY_STEPS` is tried and the cheapest (fewest painted
    voxels) counts, so the from-scratch figure is the best a user of these tools could do.

Cases: simulated pneumothoraces (:mod:`ptx_annotator.synthetic`) in the shared TCIA CT, proposed
by the classical proposer; ``--ct CT --truth MASK`` runs one given case instead. Also measured, on
the last case: accepting every slice at once in the session, and ranking the next slice (first
call, then after an edit: only changed slices are rescored). The last line is
``voxels R actions S accepted A`` (R, S: from scratch divided by from the proposal, over all
cases; A: share of slices accepted untouched from the proposal).

Run: ``.venv/bin/python benchmarks/effort.py [--quick]`` or ``--ct CT --truth MASK``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ptx_annotator.proposers.contract import SliceResult
from ptx_annotator.review.session import ReviewSession
from ptx_annotator.review.states import EDITED
from ptx_annotator.review.tools import DEFAULT_BRUSH_SIZE, PLEURAL_AIR_HU, disk_stroke

DICE_TARGET = 0.95
KEY_STEPS = (1, 2, 3, 4)
#: A slice gets at most this many strokes (a safety stop; the table reports slices left short).
MAX_STROKES_PER_SLICE = 400
#: A drag ends after this many dabs (a safety stop).
MAX_DABS_PER_STROKE = 5000
TCIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"
CASES = [("right", 0.3, 0), ("left", 0.1, 1), ("right", 0.05, 2), ("left", 0.2, 3)]


def slice_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


@dataclass
class Effort:
    actions: int = 0
    voxels: int = 0
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

    def good(self, z: int) -> bool:
        return slice_dice(self.session.annotation.mask[z], self.truth[z]) >= DICE_TARGET

    def correct(self, z: int) -> None:
        strokes = 0
        while not self.good(z):
            if strokes >= MAX_STROKES_PER_SLICE or not self._stroke(z):
                self.effort.short += 1
                return
            strokes += 1

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
        return ndi.correlate(score, self._kernel, mode="constant")

    def _stroke(self, z: int) -> bool:
        """One drag on slice ``z``; False when no dab gains anything."""
        mask = self.session.annotation.mask[z] > 0
        wrong = mask != self.truth[z]
        pad = self.size + 1
        box = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad))
                    for s, n in zip(ndi.find_objects(wrong.view(np.uint8))[0], wrong.shape))
        gains = {kind: self._gain(z, mask, box, kind) for kind in ("air", "paint", "erase")}
        kind = max(gains, key=lambda k: gains[k].max())
        if gains[kind].max() <= 0:
            return False
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
        changed = self.session.brush(points, index=z, size=self.size, erase=kind == "erase",
                                     hu_range=PLEURAL_AIR_HU if kind == "air" else None)
        self.effort.actions += 1
        self.effort.voxels += changed
        return changed > 0

    def _apply(self, sim: np.ndarray, z: int, points, kind: str) -> np.ndarray:
        covered = disk_stroke(sim.shape, points, self.size)
        if kind == "erase":
            return sim & ~covered
        return sim | (covered & self._air[z]) if kind == "air" else sim | covered


def from_proposal(volume, truth, proposal, anatomy=None) -> tuple[Effort, ReviewSession]:
    session = ReviewSession(volume, _empty(volume), anatomy=anatomy)
    session.begin_proposal("benchmark-proposal", {}, with_probabilities=False)
    for z in range(volume.shape[0]):
        session.add_proposal_slice(_result(z, proposal[z], volume.shape[0]))
    annotator = ScriptedAnnotator(session, truth)
    untouched = []
    for z in range(volume.shape[0]):
        if annotator.good(z):
            untouched.append(z)
        else:
            annotator.correct(z)
    # slices the brush could not bring to the target (counted in 'short') are accepted as they are
    annotator.accept(sorted(set(untouched) | set(session.proposed_slices())))
    annotator.effort.accepted_untouched = len(untouched)
    return annotator.effort, session


def from_scratch(volume, truth, step: int, anatomy=None) -> tuple[Effort, ReviewSession]:
    session = ReviewSession(volume, _empty(volume), anatomy=anatomy)
    annotator = ScriptedAnnotator(session, truth)
    busy = np.flatnonzero(truth.reshape(truth.shape[0], -1).any(axis=1))
    if busy.size:
        first, last = int(busy[0]), int(busy[-1])
        keys = sorted(set(range(first, last + 1, step)) | {last})
        for z in keys:
            annotator.correct(z)
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


def run_case(name, volume, truth, proposal) -> dict:
    from ptx_annotator.anatomy import segment_thorax

    anatomy = segment_thorax(volume)  # once per case: every session of the case shares it
    proposed = from_proposal(volume, truth, proposal, anatomy)[0]
    scratch = {step: from_scratch(volume, truth, step, anatomy)[0] for step in KEY_STEPS}
    step = min(scratch, key=lambda k: (scratch[k].voxels, scratch[k].actions))
    row = {"case": name, "slices": volume.shape[0], "truth_ml": float(truth.sum() * volume.voxel_volume_ml),
           "proposal_dice": slice_dice(proposal, truth), "prop_actions": proposed.actions, "prop_voxels": proposed.voxels,
           "accepted": proposed.accepted_untouched, "prop_short": proposed.short, "step": step,
           "scratch_actions": scratch[step].actions, "scratch_voxels": scratch[step].voxels,
           "scratch_short": scratch[step].short}
    print(f"{row['case']:<24}{row['truth_ml']:>9.1f}{row['proposal_dice']:>7.3f}{row['prop_voxels']:>12}"
          f"{row['prop_actions']:>10}{row['accepted']:>7}/{row['slices']:<4}{row['scratch_voxels']:>11}"
          f"{row['scratch_actions']:>10}{row['step']:>3}{row['prop_short'] + row['scratch_short']:>6}", flush=True)
    return row


def _ratio(scratch: int, proposal: int) -> float:
    """From scratch / from the proposal (inf when the proposal needed none)."""
    return scratch / proposal if proposal else float("inf")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", help="one CT (DICOM folder, NIfTI or NRRD) instead of the simulated cases")
    parser.add_argument("--truth", help="the truth mask of --ct (NIfTI, NRRD or DICOM SEG)")
    parser.add_argument("--quick", action="store_true", help="two simulated cases instead of four")
    args = parser.parse_args(argv)
    from ptx_annotator.io import load_volume

    if bool(args.ct) != bool(args.truth):
        print("error: give both --ct CT and --truth MASK (or neither, for the simulated cases)", file=sys.stderr)
        return 2
    header = (f"{'case':<24}{'truth mL':>9}{'Dice':>7}{'prop voxels':>12}{'prop acts':>10}{'accepted':>12}"
              f"{'scr voxels':>11}{'scr acts':>10}{'k':>3}{'short':>6}")
    rows = []
    if args.ct:
        from ptx_annotator.errors import PtxError
        from ptx_annotator.io.masks import read_mask

        try:
            volume = load_volume(args.ct)
            truth = np.asarray(read_mask(args.truth, volume).mask) > 0
        except PtxError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(header, flush=True)
        proposal = propose(volume)
        rows.append(run_case(Path(args.ct).name[:23], volume, truth, proposal))
        timed = (volume, proposal)
    else:
        if not TCIA.exists():
            print(f"error: {TCIA} is not present; give --ct CT --truth MASK", file=sys.stderr)
            return 2
        from ptx_annotator.anatomy import segment_thorax
        from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

        base = load_volume(TCIA)
        anatomy = segment_thorax(base)
        print(header, flush=True)
        for side, fraction, seed in CASES[:2] if args.quick else CASES:
            sim = simulate_pneumothorax(base, side, fraction, seed=seed, anatomy=anatomy)
            proposal = propose(sim.volume)
            rows.append(run_case(f"tcia {side} {fraction:g} s{seed}", sim.volume, sim.mask > 0, proposal))
            timed = (sim.volume, proposal)
    seconds = session_timings(*timed)
    print(f"session on {timed[0].shape[0]} slices: accept all at once {1000 * seconds['accept_all']:.1f} ms; "
          f"ranked next slice {1000 * seconds['rank_first']:.1f} ms (every slice scored), "
          f"{1000 * seconds['rank_after_edit']:.1f} ms after an edit")
    voxels = _ratio(sum(r["scratch_voxels"] for r in rows), sum(r["prop_voxels"] for r in rows))
    actions = _ratio(sum(r["scratch_actions"] for r in rows), sum(r["prop_actions"] for r in rows))
    accepted = sum(r["accepted"] for r in rows) / sum(r["slices"] for r in rows)
    print(f"voxels {voxels:.1f} actions {actions:.1f} accepted {accepted:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
