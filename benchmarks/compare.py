"""Benchmark: full comparison of two 64x512x512 masks (overlap, HD95, ASSD, volumes, per slice, consensus).

Reader A is a simulated right pneumothorax on the real TCIA chest CT (``ptx_annotator.synthetic.pneumothorax``;
without the shared data, a synthetic crescent on the same grid); reader B is A eroded by two
pixels in-plane and shifted by (0, 4, -3) voxels. The ratios compare, in the same run, with naive
references for the distance part: scipy's 3D ``distance_transform_edt`` over the full grid (no
cropping), and SimpleITK's Maurer distance maps over the full grid.

    .venv/bin/python benchmarks/compare.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ptx_annotator import metrics
from ptx_annotator.compare import compare_masks

TCIA_CT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"


def reader_masks():
    """(A, B, spacing, description)."""
    if TCIA_CT.exists():
        from ptx_annotator.io import load_series
        from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

        volume = load_series(TCIA_CT)
        a = simulate_pneumothorax(volume, side="right", fraction=0.2, seed=3).mask.astype(bool)
        spacing, what = volume.spacing, "simulated right pneumothorax (20 %) on the TCIA CT"
    else:
        spacing, what = (5.0, 0.842, 0.842), "synthetic crescent (shared data absent)"
        z, y, x = np.ogrid[:64, :512, :512]
        outer = ((y - 256) / 200.0) ** 2 + ((x - 170) / 120.0) ** 2 + ((z - 32) / 30.0) ** 2 < 1
        inner = ((y - 270) / 185.0) ** 2 + ((x - 185) / 105.0) ** 2 + ((z - 32) / 28.0) ** 2 < 1
        a = outer & ~inner
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    b = np.roll(ndimage.binary_erosion(a, structure=in_plane, iterations=2), (0, 4, -3), axis=(0, 1, 2))
    return a, b, tuple(float(s) for s in spacing), what


def naive_scipy(a, b, spacing) -> dict:
    """Surface distances via two full-grid 3D distance transforms (no cropping)."""
    surface_a, surface_b = metrics.surface(a), metrics.surface(b)
    d_ab = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
    d_ba = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
    return _summarise(d_ab, d_ba)


def naive_simpleitk(a, b, spacing) -> dict:
    """Surface distances via SimpleITK contours and Maurer distance maps over the full grid."""
    import SimpleITK as sitk

    def contour(mask):
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(tuple(reversed(spacing)))
        padded = sitk.ConstantPad(image, [1, 1, 1], [1, 1, 1], 0)
        return sitk.BinaryContour(padded, fullyConnected=False, backgroundValue=0, foregroundValue=1)

    contour_a, contour_b = contour(a), contour(b)
    on_a = sitk.GetArrayFromImage(contour_a).astype(bool)
    on_b = sitk.GetArrayFromImage(contour_b).astype(bool)

    def distance_map(image):
        return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
            image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))

    d_ab = np.clip(distance_map(contour_b)[on_a], 0, None)
    d_ba = np.clip(distance_map(contour_a)[on_b], 0, None)
    return _summarise(d_ab, d_ba)


def _summarise(d_ab, d_ba) -> dict:
    return {"hd95_mm": float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
            "assd_mm": float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size))}


def timed(function, repeats):
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    a, b, spacing, what = reader_masks()
    print(f"masks: {what}; grid {a.shape}, spacing {spacing} mm; "
          f"A {a.sum()} voxels, B {b.sum()} voxels, union box {[s.stop - s.start for s in metrics.bounding_box(a | b)]}")

    comparison, full = timed(lambda: compare_masks({"A": a, "B": b}, spacing), args.repeats)
    distances, ours = timed(lambda: metrics.distance_metrics(a, b, spacing), args.repeats)
    reference_scipy, scipy_seconds = timed(lambda: naive_scipy(a, b, spacing), 1)
    reference_sitk, sitk_seconds = timed(lambda: naive_simpleitk(a, b, spacing), 1)

    s = comparison.summary
    print(f"result: Dice {s['dice']:.4f}, HD95 {s['hd95_mm']:.3f} mm, ASSD {s['assd_mm']:.4f} mm, "
          f"volumes {s['volume_a_ml']:.1f} / {s['volume_b_ml']:.1f} mL, kappa {s['kappa_slices']:.3f}")
    for name, reference in (("scipy full-grid 3D EDT", reference_scipy), ("SimpleITK full-grid Maurer", reference_sitk)):
        same = all(abs(reference[k] - distances[k]) <= 1e-4 * max(1.0, reference[k]) for k in ("hd95_mm", "assd_mm"))
        print(f"{name}: HD95 {reference['hd95_mm']:.3f} mm, ASSD {reference['assd_mm']:.4f} mm -> "
              f"{'identical' if same else 'DIFFERENT'} to ours")
    full_median, ours_median = statistics.median(full), statistics.median(ours)
    print(f"full comparison (compare_masks, 2 readers): median {full_median:.3f} s of {args.repeats} "
          f"(min {min(full):.3f} s) -- target < 2 s: {'met' if full_median < 2 else 'NOT met'}")
    print(f"surface distances only (HD, HD95, ASSD): median {ours_median:.3f} s")
    print(f"naive scipy full-grid 3D EDT: {scipy_seconds[0]:.3f} s -> ours is {scipy_seconds[0] / ours_median:.1f}x faster")
    print(f"naive SimpleITK full-grid Maurer: {sitk_seconds[0]:.3f} s -> ours is {sitk_seconds[0] / ours_median:.1f}x faster")


if __name__ == "__main__":
    main()
