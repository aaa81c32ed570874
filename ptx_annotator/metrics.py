"""Overlap, distance, volume and agreement metrics for binary masks, with explicit empty-mask rules.

Conventions
-----------
Masks are (z, y, x) arrays; anything non-zero is foreground. ``reference`` (reader A) plays the
part of the truth and ``test`` (reader B) the part of the prediction, so ``precision`` is
TP / |B| and ``recall`` is TP / |A|. ``spacing`` is the voxel size in mm as (z, y, x).

Empty-mask rules (no metric ever returns NaN, so nothing silently drops out of a mean)
------------------------------------------------------------------------------------
* ``dice``, ``iou``: 1.0 when both masks are empty, 0.0 when exactly one is.
* ``precision`` TP/(TP+FP): 1.0 when both are empty; 0.0 when only B is empty (0/0).
* ``recall`` TP/(TP+FN): 1.0 when both are empty; 0.0 when only A is empty (0/0).
* ``specificity`` TN/(TN+FP): 1.0 when TN+FP = 0 (A fills the whole grid).
* ``accuracy``: 1.0 for a grid with no voxels.
* ``hd_mm``, ``hd95_mm``, ``assd_mm``: 0.0 when both are empty; when exactly one is empty, the
  penalty :func:`empty_distance_penalty` = the diagonal of the grid extent in mm
  (sqrt(sum((shape * spacing)^2))), the largest distance two voxels of the grid can have.
* ``volume_rel_diff`` = |B-A| / mean(A, B): 0.0 when both are empty, 2.0 when exactly one is.
* ``kappa_slices`` (Cohen's kappa of per-slice presence): 1.0 when both readers give every slice
  the same single class (chance agreement 1 and observed agreement 1; scikit-learn says NaN).
* ``auc``: ``None`` (JSON null, never NaN) when the reference holds a single class: undefined.

Surface distances
-----------------
The surface of a mask is its foreground voxels with at least one face neighbour (6-connectivity)
in the background; voxels on the border of the grid count as surface. Distances run between voxel
centres in mm, honouring anisotropic spacing: exact Euclidean distances from in-plane
``scipy.ndimage.distance_transform_edt`` maps (``sampling=(dy, dx)``) combined across slices with
the slice spacing (:func:`directed_distances`). Only the bounding box of both masks plus a
one-voxel margin is looked at: every surface voxel lies inside it, so the nearest one is found there.

* ``hd_mm``: the symmetric Hausdorff distance, max of both directed maxima.
* ``hd95_mm``: max of the two directed 95th percentiles (``numpy.percentile``, linear), as in
  MONAI's ``compute_hausdorff_distance(percentile=95)``.
* ``assd_mm``: average symmetric surface distance, the mean over the pooled distances of both
  surfaces, sum(d(A->B)) + sum(d(B->A)) over |S_A| + |S_B| (Heimann et al. 2009).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ptx_annotator.geometry import bounding_box as _geometry_box, union_box, voxel_volume_ml

#: 6-connected (face) neighbourhood used to find surface voxels.
FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


# -- confusion-matrix metrics ------------------------------------------------------------------
@dataclass(frozen=True)
class ConfusionCounts:
    """Voxel counts of a test mask against a reference mask."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def as_bool(mask) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def confusion_counts(reference, test) -> ConfusionCounts:
    """TP, FP, FN, TN of ``test`` against ``reference`` (same shape)."""
    a, b = as_bool(reference), as_bool(test)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    n_a, n_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    tp = int(np.count_nonzero(np.logical_and(a, b))) if n_a and n_b else 0
    fp, fn = n_b - tp, n_a - tp
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=int(a.size) - tp - fp - fn)


def _counts(reference, test) -> ConfusionCounts:
    return reference if isinstance(reference, ConfusionCounts) else confusion_counts(reference, test)


def dice(reference, test=None) -> float:
    """Dice / F1 = 2 TP / (2 TP + FP + FN); 1.0 when both masks are empty.

    Takes two masks or one :class:`ConfusionCounts`.
    """
    c = _counts(reference, test)
    denominator = 2 * c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else 2.0 * c.tp / denominator


def iou(reference, test=None) -> float:
    """IoU / Jaccard = TP / (TP + FP + FN); 1.0 when both masks are empty."""
    c = _counts(reference, test)
    denominator = c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else c.tp / denominator


def precision(reference, test=None) -> float:
    """TP / (TP + FP): 1.0 when both are empty, 0.0 when only the test mask is empty."""
    c = _counts(reference, test)
    if c.tp + c.fp == 0:
        return 1.0 if c.fn == 0 else 0.0
    return c.tp / (c.tp + c.fp)


def recall(reference, test=None) -> float:
    """Sensitivity TP / (TP + FN): 1.0 when both are empty, 0.0 when only the reference is empty."""
    c = _counts(reference, test)
    if c.tp + c.fn == 0:
        return 1.0 if c.fp == 0 else 0.0
    return c.tp / (c.tp + c.fn)


def specificity(reference, test=None) -> float:
    """TN / (TN + FP); 1.0 when there are no reference negatives at all."""
    c = _counts(reference, test)
    return 1.0 if c.tn + c.fp == 0 else c.tn / (c.tn + c.fp)


def accuracy(reference, test=None) -> float:
    """(TP + TN) / all voxels; 1.0 for an empty grid."""
    c = _counts(reference, test)
    return 1.0 if c.total == 0 else (c.tp + c.tn) / c.total


def overlap_metrics(reference, test) -> dict:
    """Dice, IoU, precision, recall, specificity, accuracy and the counts, from one pass."""
    c = confusion_counts(reference, test)
    return {
        "dice": dice(c), "iou": iou(c), "precision": precision(c), "recall": recall(c),
        "specificity": specificity(c), "accuracy": accuracy(c),
        "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
    }


# -- probabilities -----------------------------------------------------------------------------
def auc(reference, probability) -> float | None:
    """Area under the ROC curve of voxel probabilities against the reference mask.

    :func:`sklearn.metrics.roc_auc_score` (exact, ties counted half). Returns ``None`` when the
    reference holds only one class: the AUC is undefined there.
    """
    truth = as_bool(reference).ravel()
    scores = np.asarray(probability, dtype=np.float64).ravel()
    if truth.shape != scores.shape:
        raise ValueError(f"reference has {truth.size} voxels but probability has {scores.size}")
    n_pos = int(np.count_nonzero(truth))
    if n_pos == 0 or n_pos == truth.size:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores))


# -- volumes -----------------------------------------------------------------------------------
def volume_ml(mask, spacing) -> float:
    """Foreground volume in mL (cm^3) for voxel ``spacing`` in mm."""
    return float(np.count_nonzero(mask)) * voxel_volume_ml(spacing)


def volume_metrics(reference, test, spacing) -> dict:
    """Both volumes in mL, their signed difference B - A, its absolute value and the relative one.

    ``volume_rel_diff`` is |B - A| / mean(A, B): 0.0 when both are empty, 2.0 when one is.
    """
    va, vb = volume_ml(reference, spacing), volume_ml(test, spacing)
    mean = (va + vb) / 2.0
    return {
        "volume_a_ml": va, "volume_b_ml": vb, "volume_diff_ml": vb - va,
        "volume_abs_diff_ml": abs(vb - va), "volume_rel_diff": 0.0 if mean == 0 else abs(vb - va) / mean,
    }


# -- slice-level presence agreement -----------------------------------------------------------
def slice_presence(mask) -> np.ndarray:
    """Bool per z slice: does the mask mark anything on it?"""
    mask = as_bool(mask)
    return mask.reshape(mask.shape[0], -1).any(axis=1)


def cohen_kappa(labels_a, labels_b) -> float:
    """Cohen's kappa of two binary ratings; 1.0 when both give every item the same single class."""
    x, y = as_bool(labels_a).ravel(), as_bool(labels_b).ravel()
    n = x.size
    if n == 0 or x.shape != y.shape:
        raise ValueError(f"need two equally long, non-empty ratings (got {x.size} and {y.size})")
    observed = float(np.count_nonzero(x == y)) / n
    pa, pb = np.count_nonzero(x) / n, np.count_nonzero(y) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return 1.0  # both constant and equal: observed agreement is 1 too
    return (observed - expected) / (1.0 - expected)


def presence_kappa(reference, test) -> float:
    """Cohen's kappa of "this slice shows pneumothorax" between two readers' masks."""
    return cohen_kappa(slice_presence(reference), slice_presence(test))


# -- surface distances -------------------------------------------------------------------------
def empty_distance_penalty(shape, spacing) -> float:
    """The distance reported when exactly one mask is empty: the diagonal of the grid in mm."""
    return float(np.sqrt(np.sum((np.asarray(shape, float) * np.asarray(spacing, float)) ** 2)))


def surface(mask) -> np.ndarray:
    """Foreground voxels with a background face neighbour; the grid border counts as background."""
    mask = as_bool(mask)
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=FACE_CONNECTIVITY, border_value=0)
    return mask & ~eroded


def bounding_box(mask, margin: int = 1) -> tuple[slice, ...] | None:
    """Slices of the bounding box of the foreground, grown by ``margin`` (:func:`ptx_annotator.geometry.bounding_box`)."""
    return _geometry_box(as_bool(mask), margin)


def _union_box(a: np.ndarray, b: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """Bounding box of a | b without building the full union volume."""
    return union_box(_geometry_box(a, margin), _geometry_box(b, margin))


def surface_distances(reference, test, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of A to B's surface, and from B's to A's.

    Both masks must be non-empty (see :func:`distance_metrics` for the empty rules).
    """
    a, b = as_bool(reference), as_bool(test)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    box = _union_box(a, b, margin=1)
    if box is None or not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    spacing = tuple(float(s) for s in spacing)
    surface_a, surface_b = surface(a[box]), surface(b[box])
    return directed_distances(surface_a, surface_b, spacing), directed_distances(surface_b, surface_a, spacing)


def directed_distances(points_mask: np.ndarray, target_mask: np.ndarray, spacing) -> np.ndarray:
    """Exact distance in mm from every voxel of ``points_mask`` to the nearest voxel of ``target_mask``.

    Separable: the squared in-plane distance map of every slice of the target
    (``distance_transform_edt`` with ``sampling=(dy, dx)``) is combined across slices as
    d^2 = min over z' of D^2_z'(y, x) + ((z - z') dz)^2, visiting slices outward from each point and
    stopping once ((z - z') dz)^2 exceeds the best distance found. For CT, whose slices are far
    thicker than its pixels, only a few slices are visited; the result equals a 3D transform.
    """
    n_slices = target_mask.shape[0]
    dz, dy, dx = (float(s) for s in spacing)
    squared = np.full(target_mask.shape, np.inf)
    for z in np.flatnonzero(target_mask.reshape(n_slices, -1).any(axis=1)):
        squared[z] = ndimage.distance_transform_edt(~target_mask[z], sampling=(dy, dx)) ** 2
    zs, ys, xs = np.nonzero(points_mask)
    best = np.full(zs.size, np.inf)
    for step in range(n_slices):
        reach = (step * dz) ** 2
        open_points = np.flatnonzero(best > reach)
        if open_points.size == 0:
            break
        z0, y0, x0 = zs[open_points], ys[open_points], xs[open_points]
        for z in (z0 - step, z0 + step) if step else (z0,):
            inside = (z >= 0) & (z < n_slices)
            candidate = np.full(open_points.size, np.inf)
            candidate[inside] = squared[z[inside], y0[inside], x0[inside]] + reach
            best[open_points] = np.minimum(best[open_points], candidate)
    return np.sqrt(best)


def distance_metrics(reference, test, spacing) -> dict:
    """``hd_mm``, ``hd95_mm`` and ``assd_mm`` with the empty-mask rules of this module."""
    a, b = as_bool(reference), as_bool(test)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not has_a and not has_b:
        return {"hd_mm": 0.0, "hd95_mm": 0.0, "assd_mm": 0.0}
    if has_a != has_b:
        penalty = empty_distance_penalty(a.shape, spacing)
        return {"hd_mm": penalty, "hd95_mm": penalty, "assd_mm": penalty}
    d_ab, d_ba = surface_distances(a, b, spacing)
    return {
        "hd_mm": float(max(d_ab.max(), d_ba.max())),
        "hd95_mm": float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
        "assd_mm": float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size)),
    }


def hausdorff_mm(reference, test, spacing) -> float:
    return distance_metrics(reference, test, spacing)["hd_mm"]


def hd95_mm(reference, test, spacing) -> float:
    return distance_metrics(reference, test, spacing)["hd95_mm"]


def assd_mm(reference, test, spacing) -> float:
    return distance_metrics(reference, test, spacing)["assd_mm"]


# -- everything at once ------------------------------------------------------------------------
def all_metrics(reference, test, spacing, probability=None) -> dict:
    """Every metric of this module for one pair of masks (``auc`` only when ``probability`` given)."""
    a, b = as_bool(reference), as_bool(test)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    result = overlap_metrics(a, b)
    result.update(distance_metrics(a, b, spacing))
    result.update(volume_metrics(a, b, spacing))
    presence_a, presence_b = slice_presence(a), slice_presence(b)
    result["kappa_slices"] = cohen_kappa(presence_a, presence_b)
    result["slices_with_a"] = int(presence_a.sum())
    result["slices_with_b"] = int(presence_b.sum())
    if probability is not None:
        result["auc"] = auc(a, probability)
    return result
