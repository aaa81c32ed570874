"""The procedural chest phantom: deterministic, realistic HU, a pneumothorax where it was asked."""

import numpy as np
import pytest

from ptx_annotator.io import load_mask_nifti, load_volume
from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom


@pytest.fixture(scope="module")
def case():
    return make_chest_phantom()


def test_same_arguments_give_the_same_voxels(case):
    again = make_chest_phantom()
    assert np.array_equal(case.volume.hu, again.volume.hu)
    assert np.array_equal(case.truth, again.truth)
    assert case.volume.key == again.volume.key
    other = make_chest_phantom(seed=1)
    assert not np.array_equal(case.volume.hu, other.volume.hu)


def test_geometry_is_small_axial_lps_in_mm(case):
    volume = case.volume
    assert volume.shape == (24, 192, 192)
    assert volume.spacing == (5.0, 1.5, 1.5)
    assert volume.orientation == "LPS"
    assert volume.hu.dtype == np.int16
    assert volume.voxel_volume_ml == pytest.approx(5 * 1.5 * 1.5 / 1000)


def test_tissues_have_realistic_hounsfield_units(case):
    hu = case.volume.hu.astype(float)
    corner = hu[:, :10, :10]
    assert abs(corner.mean() + 1000) < 15  # air outside the body
    lung = hu[case.lungs > 0]
    assert -900 < np.median(lung) < -750  # parenchyma, with vessels
    assert (lung > -300).mean() > 0.02  # vessels inside the lungs
    free_air = hu[case.truth > 0]
    assert np.median(free_air) < -960  # free pleural air, no vessels
    assert (free_air > -800).mean() < 0.01
    assert hu.max() > 600  # ribs and spine
    soft = hu[:, 96, 96 - 3:96 + 3]  # mediastinum in the middle of every slice
    assert np.median(soft) > -200


def test_pneumothorax_lies_on_the_requested_side():
    for side in ("right", "left"):
        case = make_chest_phantom(shape=(8, 96, 96), spacing=(5.0, 3.0, 3.0), side=side, fraction=0.3)
        z, y, x = np.nonzero(case.truth)
        lps_x = case.volume.affine[0, 2] * x + case.volume.affine[0, 3]
        assert case.truth.sum() > 200
        # LPS +x is patient left
        assert (lps_x > 0).all() if side == "left" else (lps_x < 0).all()
        # non-dependent: in front of the lung's centre (supine: anterior = low y)
        assert y.mean() < np.nonzero(case.lungs)[1].mean()


def test_fraction_scales_the_pneumothorax_and_none_has_none():
    small = make_chest_phantom(shape=(8, 96, 96), spacing=(5.0, 3.0, 3.0), fraction=0.15)
    large = make_chest_phantom(shape=(8, 96, 96), spacing=(5.0, 3.0, 3.0), fraction=0.45)
    assert large.truth.sum() > 2 * small.truth.sum()
    assert make_chest_phantom(shape=(8, 96, 96), spacing=(5.0, 3.0, 3.0), side="none").truth.sum() == 0
    with pytest.raises(ValueError):
        make_chest_phantom(side="middle")


def test_saved_phantom_reads_back_with_its_geometry(case, tmp_path):
    ct_path, truth_path = save_phantom(case, tmp_path)
    volume = load_volume(ct_path)
    assert np.array_equal(volume.hu, case.volume.hu)
    assert np.allclose(volume.affine, case.volume.affine, atol=1e-4)
    mask, affine = load_mask_nifti(truth_path)
    assert np.array_equal(mask, case.truth)


def test_classical_proposer_finds_the_pneumothorax(case):
    pytest.importorskip("ptx_annotator.proposers.classical")
    from ptx_annotator.proposers import get_proposer, propose_volume

    proposal = propose_volume(get_proposer(), case.volume)
    found, truth = proposal.mask > 0, case.truth > 0
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.5, f"classical proposer found the phantom's pneumothorax with Dice {dice:.2f}"
