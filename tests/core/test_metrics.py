"""Every metric of ptx_annotator.metrics against an independent reference (scikit-learn, SimpleITK)."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ptx_annotator import metrics as M

SPACING = (2.5, 0.7, 0.9)  # (z, y, x) mm, deliberately anisotropic in all three axes


def _blob(rng, shape=(14, 48, 52), sigma=2.0, fraction=0.25):
    """A random, lumpy, multi-component binary mask covering about ``fraction`` of the grid."""
    smooth = ndimage.gaussian_filter(rng.random(shape), sigma)
    return smooth > np.quantile(smooth, 1.0 - fraction)


def _pair(seed):
    rng = np.random.default_rng(seed)
    a = _blob(rng)
    b = _blob(rng)
    b |= np.roll(a, (1, 3, -2), axis=(0, 1, 2)) & (rng.random(a.shape) > 0.3)
    a[0, 5:15, 0:6] = True  # touches the grid border on two faces
    return a, b


def _sitk(mask, spacing=SPACING, pad=False):
    image = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))  # SimpleITK is (x, y, z)
    return sitk.ConstantPad(image, [1, 1, 1], [1, 1, 1], 0) if pad else image


def _sitk_contour(mask, spacing=SPACING):
    """Face-connected contour by SimpleITK, on a zero-padded copy (the grid border is background)."""
    return sitk.BinaryContour(_sitk(mask, spacing, pad=True), fullyConnected=False, backgroundValue=0, foregroundValue=1)


def _sitk_directed_distances(a, b, spacing=SPACING):
    """Distances (mm) from each contour voxel of a to b's contour, via SimpleITK's Maurer distance map."""
    contour_a = sitk.GetArrayFromImage(_sitk_contour(a, spacing)).astype(bool)
    distance_to_b = sitk.SignedMaurerDistanceMap(
        _sitk_contour(b, spacing), insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    values = sitk.GetArrayFromImage(distance_to_b)[contour_a]
    return np.clip(values, 0.0, None)  # voxels of b's contour itself read <= 0: distance 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_confusion_metrics_match_scikit_learn(seed):
    a, b = _pair(seed)
    y_true, y_pred = a.ravel(), b.ravel()
    got = M.overlap_metrics(a, b)
    assert got["dice"] == pytest.approx(f1_score(y_true, y_pred))
    assert got["iou"] == pytest.approx(jaccard_score(y_true, y_pred))
    assert got["precision"] == pytest.approx(precision_score(y_true, y_pred))
    assert got["recall"] == pytest.approx(recall_score(y_true, y_pred))
    assert got["specificity"] == pytest.approx(recall_score(~y_true, ~y_pred))
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert 0.2 < got["dice"] < 0.95  # a pair that really differs, not a trivial case


def test_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(7)
    truth = _blob(rng, shape=(6, 30, 30))
    probability = np.clip(truth * 0.3 + rng.random(truth.shape) * 0.8, 0, 1)
    probability = np.round(probability, 2)  # many ties
    assert M.auc(truth, probability) == pytest.approx(roc_auc_score(truth.ravel(), probability.ravel()), abs=1e-12)
    assert M.auc(np.zeros((2, 3, 3)), np.ones((2, 3, 3))) is None
    assert M.auc(np.ones((2, 3, 3)), np.ones((2, 3, 3))) is None


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_presence_kappa_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = np.zeros((30, 8, 8), bool)
    b = np.zeros((30, 8, 8), bool)
    a[rng.random(30) > 0.5, 2, 2] = True
    b[rng.random(30) > 0.4, 3, 3] = True
    expected = cohen_kappa_score(M.slice_presence(a), M.slice_presence(b))
    assert M.presence_kappa(a, b) == pytest.approx(expected)
    assert M.slice_presence(a).tolist() == [bool(a[z].any()) for z in range(30)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_surfaces_match_simpleitk_binary_contour(seed):
    a, _ = _pair(seed)
    contour = sitk.GetArrayFromImage(_sitk_contour(a)).astype(bool)[1:-1, 1:-1, 1:-1]
    np.testing.assert_array_equal(M.surface(a), contour)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hausdorff_matches_simpleitk_filter(seed):
    a, b = _pair(seed)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(_sitk_contour(a), _sitk_contour(b))
    got = M.distance_metrics(a, b, SPACING)
    assert got["hd_mm"] == pytest.approx(hausdorff.GetHausdorffDistance(), rel=1e-6)
    assert got["hd_mm"] > 3.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hd95_and_assd_match_simpleitk_distance_maps(seed):
    a, b = _pair(seed)
    d_ab, d_ba = _sitk_directed_distances(a, b), _sitk_directed_distances(b, a)
    got = M.distance_metrics(a, b, SPACING)
    expected_hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    expected_assd = (d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size)
    assert got["hd95_mm"] == pytest.approx(expected_hd95, rel=1e-5)
    assert got["assd_mm"] == pytest.approx(expected_assd, rel=1e-5)
    assert 0 < got["assd_mm"] < got["hd95_mm"] <= got["hd_mm"]


def test_spacing_is_honoured_per_axis():
    """One voxel shift along z costs the z spacing, along x the x spacing."""
    a = np.zeros((10, 20, 20), bool)
    a[3:6, 5:10, 5:10] = True
    along_z = M.distance_metrics(a, np.roll(a, 1, axis=0), SPACING)
    along_x = M.distance_metrics(a, np.roll(a, 1, axis=2), SPACING)
    assert along_z["hd_mm"] == pytest.approx(2.5)
    assert along_x["hd_mm"] == pytest.approx(0.9)


def test_cropping_gives_the_full_volume_answer():
    """Masks far apart in a big grid: the cropped transform equals a full-grid brute force."""
    a = np.zeros((20, 90, 90), bool)
    b = np.zeros_like(a)
    a[2:5, 3:9, 4:10] = True
    b[15:19, 70:80, 60:75] = True
    got = M.distance_metrics(a, b, SPACING)
    za, ya, xa = np.nonzero(M.surface(a))
    zb, yb, xb = np.nonzero(M.surface(b))
    pa = np.stack([za, ya, xa], 1) * SPACING
    pb = np.stack([zb, yb, xb], 1) * SPACING
    pairwise = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    d_ab, d_ba = pairwise.min(1), pairwise.min(0)
    assert got["hd_mm"] == pytest.approx(max(d_ab.max(), d_ba.max()))
    assert got["assd_mm"] == pytest.approx((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size))


def test_volumes_in_millilitres():
    a = np.zeros((10, 20, 20), bool)
    b = np.zeros_like(a)
    a[0:4, 0:10, 0:10] = True  # 400 voxels
    b[0:2, 0:10, 0:10] = True  # 200 voxels
    voxel_ml = 2.5 * 0.7 * 0.9 / 1000
    got = M.volume_metrics(a, b, SPACING)
    assert got["volume_a_ml"] == pytest.approx(400 * voxel_ml)
    assert got["volume_b_ml"] == pytest.approx(200 * voxel_ml)
    assert got["volume_diff_ml"] == pytest.approx(-200 * voxel_ml)
    assert got["volume_abs_diff_ml"] == pytest.approx(200 * voxel_ml)
    assert got["volume_rel_diff"] == pytest.approx(200 / 300)


def test_both_empty_means_perfect_agreement():
    empty = np.zeros((5, 10, 10), bool)
    got = M.all_metrics(empty, empty, SPACING, probability=np.zeros(empty.shape))
    for key in ("dice", "iou", "precision", "recall", "specificity", "accuracy", "kappa_slices"):
        assert got[key] == 1.0, key
    for key in ("hd_mm", "hd95_mm", "assd_mm", "volume_a_ml", "volume_diff_ml", "volume_rel_diff"):
        assert got[key] == 0.0, key
    assert got["auc"] is None


@pytest.mark.parametrize("empty_side", ["a", "b"])
def test_one_empty_scores_zero_and_the_distance_penalty(empty_side):
    shape = (5, 10, 12)
    full = np.zeros(shape, bool)
    full[1:3, 2:6, 2:6] = True
    empty = np.zeros(shape, bool)
    a, b = (empty, full) if empty_side == "a" else (full, empty)
    got = M.all_metrics(a, b, SPACING)
    penalty = math.sqrt((5 * 2.5) ** 2 + (10 * 0.7) ** 2 + (12 * 0.9) ** 2)
    assert M.empty_distance_penalty(shape, SPACING) == pytest.approx(penalty)
    assert got["dice"] == 0.0 and got["iou"] == 0.0
    assert got["precision"] == 0.0 and got["recall"] == 0.0
    assert got["hd_mm"] == got["hd95_mm"] == got["assd_mm"] == pytest.approx(penalty)
    assert got["volume_rel_diff"] == 2.0
    assert got["kappa_slices"] == pytest.approx(cohen_kappa_score(M.slice_presence(a), M.slice_presence(b)))
    # scikit-learn's zero_division=0 agrees with the documented 0/0 rule for precision and recall
    assert got["precision"] == precision_score(a.ravel(), b.ravel(), zero_division=0)
    assert got["recall"] == recall_score(a.ravel(), b.ravel(), zero_division=0)


def test_no_metric_is_ever_nan_so_means_keep_every_case():
    rng = np.random.default_rng(11)
    shape = (4, 12, 12)
    cases = [(np.zeros(shape, bool), np.zeros(shape, bool)), (np.ones(shape, bool), np.ones(shape, bool)),
             (np.zeros(shape, bool), np.ones(shape, bool)), (_blob(rng, shape, 1.0), _blob(rng, shape, 1.0))]
    for a, b in cases:
        values = M.all_metrics(a, b, SPACING)
        assert all(math.isfinite(v) for v in values.values() if v is not None), values
    assert M.specificity(np.ones(shape), np.ones(shape)) == 1.0  # no negatives at all
    assert M.cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
