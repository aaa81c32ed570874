"""Write a comparison to disk: per_slice.csv, summary.json, NIfTI maps and a self-contained report.html.

Every file is written atomically (:mod:`ptx_annotator.atomic`); the NIfTI files carry the CT's
affine, so they open aligned over the CT in 3D Slicer, ITK-SNAP or napari.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ptx_annotator.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from ptx_annotator.compare import BOTH, DISAGREEMENT_COLORS, ONLY_A, ONLY_B, Comparison
from ptx_annotator.io.volume_files import nifti_affine_from_lps, save_mask_nifti
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit
from ptx_annotator.reports import page

PER_SLICE_COLUMNS = ("slice", "dice", "iou", "voxels_a", "voxels_b", "voxels_both", "disagreement_voxels",
                     "disagreement_mm2", "present_a", "present_b")
#: How many of the most disputed slices the report shows with the overlay.
WORST_SLICES_SHOWN = 4


def write_comparison_outputs(comparison: Comparison, out_dir, ct_hu=None) -> dict[str, Path]:
    """Write every output of a comparison into ``out_dir``; returns ``{name: path}``.

    ``ct_hu`` (the CT's (z, y, x) HU array), when given, is the background of the report's slices.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    affine = comparison.affine if comparison.affine is not None else np.diag([*comparison.spacing, 1.0])
    paths = {
        "per_slice": out / "per_slice.csv",
        "summary": out / "summary.json",
        "disagreement": out / "disagreement.nii.gz",
        "consensus": out / "consensus.nii.gz",
    }
    write_bytes_atomic(paths["per_slice"], per_slice_csv(comparison).encode())
    write_json_atomic(paths["summary"], json_safe(comparison.summary))
    _write_mask(comparison.disagreement, affine, paths["disagreement"])
    _write_mask(comparison.consensus, affine, paths["consensus"])
    if comparison.staple_probability is not None:
        paths["staple_probability"] = out / "staple_probability.nii.gz"
        _write_float(comparison.staple_probability, affine, paths["staple_probability"])
    if comparison.majority is not None:
        paths["majority_vote"] = out / "majority_vote.nii.gz"
        _write_mask(comparison.majority, affine, paths["majority_vote"])
    paths["report"] = out / "report.html"
    write_bytes_atomic(paths["report"], report_html(comparison, ct_hu).encode())
    return paths


def per_slice_csv(comparison: Comparison) -> str:
    """The per-slice table of readers A and B as CSV text (one row per z slice)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("reader_a", "reader_b", *PER_SLICE_COLUMNS))
    a, b = comparison.readers[:2]
    for row in comparison.per_slice:
        values = []
        for key in PER_SLICE_COLUMNS:
            value = row.get(key, "")
            values.append(f"{value:.6g}" if isinstance(value, float) else int(value) if isinstance(value, bool) else value)
        writer.writerow((a, b, *values))
    return buffer.getvalue()


def json_safe(value):
    """Plain JSON types; a non-finite float (never produced by the metrics) becomes null, not NaN."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _write_mask(mask, affine, path: Path) -> None:
    with atomic_path(path, suffix=".nii.gz") as tmp:
        save_mask_nifti(np.asarray(mask, dtype=np.uint8), affine, tmp)


def _write_float(volume, affine, path: Path) -> None:
    import nibabel as nib

    nifti_affine = nifti_affine_from_lps(affine)
    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32).transpose(2, 1, 0), nifti_affine)
    image.header.set_qform(nifti_affine, code=1)
    image.header.set_sform(nifti_affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(image, str(tmp))


# -- figures -----------------------------------------------------------------------------------
def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def dice_strip_png(comparison: Comparison) -> str:
    """Per-slice Dice as a colour strip over disputed area bars (base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison.per_slice
    dice = np.array([[r["dice"] for r in rows]])
    area = np.array([r.get("disagreement_mm2", r["disagreement_voxels"]) for r in rows])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 2.8), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    image = top.imshow(dice, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, extent=(-0.5, len(rows) - 0.5, 0, 1))
    top.set_yticks([])
    top.set_title(f"Per-slice Dice, {comparison.readers[0]} vs {comparison.readers[1]} (both empty = 1)")
    figure.colorbar(image, ax=top, fraction=0.03, pad=0.01)
    bottom.bar(np.arange(len(rows)), area, color="0.35", width=0.9)
    bottom.set_ylabel("disputed mm²" if "disagreement_mm2" in rows[0] else "disputed voxels")
    bottom.set_xlabel("slice (z index)")
    bottom.set_xlim(-0.5, len(rows) - 0.5)
    return _png(figure)


def volume_bars_png(comparison: Comparison, volumes_ml: dict[str, float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(volumes_ml)
    figure, axis = plt.subplots(figsize=(max(3.5, 1.2 * len(names)), 2.8))
    colours = ["#e66101", "#2171b5"] + ["0.55"] * (len(names) - 3) + ["#4dac26"]
    axis.bar(names, [volumes_ml[n] for n in names], color=colours)
    axis.set_ylabel("volume (mL)")
    axis.set_title("Volumes per reader and consensus")
    axis.set_ylim(0, max(1e-3, *volumes_ml.values()) * 1.15)
    axis.tick_params(axis="x", labelrotation=20)
    for i, name in enumerate(names):
        axis.text(i, volumes_ml[name], f"{volumes_ml[name]:.1f}", ha="center", va="bottom", fontsize=8)
    return _png(figure)


def worst_slices_png(comparison: Comparison, ct_hu=None, count: int = WORST_SLICES_SHOWN) -> str | None:
    """The most disputed slices with the disagreement overlay, on the CT in a lung window if given."""
    slices = comparison.ranked_slices[:count]
    if not slices:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    spacing_y, spacing_x = comparison.spacing[1], comparison.spacing[2]
    figure, axes = plt.subplots(1, len(slices), figsize=(3.6 * len(slices), 3.9), squeeze=False)
    colours = np.array([DISAGREEMENT_COLORS[v] for v in range(4)], dtype=np.float32)
    for axis, z in zip(axes[0], slices):
        window = _zoom_window(comparison.disagreement[z])
        labels = comparison.disagreement[z][window]
        if ct_hu is not None:
            axis.imshow(hu_to_unit(ct_hu[z][window], LUNG_WINDOW_HU), cmap="gray", vmin=0, vmax=1,
                        aspect=spacing_y / spacing_x, interpolation="nearest")
        else:
            axis.imshow(np.zeros(labels.shape), cmap="gray", vmin=0, vmax=1, aspect=spacing_y / spacing_x)
        overlay = colours[labels]
        overlay[..., 3] *= 0.6
        axis.imshow(overlay, aspect=spacing_y / spacing_x, interpolation="nearest")
        row = comparison.per_slice[z]
        axis.set_title(f"slice {z}: Dice {row['dice']:.2f}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    a, b = comparison.readers[:2]
    handles = [Patch(color=DISAGREEMENT_COLORS[ONLY_A], label=f"only {a}"),
               Patch(color=DISAGREEMENT_COLORS[ONLY_B], label=f"only {b}"),
               Patch(color=DISAGREEMENT_COLORS[BOTH], label="both")]
    figure.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    figure.subplots_adjust(bottom=0.12)
    return _png(figure)


def _zoom_window(labels: np.ndarray, margin: int = 24, minimum: int = 96) -> tuple[slice, slice]:
    """The marked part of a slice plus ``margin`` pixels, at least ``minimum`` pixels wide."""
    rows, columns = np.nonzero(labels)
    window = []
    for hits, size in ((rows, labels.shape[0]), (columns, labels.shape[1])):
        low, high = int(hits.min()) - margin, int(hits.max()) + 1 + margin
        if high - low < minimum:
            centre = (low + high) // 2
            low, high = centre - minimum // 2, centre + minimum // 2
        window.append(slice(max(0, low), min(size, high)))
    return tuple(window)


# -- HTML --------------------------------------------------------------------------------------
_HEADLINE = (("dice", "Dice", "{:.3f}"), ("iou", "IoU", "{:.3f}"), ("precision", "Precision (B vs A)", "{:.3f}"),
             ("recall", "Recall (B vs A)", "{:.3f}"), ("specificity", "Specificity", "{:.5f}"),
             ("hd95_mm", "HD95 (mm)", "{:.2f}"), ("assd_mm", "ASSD (mm)", "{:.2f}"), ("hd_mm", "Hausdorff (mm)", "{:.2f}"),
             ("volume_a_ml", "Volume A (mL)", "{:.2f}"), ("volume_b_ml", "Volume B (mL)", "{:.2f}"),
             ("volume_diff_ml", "Volume B − A (mL)", "{:+.2f}"), ("volume_rel_diff", "|B − A| / mean", "{:.3f}"),
             ("kappa_slices", "Slice presence κ", "{:.3f}"), ("slices_disagreeing", "Slices disputed", "{}"))


def report_html(comparison: Comparison, ct_hu=None) -> str:
    """A self-contained HTML page (``templates/comparison.html``; PNG figures embedded as base64)."""
    s = comparison.summary
    a, b = comparison.readers[:2]
    summary_rows = [(label, fmt.format(s[key])) for key, label, fmt in _HEADLINE if key in s]
    pairs = [(p["reader_a"], p["reader_b"], f"{p['dice']:.3f}", f"{p['hd95_mm']:.2f}", f"{p['assd_mm']:.2f}",
              f"{p['volume_diff_ml']:+.2f}") for p in comparison.pairs]
    volumes = {name: 0.0 for name in comparison.readers}
    for p in comparison.pairs:
        volumes[p["reader_a"]], volumes[p["reader_b"]] = p["volume_a_ml"], p["volume_b_ml"]
    volumes[f"consensus ({comparison.consensus_method.split('_')[0]})"] = s["consensus_volume_ml"]
    worst = worst_slices_png(comparison, ct_hu)
    worst_rows = [(z, f"{comparison.per_slice[z]['dice']:.3f}", comparison.per_slice[z]["voxels_a"],
                   comparison.per_slice[z]["voxels_b"], comparison.per_slice[z]["disagreement_voxels"])
                  for z in comparison.ranked_slices[:10]]
    return page.render(
        "comparison", reader_a=a, reader_b=b, readers=", ".join(comparison.readers),
        grid=" × ".join(str(n) for n in s["shape"]), spacing=" × ".join(f"{v:g}" for v in s["spacing_mm"]),
        consensus=comparison.consensus_method.replace("_", " "),
        summary_table=page.table(None, summary_rows, row_headers=True), penalty=f"{_penalty(s):.1f}",
        pairs_table=page.table(("A", "B", "Dice", "HD95 (mm)", "ASSD (mm)", "B − A (mL)"), pairs),
        dice_strip=page.image(dice_strip_png(comparison), "per-slice Dice strip"),
        volume_bars=page.image(volume_bars_png(comparison, volumes), "volume bars"),
        background="on the CT in a lung window (W 1500 / L −600)" if ct_hu is not None else "(CT not available)",
        worst_block=(page.image(worst, "most disputed slices") if worst
                     else page.Markup("<p>The readers agree on every voxel.</p>")),
        worst_table=page.table(("slice", "Dice", "voxels A", "voxels B", "disputed voxels"), worst_rows),
        summary_json=json.dumps(json_safe(s), indent=1))


def _penalty(summary: dict) -> float:
    from ptx_annotator.metrics import empty_distance_penalty

    return empty_distance_penalty(summary["shape"], summary["spacing_mm"])
