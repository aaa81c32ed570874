"""geometry: the one home of bounding boxes, voxel volume, patient side and reorientation."""

import itertools

import numpy as np
import pytest

from ptx_annotator import geometry


def _brute_box(mask, margin):
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, hits[0] - margin[axis]), min(mask.shape[axis], hits[-1] + 1 + margin[axis])))
    return tuple(box)


def test_bounding_box_matches_brute_force_and_clips_to_the_grid():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = np.zeros((9, 13, 11), dtype=bool)
        corner = rng.integers(0, [8, 12, 10])
        size = rng.integers(1, 5, size=3)
        mask[tuple(slice(c, c + s) for c, s in zip(corner, size))] = True
        mask[tuple(rng.integers(0, [9, 13, 11]))] = True
        margin = tuple(int(m) for m in rng.integers(0, 4, size=3))
        assert geometry.bounding_box(mask, margin) == _brute_box(mask, margin)
        assert geometry.bounding_box(mask.astype(np.uint8) * 7, 2) == _brute_box(mask, (2, 2, 2))
    assert geometry.bounding_box(np.zeros((3, 4, 5), bool)) is None


def test_union_box_holds_both_masks():
    a = np.zeros((6, 6, 6), bool)
    b = np.zeros_like(a)
    a[1, 2, 3] = b[4, 0, 5] = True
    box = geometry.union_box(geometry.bounding_box(a), geometry.bounding_box(b), None)
    assert box == geometry.bounding_box(a | b)
    assert geometry.union_box(None, None) is None


def test_voxel_volume_is_the_spacing_product_on_an_orthogonal_grid_and_det_on_an_oblique_one():
    affine = geometry.affine_from_spacing((5.0, 0.84, 0.84))
    assert geometry.voxel_volume_ml(affine) == pytest.approx(5.0 * 0.84 * 0.84 / 1000)
    angle = np.deg2rad(20)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([2.0, 1.0, 0.5])
    oblique[:3, 0] += oblique[:3, 1] * 0.3  # a sheared (gantry-tilted) slice step
    assert geometry.voxel_volume_mm3(oblique) == pytest.approx(1.0)


def test_volume_uses_the_one_voxel_volume(tcia_volume):
    assert tcia_volume.voxel_volume_ml == geometry.voxel_volume_ml(tcia_volume.affine)
    assert tcia_volume.voxel_volume_ml == pytest.approx(float(np.prod(tcia_volume.spacing)) / 1000, rel=1e-6)


def _signed_permutations():
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            yield order, signs


def test_reorient_onto_undoes_every_axis_permutation_and_flip():
    rng = np.random.default_rng(0)
    target = np.array([[0, 0, 0.7, -120.0], [0, 0.7, 0, -90.0], [2.5, 0, 0, 30.0], [0, 0, 0, 1]])
    data = rng.integers(0, 5, size=(4, 5, 6)).astype(np.uint8)
    for order, signs in _signed_permutations():
        stored, affine = data, target.copy()
        for axis, sign in enumerate(signs):  # flip, keeping the same voxels in patient space
            if sign < 0:
                stored = np.flip(stored, axis)
                affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
                affine[:3, axis] *= -1
        stored = np.transpose(stored, order)
        affine[:3, :3] = affine[:3, list(order)]
        back, back_affine = geometry.reorient_onto(stored, affine, target)
        assert np.array_equal(back, data), (order, signs)
        assert np.allclose(back_affine, target), (order, signs)


def test_reorient_onto_leaves_other_grids_alone():
    data = np.ones((3, 4, 5), np.uint8)
    target = geometry.affine_from_spacing((2.0, 1.0, 1.0))
    coarser = geometry.affine_from_spacing((2.0, 2.0, 1.0))[:, [0, 2, 1, 3]]
    out, affine = geometry.reorient_onto(data, coarser, target)
    assert out is data and np.array_equal(affine, coarser)
    out, affine = geometry.reorient_onto(data, np.zeros((4, 4)), target)
    assert out is data


class _Anatomy:
    """Hemithoraces and body one column wide each, so their centroids are exact."""

    def __init__(self, shape, right_col, left_col, body_col=None):
        self.hemithorax_right = np.zeros(shape, bool)
        self.hemithorax_left = np.zeros(shape, bool)
        self.body = np.zeros(shape, bool)
        for region, col in ((self.hemithorax_right, right_col), (self.hemithorax_left, left_col),
                            (self.body, body_col)):
            if col is not None:
                region[:, 2:-2, col] = True


def test_side_rule_hemithorax_first_then_the_midline():
    # LPS: +x of the array is patient left
    affine = geometry.affine_from_spacing((5.0, 1.0, 1.0))
    anatomy = _Anatomy((3, 10, 20), 3, 14, body_col=9)
    notes = []
    sides = geometry.PatientSides(anatomy, affine, notes=notes)
    assert sides.midline == pytest.approx((3.0 + 14.0) / 2) and notes == []
    mask = np.zeros((3, 10, 20), bool)
    mask[1, 5, 3] = True     # right hemithorax
    mask[1, 5, 11] = True    # in neither, left of the midline 8.5
    mask[1, 5, 8] = True     # in neither, right of it
    mask[1, 5, 14] = True    # left hemithorax
    mask[1, 0, 15] = True    # in neither (outside the rows), left
    split = geometry.split_sides(mask, anatomy, affine)
    assert split["right"].sum() == 2 and split["left"].sum() == 3
    assert not (split["right"] & split["left"]).any() and np.array_equal(split["right"] | split["left"], mask)
    assert sides.count_slice(mask[1], 1) == (2, 3)
    assert sides.count_slice(mask[0], 0) == (0, 0)


def test_side_rule_stand_ins_are_noted():
    affine = geometry.affine_from_spacing((1.0, 1.0, 1.0))
    notes = []
    one_side = _Anatomy((2, 10, 20), 3, None, body_col=11)
    assert geometry.midline_left_mm(one_side, affine, notes) == pytest.approx(11.0)
    assert "Only one hemithorax" in notes[0]
    nobody = _Anatomy((2, 10, 20), None, None)
    assert geometry.midline_left_mm(nobody, affine, notes) == pytest.approx(9.5)
    assert "No body" in notes[1]


def test_quantify_sides_agree_with_the_per_slice_count_on_a_real_ct(tcia_volume):
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.quantify import quantify

    anatomy = segment_thorax(tcia_volume)
    mask = np.zeros(tcia_volume.shape, np.uint8)
    mask[30:34, 150:350, 100:420] = 1  # across both lungs and the mediastinum
    result = quantify(mask, tcia_volume, anatomy)
    sides = geometry.PatientSides(anatomy, tcia_volume.affine)
    counts = np.array([sides.count_slice(mask[z], z) for z in range(mask.shape[0])]).sum(axis=0)
    ml = geometry.voxel_volume_ml(tcia_volume.affine)
    assert result.volume_right_ml == pytest.approx(counts[0] * ml)
    assert result.volume_left_ml == pytest.approx(counts[1] * ml)
    assert counts[0] > 0 and counts[1] > 0


def test_head_step_follows_the_superior_component_of_z():
    head_first = geometry.affine_from_spacing((2.5, 0.7, 0.7))  # z runs to superior
    feet_first = head_first.copy()
    feet_first[2, 0] = -2.5
    coronal = np.array([[0, 0, 0.7, 0], [2.5, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 0, 1]], dtype=float)
    assert geometry.head_step(head_first) == 1 and geometry.head_step(feet_first) == -1
    assert geometry.head_step(coronal) == 1  # no superior component: the one convention
