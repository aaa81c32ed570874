"""Simulated pneumothorax on the real TCIA CT: truth, realism, determinism, and the simulate CLI."""

import dataclasses

import numpy as np
import pytest

from ptx_annotator.anatomy import left_coordinate, patient_axis_coordinate, segment_thorax
from ptx_annotator.synthetic.pneumothorax import FRACTION_TOLERANCE, simulate_pneumothorax

from conftest import NRRD_CT, need


@pytest.fixture(scope="module")
def anatomy(tcia_volume):
    return segment_thorax(tcia_volume)


@pytest.fixture(scope="module")
def right20(tcia_volume, anatomy):
    return simulate_pneumothorax(tcia_volume, "right", 0.2, seed=0, anatomy=anatomy)


def test_same_seed_same_result_other_seed_other_shape(tcia_volume, anatomy, right20):
    again = simulate_pneumothorax(tcia_volume, "right", 0.2, seed=0, anatomy=anatomy)
    assert np.array_equal(again.mask, right20.mask)
    assert np.array_equal(again.volume.hu, right20.volume.hu)
    other = simulate_pneumothorax(tcia_volume, "right", 0.2, seed=1, anatomy=anatomy)
    assert not np.array_equal(other.mask, right20.mask)
    assert abs(other.fraction_achieved - 0.2) <= FRACTION_TOLERANCE


def test_fraction_is_the_share_of_the_hemithorax(tcia_volume, anatomy, right20):
    hemi = anatomy.hemithorax_right
    assert abs(right20.fraction_achieved - 0.2) <= FRACTION_TOLERANCE
    assert right20.mask.dtype == np.uint8 and set(np.unique(right20.mask)) == {0, 1}
    assert np.all(hemi[right20.mask.astype(bool)])  # pleural air stays in its pleural cavity
    assert right20.mask.sum() / hemi.sum() == pytest.approx(right20.fraction_achieved)
    assert right20.volume_ml == pytest.approx(right20.mask.sum() * tcia_volume.voxel_volume_ml)
    # the same CT segmented again sees a hemithorax of about the same size (air included)
    assert segment_thorax(right20.volume).hemithorax_right.sum() == pytest.approx(hemi.sum(), rel=0.08)


def test_air_is_on_the_patient_side_asked_for_non_dependent_and_apical(tcia_volume, anatomy, right20):
    shape, affine = tcia_volume.shape, tcia_volume.affine
    mask = right20.mask.astype(bool)
    left_mm = np.broadcast_to(left_coordinate(affine, shape), shape)
    posterior = np.broadcast_to(patient_axis_coordinate(affine, shape, 1), shape)
    superior = np.broadcast_to(patient_axis_coordinate(affine, shape, 2), shape)
    hemi = anatomy.hemithorax_right
    assert left_mm[mask].mean() < left_mm[anatomy.body].mean()
    assert posterior[mask].mean() < posterior[hemi].mean() - 15  # anterior when supine
    assert superior[mask].mean() > superior[hemi].mean()  # towards the apex
    left = simulate_pneumothorax(tcia_volume, "left", 0.1, seed=2, anatomy=anatomy).mask.astype(bool)
    assert left_mm[left].mean() > left_mm[anatomy.body].mean()
    assert np.all(anatomy.hemithorax_left[left])


def test_flipped_copy_puts_the_air_on_the_same_patient_side(tcia_volume, right20):
    affine = np.array(tcia_volume.affine, dtype=float)
    affine[:3, 3] += (tcia_volume.shape[2] - 1) * affine[:3, 2]
    affine[:3, 2] *= -1
    flipped = dataclasses.replace(tcia_volume, hu=np.ascontiguousarray(tcia_volume.hu[:, :, ::-1]), affine=affine)
    result = simulate_pneumothorax(flipped, "right", 0.2, seed=0)
    left_mm = np.broadcast_to(left_coordinate(flipped.affine, flipped.shape), flipped.shape)
    assert left_mm[result.mask.astype(bool)].mean() < left_mm[flipped.hu > -200].mean()
    # the same region in patient space (the seed's irregularity is drawn on the array grid)
    mirrored = right20.mask[:, :, ::-1].astype(bool)
    overlap = 2 * np.logical_and(result.mask, mirrored).sum() / (result.mask.sum() + mirrored.sum())
    assert overlap > 0.75


def test_pleural_air_has_the_scanners_air_level_and_noise(tcia_volume, right20):
    values = right20.volume.hu[right20.mask.astype(bool)].astype(float)
    mean, sd = right20.air_hu
    assert -1030 < np.median(values) < -960
    assert 5 < values.std() < 80
    assert abs(np.median(values) - mean) < 10
    # the CT's own outside air, away from the patient, agrees
    corner = tcia_volume.hu[:, 30:60, 200:300].astype(float)
    assert abs(np.median(corner) - mean) < 15


def test_lung_is_displaced_not_erased(tcia_volume, anatomy, right20):
    before, after = tcia_volume.hu.astype(float), right20.volume.hu.astype(float)
    hemi = anatomy.hemithorax_right
    mask = right20.mask.astype(bool)
    # tissue mass (HU above air) of the pleural cavity is kept by the compressed lung
    mass_before = (before[hemi] + 1000).sum()
    mass_after = (after[hemi] + 1000).sum()
    assert mass_after == pytest.approx(mass_before, rel=0.03)
    # the aerated lung shrinks, its vessels are still there, and it got denser
    aerated_before = (hemi & (before < -400)).sum()
    aerated_after = (hemi & ~mask & (after < -400)).sum()
    assert aerated_after < 0.9 * aerated_before
    vessels_before = (hemi & (before > -300)).sum()
    vessels_after = (hemi & ~mask & (after > -300)).sum()
    assert vessels_after > 0.6 * vessels_before
    assert np.median(after[hemi & ~mask & (after < -400)]) > np.median(before[hemi & (before < -400)])
    # the other side and everything outside the right pleural cavity are untouched
    assert np.array_equal(before[~hemi], after[~hemi])


def test_a_visceral_pleural_line_edges_the_collapsed_lung(right20, anatomy):
    from scipy import ndimage as ndi

    mask = right20.mask.astype(bool)
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    edge = anatomy.hemithorax_right & ~mask & ndi.binary_dilation(mask, plane)
    assert edge.sum() > 1000
    assert np.median(right20.volume.hu[edge]) > -400


def test_simulate_cli_writes_a_dicom_series_and_truth(tmp_path, tcia_volume, right20, capsys):
    from ptx_annotator.cli import main
    from ptx_annotator.io import load_mask_nifti, load_series

    rc = main(["simulate", str(tcia_volume.source), str(tmp_path), "--side", "right", "--fraction", "0.2",
               "--seed", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "fraction 0.200" in out and f"{right20.volume_ml:.1f} mL" in out
    written = load_series(tmp_path / "dicom")
    assert written.shape == tcia_volume.shape
    assert np.allclose(written.affine, tcia_volume.affine, atol=1e-3)
    assert written.series_uid != tcia_volume.series_uid and written.study_uid != tcia_volume.study_uid
    assert not set(written.slice_uids) & set(tcia_volume.slice_uids)
    assert written.frame_of_reference_uid == tcia_volume.frame_of_reference_uid
    mask, affine = load_mask_nifti(tmp_path / "truth_mask.nii.gz")
    assert mask.shape == tcia_volume.shape and np.allclose(affine, tcia_volume.affine, atol=1e-3)
    assert np.array_equal(mask, right20.mask)
    assert np.array_equal(written.hu, right20.volume.hu)  # HU survive the re-encoding exactly


def test_simulate_cli_on_nrrd_writes_nifti(tmp_path, capsys):
    from ptx_annotator.cli import main
    from ptx_annotator.io import load_mask_nifti, load_volume

    rc = main(["simulate", str(need(NRRD_CT)), str(tmp_path), "--fraction", "0.25"])
    assert rc == 0
    ct = load_volume(tmp_path / "ct.nii.gz")
    source = load_volume(NRRD_CT)
    mask, _ = load_mask_nifti(tmp_path / "truth_mask.nii.gz")
    assert ct.shape == source.shape and np.allclose(ct.affine, source.affine, atol=1e-3)
    assert mask.sum() > 0 and np.median(ct.hu[mask.astype(bool)]) < -950


def test_simulate_cli_refuses_a_bad_fraction(tmp_path, tcia_volume, capsys):
    from ptx_annotator.cli import main

    assert main(["simulate", str(tcia_volume.source), str(tmp_path), "--fraction", "1.5"]) == 2
    assert "fraction" in capsys.readouterr().err
