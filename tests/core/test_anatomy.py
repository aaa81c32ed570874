"""Thoracic anatomy on the real TCIA chest CT: plausible volumes, patient sides from the affine."""

import dataclasses

import numpy as np
import pytest

from ptx_annotator.anatomy import left_coordinate, segment_thorax


@pytest.fixture(scope="module")
def anatomy(tcia_volume):
    return segment_thorax(tcia_volume)


def flipped_left_right(volume):
    """The same CT stored with its image columns reversed (the affine says so)."""
    affine = np.array(volume.affine, dtype=float)
    nx = volume.shape[2]
    affine[:3, 3] = affine[:3, 3] + (nx - 1) * affine[:3, 2]
    affine[:3, 2] = -affine[:3, 2]
    return dataclasses.replace(volume, hu=np.ascontiguousarray(volume.hu[:, :, ::-1]), affine=affine)


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_lung_volumes_are_adult_sized(anatomy, tcia_volume):
    ml = tcia_volume.voxel_volume_ml
    right, left = anatomy.lung_right.sum() * ml, anatomy.lung_left.sum() * ml
    assert 1000 < right < 4500
    assert 1000 < left < 4500
    assert right > left  # the right lung is the larger one
    assert not np.any(anatomy.lung_right & anatomy.lung_left)
    assert np.array_equal(anatomy.lungs, anatomy.lung_right | anatomy.lung_left)


def test_masks_nest_as_anatomy_does(anatomy, tcia_volume):
    ml = tcia_volume.voxel_volume_ml
    for side in ("right", "left"):
        lung, hemi = anatomy.lung(side), anatomy.hemithorax(side)
        assert np.all(hemi[lung])  # the lung lies inside its pleural cavity
        assert lung.sum() < hemi.sum() < 1.25 * lung.sum()
    assert not np.any(anatomy.hemithorax_right & anatomy.hemithorax_left)
    assert not np.any(anatomy.body & anatomy.outside_air)
    assert np.all(anatomy.body[anatomy.hemithoraces])
    # lung parenchyma is air-filled: mostly between -950 and -500 HU
    assert -950 < np.median(tcia_volume.hu[anatomy.lungs]) < -700
    airway_ml = anatomy.airways.sum() * ml
    assert 5 < airway_ml < 150
    assert np.median(tcia_volume.hu[anatomy.airways]) < -900
    assert not np.any(anatomy.airways & anatomy.lungs)


def test_right_lung_is_on_the_patient_right(anatomy, tcia_volume):
    left_mm = np.broadcast_to(left_coordinate(tcia_volume.affine, tcia_volume.shape), tcia_volume.shape)
    assert left_mm[anatomy.lung_right].mean() + 50 < left_mm[anatomy.lung_left].mean()
    # the trachea sits between them
    trachea = left_mm[anatomy.airways].mean()
    assert left_mm[anatomy.lung_right].mean() < trachea < left_mm[anatomy.lung_left].mean()


def test_flipped_copy_keeps_patient_sides(anatomy, tcia_volume):
    flipped = flipped_left_right(tcia_volume)
    assert flipped.orientation == "RPS"
    result = segment_thorax(flipped)
    # in array terms the right lung is now mirrored, in patient terms it is the same lung
    assert dice(result.lung_right, anatomy.lung_right[:, :, ::-1]) > 0.97
    assert dice(result.lung_left, anatomy.lung_left[:, :, ::-1]) > 0.97
    assert dice(result.hemithorax_right, anatomy.hemithorax_right[:, :, ::-1]) > 0.97
    left_mm = np.broadcast_to(left_coordinate(flipped.affine, flipped.shape), flipped.shape)
    assert left_mm[result.lung_right].mean() < left_mm[result.lung_left].mean()
