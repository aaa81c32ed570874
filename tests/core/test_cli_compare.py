"""`ptx-annotate compare` on the real TCIA CT: a simulated pneumothorax vs an eroded, shifted copy."""

import base64
import csv
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ptx_annotator.cli import main
from ptx_annotator.io import load_mask_nifti, save_mask_nifti
from ptx_annotator.review.store import Annotation, AnnotationStore

SHIFT = (0, 4, -3)  # voxels (z, y, x) of reader B's copy


def _truth_mask(volume) -> np.ndarray:
    """Truth: a simulated right pneumothorax; if the simulator is not available, a rim of real lung air."""
    try:
        from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax
    except ImportError:
        return _right_lung_rim(volume)
    return simulate_pneumothorax(volume, side="right", fraction=0.2, seed=3).mask.astype(np.uint8)


def _right_lung_rim(volume) -> np.ndarray:
    """The outer 10 mm of the patient's right lung air (real anatomy of the TCIA CT)."""
    air = np.asarray(volume.hu) < -400
    labels, _ = ndimage.label(air)
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    inside = air & ~np.isin(labels, border)
    x_lps = volume.affine[0, 2] * np.arange(volume.shape[2]) + volume.affine[0, 3]
    right = inside & (x_lps < np.median(x_lps[np.nonzero(inside.any(axis=(0, 1)))[0]]))[None, None, :]
    lung_labels, n = ndimage.label(right)
    lung = lung_labels == (1 + int(np.argmax(ndimage.sum(right, lung_labels, range(1, n + 1)))))
    depth = ndimage.distance_transform_edt(lung, sampling=volume.spacing)
    return (lung & (depth < 10.0)).astype(np.uint8)


@pytest.fixture(scope="module")
def two_readers(tcia_volume, tmp_path_factory):
    truth = _truth_mask(tcia_volume)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    eroded = ndimage.binary_erosion(truth, structure=in_plane, iterations=2)
    reader_b = np.roll(eroded, SHIFT, axis=(0, 1, 2)).astype(np.uint8)
    folder = tmp_path_factory.mktemp("readers")
    paths = folder / "truth.nii.gz", folder / "reader_b.nii.gz"
    save_mask_nifti(truth, tcia_volume.affine, paths[0])
    save_mask_nifti(reader_b, tcia_volume.affine, paths[1])
    return truth, reader_b, paths


def _sitk_surface_hausdorff(a, b, spacing):
    """Hausdorff distance of the face-connected contours, by SimpleITK alone."""
    images = []
    for mask in (a, b):
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(tuple(reversed([float(s) for s in spacing])))
        image = sitk.ConstantPad(image, [1, 1, 1], [1, 1, 1], 0)
        images.append(sitk.BinaryContour(image, fullyConnected=False, backgroundValue=0, foregroundValue=1))
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(*images)
    return hausdorff.GetHausdorffDistance()


def test_compare_two_mask_files_writes_every_output(two_readers, tcia_volume, tcia_dir, tmp_path, capsys):
    truth, reader_b, paths = two_readers
    assert truth.sum() > 10000 and reader_b.sum() > 1000
    out = tmp_path / "out"
    rc = main(["compare", str(tcia_dir), "--masks", str(paths[0]), str(paths[1]), "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((out / "summary.json").read_text())
    for key in ("dice", "iou", "precision", "recall", "specificity", "hd95_mm", "assd_mm",
                "volume_a_ml", "volume_b_ml", "volume_diff_ml", "kappa_slices"):
        assert isinstance(summary[key], float), key
    assert summary["reader_a"] == "truth" and summary["reader_b"] == "reader_b"

    spacing = tcia_volume.spacing
    voxel_ml = float(np.prod(spacing)) / 1000
    # independent figures: voxel counts by hand, SimpleITK's Hausdorff on the contours
    both = int(np.count_nonzero(truth & reader_b))
    assert summary["dice"] == pytest.approx(2 * both / (truth.sum() + reader_b.sum()))
    assert 0.2 < summary["dice"] < 0.95
    assert summary["volume_a_ml"] == pytest.approx(truth.sum() * voxel_ml)
    assert summary["volume_diff_ml"] == pytest.approx((int(reader_b.sum()) - int(truth.sum())) * voxel_ml)
    assert summary["precision"] > summary["recall"]  # B is an eroded (smaller) copy
    shift_mm = float(np.hypot(SHIFT[1] * spacing[1], SHIFT[2] * spacing[2]))
    assert shift_mm < summary["hd95_mm"] <= summary["hd_mm"] + 1e-9
    assert 0 < summary["assd_mm"] < summary["hd95_mm"]
    assert summary["hd_mm"] == pytest.approx(_sitk_surface_hausdorff(truth, reader_b, spacing), rel=1e-6)

    rows = list(csv.DictReader((out / "per_slice.csv").open()))
    assert len(rows) == 64
    for z in (0, 20, 40, 63):
        assert int(rows[z]["voxels_a"]) == int(truth[z].sum()) and int(rows[z]["voxels_b"]) == int(reader_b[z].sum())
    worst = max(range(64), key=lambda z: int(np.count_nonzero(truth[z] != reader_b[z])))
    assert summary["worst_slices"][0] == worst

    disagreement, affine = load_mask_nifti(out / "disagreement.nii.gz")
    np.testing.assert_allclose(affine, tcia_volume.affine, atol=1e-4)
    assert int((disagreement == 1).sum()) == int((truth & ~reader_b.astype(bool)).sum())
    assert int((disagreement == 2).sum()) == int((reader_b.astype(bool) & ~truth.astype(bool)).sum())
    consensus, _ = load_mask_nifti(out / "consensus.nii.gz")
    np.testing.assert_array_equal(consensus, truth & reader_b)  # two readers: intersection
    assert nib.load(out / "consensus.nii.gz").get_data_dtype() == np.uint8

    page = (out / "report.html").read_text()
    images = page.count("data:image/png;base64,")
    assert images == 3 and "lung window" in page
    first_png = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first_png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".tmp-*"))  # atomic writes leave no temporary files


def test_compare_annotators_from_the_store_with_staple(two_readers, tcia_volume, tcia_dir, tmp_path, capsys):
    truth, reader_b, _ = two_readers
    store = AnnotationStore(tmp_path / "store")
    reader_c = ndimage.binary_dilation(truth, iterations=1).astype(np.uint8)
    for name, mask in (("alice", truth), ("bob", reader_b), ("carol", reader_c)):
        annotation = Annotation.empty(tcia_volume, name)
        annotation.mask[:] = mask
        store.save(annotation)
    store.close()
    out = tmp_path / "out"
    rc = main(["compare", str(tcia_dir), "--annotators", "alice", "bob", "carol", "--store", str(tmp_path / "store"),
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "alice vs bob: Dice" in text and "consensus: staple" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["readers"] == ["alice", "bob", "carol"] and len(summary["pairs"]) == 3
    probability = np.asarray(nib.load(out / "staple_probability.nii.gz").dataobj).transpose(2, 1, 0)
    assert probability.shape == truth.shape and 0 <= probability.min() and probability.max() <= 1
    consensus, _ = load_mask_nifti(out / "consensus.nii.gz")
    np.testing.assert_array_equal(consensus, (probability > 0.5).astype(np.uint8))
    assert (consensus[truth.astype(bool) & reader_b.astype(bool)] == 1).all()  # all three agree there
    majority, _ = load_mask_nifti(out / "majority_vote.nii.gz")
    votes = truth.astype(int) + reader_b + reader_c
    np.testing.assert_array_equal(majority, (votes >= 2).astype(np.uint8))


def test_masks_on_another_grid_are_refused(two_readers, tmp_path, capsys):
    _, _, paths = two_readers
    mask, affine = load_mask_nifti(paths[1])
    cropped = tmp_path / "cropped.nii.gz"
    save_mask_nifti(mask[:, :-8], affine, cropped)
    rc = main(["compare", "--masks", str(paths[0]), str(cropped), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "not on the same voxel grid" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "summary.json").exists()


def test_unknown_annotator_is_a_clear_error(tcia_dir, tmp_path, capsys):
    rc = main(["compare", str(tcia_dir), "--annotators", "alice", "zoe", "--store", str(tmp_path / "empty"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "'alice' has no saved mask" in err
