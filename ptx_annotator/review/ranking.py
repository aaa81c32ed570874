"""Which slice needs a person next: slices still to review, ordered by need.

A slice's need is the sum of three parts, each in [0, 1], plus 1 when it is flagged:

uncertainty
    Share of the proposal's candidate pixels (probability within :data:`UNCERTAIN_BAND` of the
    threshold or above it) whose probability lies within the band: the model hesitates there.
    0 when the proposer gives no probabilities.
disagreement with neighbours
    1 - the mean Dice of the slice's mask with the masks of the slices above and below (two empty
    slices agree): a slice that does not continue its neighbours is suspect.
change between slices
    The largest jump of mask area to a neighbouring slice, as a share of the largest area in the
    series: where the pneumothorax starts, ends or changes shape quickly.

Empty slices between empty neighbours score 0 and come last. Per-slice counts are cached and
recomputed only for slices whose mask or proposal changed, so a slice change stays cheap.
"""

from __future__ import annotations

import numpy as np

from ptx_annotator.review.states import FLAGGED, NEEDS_REVIEW_STATES

#: Probabilities within this distance of the threshold count as uncertain.
UNCERTAIN_BAND = 0.25
#: Pixels are counted on every n-th row and column: an order of need, not a measurement, and a
#: quarter of the work keeps a slice change quick.
STRIDE = 2


class SliceRanker:
    """Need-for-review scores of every slice of one mask (see the module doc).

    Parameters
    ----------
    mask : ndarray (z, y, x)
        The annotator's mask (read, never written; the array may change, call :meth:`invalidate`).
    """

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        n = mask.shape[0]
        self._area = np.zeros(n, np.int64)
        self._overlap_next = np.zeros(max(n - 1, 0), np.int64)
        self._uncertain = np.zeros(n, np.int64)
        self._candidates = np.zeros(n, np.int64)
        self._stale = set(range(n))
        self._probabilities: np.ndarray | None = None
        self._threshold = 0.5

    def set_probabilities(self, probabilities: np.ndarray | None, threshold: float) -> None:
        """Use these proposal probabilities (None: no uncertainty part) at this threshold."""
        unchanged = probabilities is None and self._probabilities is None
        self._probabilities, self._threshold = probabilities, float(threshold)
        if not unchanged:
            self._stale.update(range(self.mask.shape[0]))

    def invalidate(self, indices) -> None:
        """The mask or proposal of these slices changed."""
        self._stale.update(int(z) for z in indices)

    def scores(self, states: list[str]) -> np.ndarray:
        """Need of every slice (float array, one per slice)."""
        self._refresh()
        n = self.mask.shape[0]
        area = self._area.astype(float)
        if n > 1:
            pair_sum = area[:-1] + area[1:]
            dice_next = np.where(pair_sum > 0, 2.0 * self._overlap_next / np.maximum(pair_sum, 1), 1.0)
            below = np.concatenate([[np.nan], dice_next])  # Dice with slice z-1
            above = np.concatenate([dice_next, [np.nan]])  # Dice with slice z+1
            disagreement = 1.0 - np.nanmean(np.vstack([below, above]), axis=0)
            jumps = np.abs(np.diff(area))
            change = np.maximum(np.concatenate([[0.0], jumps]), np.concatenate([jumps, [0.0]]))
            change = change / max(float(area.max()), 1.0)
        else:
            disagreement = change = np.zeros(n)
        uncertainty = self._uncertain / np.maximum(self._candidates, 1)
        flagged = np.array([state == FLAGGED for state in states], dtype=float)
        return uncertainty + disagreement + change + flagged

    def order(self, states: list[str]) -> list[int]:
        """Slices still needing review, most needed first (ties in slice order)."""
        scores = self.scores(states)
        waiting = [z for z, state in enumerate(states) if state in NEEDS_REVIEW_STATES]
        return sorted(waiting, key=lambda z: (-scores[z], z))

    def refresh(self, indices=None) -> None:
        """Score these stale slices now (default: every stale one), e.g. as a proposer streams them in."""
        self._refresh(None if indices is None else {int(z) for z in indices} & self._stale)

    def _refresh(self, only: set | None = None) -> None:
        todo = self._stale if only is None else only
        if not todo:
            return
        n = self.mask.shape[0]
        for z in sorted(todo):
            if not 0 <= z < n:
                continue
            self._area[z] = int(np.count_nonzero(self.mask[z, ::STRIDE, ::STRIDE]))
            for a in (z - 1, z):
                if 0 <= a < n - 1:
                    self._overlap_next[a] = int(np.count_nonzero((self.mask[a, ::STRIDE, ::STRIDE] > 0)
                                                                 & (self.mask[a + 1, ::STRIDE, ::STRIDE] > 0)))
            if self._probabilities is not None:
                p = self._probabilities[z, ::STRIDE, ::STRIDE]
                candidates = p >= self._threshold - UNCERTAIN_BAND
                self._candidates[z] = int(candidates.sum())
                self._uncertain[z] = int((candidates & (p < self._threshold + UNCERTAIN_BAND)).sum())
            else:
                self._candidates[z] = self._uncertain[z] = 0
        self._stale -= set(todo)


def next_in_order(order: list[int], current: int, direction: int = 1, wrap: bool = False) -> int | None:
    """The slice after (direction +1) or before (-1) ``current`` in ``order``.

    When ``current`` is not in the order (it was just reviewed), +1 gives the most needed slice
    and -1 the least needed one. Past the end of the order, ``wrap`` starts again from its other
    end; else None. None when nothing else is left.
    """
    candidates = [z for z in order if z != current]
    if not candidates:
        return None
    if current not in order:
        return candidates[0] if direction >= 0 else candidates[-1]
    position = order.index(current) + (1 if direction >= 0 else -1)
    if 0 <= position < len(order):
        return order[position]
    return (candidates[0] if direction >= 0 else candidates[-1]) if wrap else None
