"""Post-processing on crafted masks: threshold, small components in mm³ / mm², small holes only."""

import json

import numpy as np
import pytest

from ptx_annotator.proposers.postprocess import PostprocessParams, binarize, postprocess_mask, postprocess_slice


def test_threshold_is_inclusive_and_integer_masks_pass_through():
    probability = np.array([[0.49, 0.5, 0.51]], dtype=np.float32)
    assert binarize(probability, 0.5).tolist() == [[False, True, True]]
    assert binarize(np.array([[0, 2, 1]], dtype=np.uint8), 0.9).tolist() == [[False, True, True]]


def test_small_3d_component_dropped_by_volume_in_mm3_not_voxels():
    mask = np.zeros((6, 40, 40), dtype=np.uint8)
    mask[1:4, 5:15, 5:15] = 1          # 300 voxels
    mask[4, 30:33, 30:33] = 1          # 9 voxels, isolated
    # 1 mm³ voxels: the 9-voxel blob is 9 mm³ < 20 mm³ -> dropped, the large one kept
    out = postprocess_mask(mask, (1.0, 1.0, 1.0), min_component_mm3=20, fill_holes=False)
    assert out.dtype == np.uint8
    assert out.sum() == 300 and out[4, 31, 31] == 0
    # 5 mm slices: the same 9 voxels are 45 mm³ -> kept
    out = postprocess_mask(mask, (5.0, 1.0, 1.0), min_component_mm3=20, fill_holes=False)
    assert out.sum() == 309


def test_components_are_26_connected_across_slices():
    mask = np.zeros((3, 10, 10), dtype=np.uint8)
    mask[0, 2, 2] = mask[1, 3, 3] = mask[2, 4, 4] = 1  # diagonal chain, 3 voxels touching at corners
    out = postprocess_mask(mask, (1.0, 1.0, 1.0), min_component_mm3=3, fill_holes=False)
    assert out.sum() == 3
    out = postprocess_mask(mask, (1.0, 1.0, 1.0), min_component_mm3=4, fill_holes=False)
    assert out.sum() == 0


def test_small_holes_filled_large_enclosed_region_kept_open():
    mask = np.zeros((1, 60, 60), dtype=np.uint8)
    mask[0, 5:55, 5:55] = 1
    mask[0, 10:12, 10:12] = 0          # 4 px pinhole
    mask[0, 20:50, 20:50] = 0          # 900 px enclosed region: a collapsed lung inside the air
    out = postprocess_mask(mask, (5.0, 1.0, 1.0), min_component_mm3=0, fill_holes=True, max_hole_mm2=50)
    assert out[0, 10, 10] == 1
    assert out[0, 30, 30] == 0 and out[0, 20:50, 20:50].sum() == 0
    unfilled = postprocess_mask(mask, (5.0, 1.0, 1.0), min_component_mm3=0, fill_holes=False)
    assert unfilled[0, 10, 10] == 0
    # with coarse pixels the same pinhole is 4 * 16 mm² = 64 mm² > 50 mm² -> left open
    coarse = postprocess_mask(mask, (5.0, 4.0, 4.0), min_component_mm3=0, fill_holes=True, max_hole_mm2=50)
    assert coarse[0, 10, 10] == 0


def test_slice_variant_uses_in_plane_mm2():
    probability = np.zeros((30, 30), dtype=np.float32)
    probability[2:12, 2:12] = 0.9      # 100 px
    probability[20:23, 20:23] = 0.8    # 9 px
    probability[25, 2] = 0.4           # below threshold
    out = postprocess_slice(probability, (0.5, 0.5), threshold=0.5, min_component_mm2=5)
    assert out.sum() == 100            # 9 px * 0.25 mm² = 2.25 mm² < 5 mm²
    out = postprocess_slice(probability, (1.0, 1.0), threshold=0.5, min_component_mm2=5)
    assert out.sum() == 109
    with pytest.raises(ValueError):
        postprocess_slice(probability[None], (1.0, 1.0))


def test_params_apply_match_functions_and_serialise():
    rng = np.random.default_rng(0)
    probability = rng.random((4, 32, 32)).astype(np.float32)
    params = PostprocessParams(threshold=0.7, min_component_mm3=10, min_component_mm2=3, max_hole_mm2=4)
    volume_out = params.apply_volume(probability, (2.0, 1.0, 1.0))
    assert np.array_equal(volume_out, postprocess_mask(probability, (2.0, 1.0, 1.0), threshold=0.7,
                                                       min_component_mm3=10, max_hole_mm2=4))
    assert 0 < volume_out.sum() < (probability >= 0.7).sum() + 4 * 32 * 32
    slice_out = params.apply_slice(probability[0], (1.0, 1.0))
    assert np.array_equal(slice_out, postprocess_slice(probability[0], (1.0, 1.0), threshold=0.7,
                                                       min_component_mm2=3, max_hole_mm2=4))
    payload = json.loads(json.dumps(params.to_json()))
    assert payload["threshold"] == 0.7 and payload["min_component_mm3"] == 10
    assert PostprocessParams.from_json(payload) == params
    with pytest.raises(ValueError):
        PostprocessParams(threshold=1.5)
    with pytest.raises(ValueError):
        postprocess_mask(probability, (1.0, 0.0, 1.0))


def _chest_slice(gap: int = 0) -> np.ndarray:
    """A crafted axial slice: outside air, a 6 px chest wall (optionally with a gap), lung inside."""
    yy, xx = np.mgrid[:80, :80]
    radius = np.hypot(yy - 40, xx - 40)
    hu = np.full((80, 80), -1000, dtype=np.int16)  # outside air
    hu[radius < 34] = 40                                 # chest wall
    hu[radius < 28] = -850                               # lung
    hu[(radius < 28) & (radius >= 24) & (yy < 40)] = -1000  # anterior pleural air
    if gap:
        hu[40 - gap // 2:40 + (gap + 1) // 2, 66:75] = -1000  # a thin air gap through the wall
    return hu


@pytest.mark.parametrize("gap", [0, 2])
def test_air_outside_the_patient_is_dropped_pleural_air_kept(gap):
    hu = _chest_slice(gap)
    probability = (hu <= -990).astype(np.float32)  # a model that calls all air pleural air
    out = postprocess_slice(probability, (1.0, 1.0), min_component_mm2=0, hu=hu)
    radius = np.hypot(*np.mgrid[-40:40, -40:40])
    assert out[(hu == -1000) & (radius < 28)].all()  # all pleural air survives, also with a gap in the wall
    assert not out[radius >= 34].any()  # nothing outside the chest wall does
    kept = postprocess_slice(probability, (1.0, 1.0), min_component_mm2=0)  # no CT given: no rule
    assert kept[0, 0] == 1


def test_outside_air_rule_in_volumes_params_and_its_switch():
    hu = np.stack([_chest_slice(), _chest_slice()])
    probability = (hu <= -990).astype(np.float32)
    params = PostprocessParams(min_component_mm3=0, min_component_mm2=0)
    volume_out = params.apply_volume(probability, (2.0, 1.0, 1.0), hu=hu)
    assert volume_out[:, 0, 0].sum() == 0 and volume_out[:, 14, 40].all()
    assert np.array_equal(volume_out[0], params.apply_slice(probability[0], (1.0, 1.0), hu=hu[0]))
    off = PostprocessParams(min_component_mm3=0, min_component_mm2=0, drop_outside_air=False)
    assert off.apply_slice(probability[0], (1.0, 1.0), hu=hu[0])[0, 0] == 1
    assert json.loads(json.dumps(params.to_json()))["drop_outside_air"] is True
    with pytest.raises(ValueError, match="shape"):
        params.apply_slice(probability[0], (1.0, 1.0), hu=hu[0, :40])


def test_inside_patient_holds_both_lungs_of_the_real_ct(tcia_volume):
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.proposers.postprocess import inside_patient

    anatomy = segment_thorax(tcia_volume)
    z = int(np.argmax(anatomy.lungs.sum(axis=(1, 2))))
    inside = inside_patient(tcia_volume.hu[z])
    assert inside[anatomy.lungs[z]].all()
    assert not inside[0, 0] and not inside[-1, -1]
    assert inside.sum() < anatomy.body[z].sum() * 1.02  # the patient, not the scanner table


def test_hole_filling_in_the_bounding_box_equals_filling_the_whole_slice():
    """Holes are found in the mask's box grown by one pixel: the same holes as over the whole
    slice, touching the slice's border or not (a hole open to the border is no hole)."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for _ in range(400):
        mask = np.zeros((40, 40), dtype=bool)
        h, w = rng.integers(2, 41, 2)
        y, x = rng.integers(0, 41 - h), rng.integers(0, 41 - w)
        mask[y:y + h, x:x + w] = rng.random((h, w)) < rng.uniform(0.4, 0.95)
        limit = int(rng.integers(0, 20))
        holes = ndimage.binary_fill_holes(mask) & ~mask
        labels, count = ndimage.label(holes)
        small = np.bincount(labels.ravel(), minlength=count + 1) <= limit
        small[0] = False
        expected = mask | small[labels]
        got = postprocess_mask(mask[None], (1.0, 1.0, 1.0), min_component_mm3=0, max_hole_mm2=limit) > 0
        assert np.array_equal(got[0], expected)
