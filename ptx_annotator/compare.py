"""Inter-annotator comparison: per-slice and per-volume agreement, disagreement map, consensus.

Readers are compared pairwise with :mod:`ptx_annotator.metrics`; the first two readers named are
"A" and "B" of the headline summary, the per-slice table and the disagreement map.

Consensus
---------
* Majority vote: a voxel is foreground when more than half of the readers mark it. A tie (exactly
  half, which needs an even number of readers) counts as background unless ``tie_positive=True``;
  with two readers the majority vote is therefore their intersection (both agree).
* STAPLE (Warfield et al. 2004, SimpleITK ``STAPLEImageFilter``): the per-voxel probability of
  the hidden true segmentation and each reader's estimated sensitivity and specificity. It runs on
  the bounding box of all masks grown by ``STAPLE_MARGIN`` voxels (no reader marked anything
  outside it; probability 0 there), which keeps it fast and keeps the acres of empty air far from
  every mask from dominating the prior. The consensus is probability > 0.5.

:func:`compare_masks` uses STAPLE as the consensus of three or more readers (keeping their
majority vote beside it) and the majority vote, i.e. the intersection, for two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptx_annotator import metrics
from ptx_annotator.errors import GeometryMismatchError, PtxError
from ptx_annotator.geometry import bounding_box
from ptx_annotator.volume import check_same_geometry

#: Values of the disagreement map (a napari Labels layer).
AGREE_BACKGROUND, ONLY_A, ONLY_B, BOTH = 0, 1, 2, 3
DISAGREEMENT_NAMES = {AGREE_BACKGROUND: "none", ONLY_A: "only A", ONLY_B: "only B", BOTH: "both"}
#: RGBA colours (0..1) of the disagreement values, shared by the report and the napari layer.
DISAGREEMENT_COLORS = {
    AGREE_BACKGROUND: (0.0, 0.0, 0.0, 0.0),
    ONLY_A: (0.90, 0.38, 0.0, 1.0),   # orange
    ONLY_B: (0.13, 0.45, 0.85, 1.0),  # blue
    BOTH: (0.30, 0.75, 0.29, 1.0),    # green
}
#: Margin (z, y, x voxels) around all masks within which STAPLE runs.
STAPLE_MARGIN = (2, 8, 8)


# -- per slice ---------------------------------------------------------------------------------
def per_slice_agreement(reference, test, spacing=None) -> list[dict]:
    """One record per z slice: Dice, IoU, voxel counts of A, B and both, presence, disagreement.

    Dice and IoU follow the empty rules of :mod:`ptx_annotator.metrics` (both empty: 1.0).
    With ``spacing``, ``disagreement_mm2`` gives the disputed area of the slice.
    """
    a, b = metrics.as_bool(reference), metrics.as_bool(test)
    n_a = a.sum(axis=(1, 2), dtype=np.int64)
    n_b = b.sum(axis=(1, 2), dtype=np.int64)
    both = np.logical_and(a, b).sum(axis=(1, 2), dtype=np.int64)
    pixel_mm2 = float(spacing[1]) * float(spacing[2]) if spacing is not None else None
    rows = []
    for z in range(a.shape[0]):
        union = int(n_a[z] + n_b[z] - both[z])
        sum_ab = int(n_a[z] + n_b[z])
        disagreement = union - int(both[z])
        row = {
            "slice": z,
            "dice": 1.0 if sum_ab == 0 else 2.0 * int(both[z]) / sum_ab,
            "iou": 1.0 if union == 0 else int(both[z]) / union,
            "voxels_a": int(n_a[z]),
            "voxels_b": int(n_b[z]),
            "voxels_both": int(both[z]),
            "disagreement_voxels": disagreement,
            "present_a": bool(n_a[z]),
            "present_b": bool(n_b[z]),
        }
        if pixel_mm2 is not None:
            row["disagreement_mm2"] = disagreement * pixel_mm2
        rows.append(row)
    return rows


def rank_slices_by_disagreement(rows: list[dict]) -> list[int]:
    """Slices where A and B differ, most disputed voxels first (then lower Dice, then index)."""
    disputed = [row for row in rows if row["disagreement_voxels"] > 0]
    disputed.sort(key=lambda row: (-row["disagreement_voxels"], row["dice"], row["slice"]))
    return [row["slice"] for row in disputed]


def slice_table(rows: list[dict]) -> list[dict]:
    """Rows of slices that either reader marked, most disputed first (then lower Dice, then index)."""
    marked = [row for row in rows if row["present_a"] or row["present_b"]]
    return sorted(marked, key=lambda row: (-row["disagreement_voxels"], row["dice"], row["slice"]))


def disagreement_map(reference, test) -> np.ndarray:
    """uint8 volume: 0 neither reader, 1 only A, 2 only B, 3 both."""
    a, b = metrics.as_bool(reference), metrics.as_bool(test)
    out = a.astype(np.uint8)
    out[b] += 2
    return out


# -- consensus ---------------------------------------------------------------------------------
def majority_vote(masks, tie_positive: bool = False) -> np.ndarray:
    """uint8 consensus: foreground where more than half the readers agree (ties: see module doc)."""
    masks = [metrics.as_bool(m) for m in masks]
    if not masks:
        raise ValueError("majority vote needs at least one mask")
    votes = np.zeros(masks[0].shape, dtype=np.uint16)
    for mask in masks:
        votes += mask
    n = len(masks)
    winning = votes * 2 >= n if tie_positive else votes * 2 > n
    return winning.astype(np.uint8)


@dataclass
class StapleResult:
    """STAPLE consensus with per-voxel probability and per-reader performance estimates."""

    probability: np.ndarray
    consensus: np.ndarray
    sensitivity: list[float]
    specificity: list[float]
    iterations: int


def staple(masks, threshold: float = 0.5, margin=STAPLE_MARGIN) -> StapleResult:
    """STAPLE (SimpleITK) of two or more binary masks; runs in the masks' bounding box + ``margin``."""
    import SimpleITK as sitk

    masks = [metrics.as_bool(m) for m in masks]
    if len(masks) < 2:
        raise ValueError("STAPLE needs at least two readers")
    shape = masks[0].shape
    union = np.zeros(shape, dtype=bool)
    for mask in masks:
        union |= mask
    probability = np.zeros(shape, dtype=np.float32)
    box = bounding_box(union, margin)
    if box is None:  # nobody marked anything
        n = len(masks)
        return StapleResult(probability, np.zeros(shape, np.uint8), [1.0] * n, [1.0] * n, 0)
    staple_filter = sitk.STAPLEImageFilter()
    staple_filter.SetForegroundValue(1.0)
    images = [sitk.GetImageFromArray(np.ascontiguousarray(m[box], dtype=np.uint8)) for m in masks]
    result = staple_filter.Execute(images)
    probability[box] = np.nan_to_num(sitk.GetArrayFromImage(result), nan=0.0).astype(np.float32)
    return StapleResult(
        probability=probability,
        consensus=(probability > threshold).astype(np.uint8),
        sensitivity=[float(v) for v in staple_filter.GetSensitivity()],
        specificity=[float(v) for v in staple_filter.GetSpecificity()],
        iterations=int(staple_filter.GetElapsedIterations()),
    )


# -- whole comparison --------------------------------------------------------------------------
@dataclass
class Comparison:
    """Everything a comparison of two or more readers produced."""

    readers: list[str]
    spacing: tuple[float, float, float]
    affine: np.ndarray | None
    summary: dict
    per_slice: list[dict]
    ranked_slices: list[int]
    disagreement: np.ndarray
    consensus: np.ndarray
    consensus_method: str
    staple_probability: np.ndarray | None = None
    majority: np.ndarray | None = None  # majority vote of 3+ readers (with 2 it is the consensus)
    pairs: list[dict] = field(default_factory=list)


def compare_masks(masks: dict, spacing, affine=None, affines: dict | None = None) -> Comparison:
    """Compare readers' masks (``{name: (z, y, x) mask}``, at least two, A and B first).

    ``affines`` (``{name: 4x4}``), when given, must agree within 0.01 mm; shapes must always agree.
    Raises :class:`GeometryMismatchError` otherwise.
    """
    names = list(masks)
    if len(names) < 2:
        raise PtxError(f"A comparison needs at least two readers' masks; got {len(names)} ({', '.join(names)}).")
    arrays = {name: metrics.as_bool(masks[name]) for name in names}
    first = names[0]
    for name in names[1:]:
        if affines is not None:
            check_same_geometry(arrays[first].shape, affines[first], arrays[name].shape, affines[name],
                                f"the mask of '{first}'", f"the mask of '{name}'")
        elif arrays[first].shape != arrays[name].shape:
            raise GeometryMismatchError(
                f"The mask of '{first}' has shape {arrays[first].shape} (z, y, x) but the mask of '{name}' has "
                f"{arrays[name].shape}: they are not on the same voxel grid. Resample one onto the other first."
            )
    if affine is None and affines is not None:
        affine = affines[first]
    spacing = tuple(float(s) for s in spacing)
    a, b = arrays[names[0]], arrays[names[1]]

    summary = {"reader_a": names[0], "reader_b": names[1], "readers": names,
               "shape": list(a.shape), "spacing_mm": list(spacing)}
    summary.update(metrics.all_metrics(a, b, spacing))
    rows = per_slice_agreement(a, b, spacing)
    ranked = rank_slices_by_disagreement(rows)
    summary["n_slices"] = len(rows)
    summary["slices_disagreeing"] = len(ranked)
    summary["worst_slices"] = ranked[:10]

    pairs = []
    for i, name_i in enumerate(names):
        for name_j in names[i + 1:]:
            if (name_i, name_j) == (names[0], names[1]):
                pair = {k: summary[k] for k in _PAIR_KEYS}
            else:
                pair = {k: v for k, v in metrics.all_metrics(arrays[name_i], arrays[name_j], spacing).items() if k in _PAIR_KEYS}
            pairs.append({"reader_a": name_i, "reader_b": name_j, **pair})
    summary["pairs"] = pairs

    staple_probability = None
    if len(names) >= 3:  # STAPLE is the consensus; the majority vote is kept beside it
        staple_result = staple([arrays[n] for n in names])
        consensus, method = staple_result.consensus, "staple"
        staple_probability = staple_result.probability
        majority = majority_vote([arrays[n] for n in names])
        summary["staple"] = {
            "sensitivity": dict(zip(names, staple_result.sensitivity)),
            "specificity": dict(zip(names, staple_result.specificity)),
            "iterations": staple_result.iterations,
            "dice_with_majority_vote": metrics.dice(consensus, majority),
        }
    else:
        majority = None
        consensus, method = majority_vote([a, b]), "majority_vote_intersection"
    summary["consensus_method"] = method
    summary["consensus_volume_ml"] = metrics.volume_ml(consensus, spacing)
    summary["dice_with_consensus"] = {n: metrics.dice(consensus, arrays[n]) for n in names}
    return Comparison(
        readers=names, spacing=spacing, affine=None if affine is None else np.asarray(affine, float),
        summary=summary, per_slice=rows, ranked_slices=ranked, disagreement=disagreement_map(a, b),
        consensus=consensus, consensus_method=method, staple_probability=staple_probability, pairs=pairs,
        majority=majority,
    )


_PAIR_KEYS = ("dice", "iou", "precision", "recall", "specificity", "hd95_mm", "assd_mm",
              "volume_a_ml", "volume_b_ml", "volume_diff_ml", "kappa_slices")


# -- loading readers' masks --------------------------------------------------------------------
def load_annotator_masks(study, annotators, store_dir=None, series_uid=None):
    """The CT volume and ``{annotator: mask}`` from the annotation store of a study."""
    from ptx_annotator.io import load_volume
    from ptx_annotator.review.store import AnnotationStore

    volume = load_volume(study, series_uid)
    store = AnnotationStore.for_study(study, store_dir)
    masks = {}
    for name in annotators:
        annotation = store.load(volume.key, name, volume)
        if annotation is None:
            known = ", ".join(store.annotators(volume.key)) or "none"
            raise PtxError(
                f"Annotator '{name}' has no saved mask for series {volume.key} in the store '{store.root}' "
                f"(annotators there: {known}). Check the name, or give --store / --series."
            )
        check_same_geometry(volume.shape, volume.affine, annotation.mask.shape, annotation.affine,
                            "the CT", f"the mask of '{name}'")
        masks[annotation.annotator] = annotation.mask
    return volume, masks


def load_mask_files(paths):
    """``({reader: mask}, {reader: affine})`` from NIfTI mask files; readers named by file stem."""
    from ptx_annotator.io import load_mask_nifti

    masks, affines = {}, {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise PtxError(f"Mask file '{path}' does not exist: give NIfTI masks (.nii.gz) on the CT's grid.")
        name = path.name
        for suffix in (".nii.gz", ".nii"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
        base, k = name, 2
        while name in masks:
            name, k = f"{base}_{k}", k + 1
        masks[name], affines[name] = load_mask_nifti(path)
    return masks, affines
