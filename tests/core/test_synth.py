"""Simulated pneumothorax on the real TCIA CT: truth, realism, determinism, and the simulate CLI."""

import dataclasses

import numpy as np
import pytest

from ptx_annotator.anatomy import left_coordinate, patient_axis_coordinate, segment_thorax
from ptx_annotator.synthetic.pneumothorax import FRACTION_TOLERANCE, simulate_pneumothorax

from shared_data import NRRD_CT, need


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

    air = right20.air_share > 0  # voxels with some air in them (partial volume) are air and lung, no line
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    edge = anatomy.hemithorax_right & ~air & ndi.binary_dilation(air, plane)
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


# --- the simulator's variety: each option produces what it claims -------------------------------

def _depth_in(region, spacing):
    """3D distance (mm) of each voxel of ``region`` to the nearest voxel outside it."""
    from scipy import ndimage as ndi

    return ndi.distance_transform_edt(np.pad(region, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]


@pytest.mark.parametrize("extent", ["surface", "apex"])
def test_a_thin_rim_is_thin_and_lies_where_asked(tcia_volume, anatomy, extent):
    rim = simulate_pneumothorax(tcia_volume, "right", rim_mm=2.0, rim_extent=extent, seed=4, anatomy=anatomy)
    mask = rim.mask.astype(bool)
    depth = _depth_in(anatomy.hemithorax_right, tcia_volume.spacing)
    assert rim.options["rim_mm"] == 2.0 and rim.options["rim_extent"] == extent
    assert 5 < rim.volume_ml < 200 and np.count_nonzero(mask.any(axis=(1, 2))) >= 5
    # never more than the rim (+20 % irregularity) from the wall, give or take half a 5 mm slice where
    # the wall meets the slice at an angle (the air is laid down on sub-slices: partial volume)
    assert depth[mask].max() <= 2.0 * 1.2 + tcia_volume.spacing[0] / 2
    assert np.median(depth[mask]) <= 2.0
    full = rim.air_share >= 0.99  # voxels all air: at the scanner's level; the rest at least half air
    assert full.sum() > 0.1 * mask.sum() and np.median(rim.volume.hu[full]) < -950
    assert np.median(rim.volume.hu[mask]) < -900
    superior = np.broadcast_to(patient_axis_coordinate(tcia_volume.affine, mask.shape, 2), mask.shape)
    posterior = np.broadcast_to(patient_axis_coordinate(tcia_volume.affine, mask.shape, 1), mask.shape)
    hemi = anatomy.hemithorax_right
    if extent == "apex":
        assert superior[mask].min() >= np.percentile(superior[hemi], 60)
    else:
        assert posterior[mask].mean() < posterior[hemi].mean() - 20  # the anterior surface


@pytest.mark.parametrize("location,axis,sign", [("posterior", 1, 1), ("lateral", 0, -1), ("medial", 0, 1),
                                                ("basal", 2, -1)])
def test_each_location_gathers_the_air_there(tcia_volume, anatomy, location, axis, sign):
    result = simulate_pneumothorax(tcia_volume, "right", 0.1, seed=5, anatomy=anatomy, location=location)
    mask = result.mask.astype(bool)
    along = sign * np.broadcast_to(patient_axis_coordinate(tcia_volume.affine, mask.shape, axis), mask.shape)
    hemi = anatomy.hemithorax_right
    spread = np.percentile(along[hemi], 95) - np.percentile(along[hemi], 5)
    assert along[mask].mean() > along[hemi].mean() + 0.1 * spread
    assert result.options["location"] == location


def test_adhesions_split_the_air_into_loculated_pockets(tcia_volume, anatomy):
    from scipy import ndimage as ndi

    def largest_share(mask):
        labels, n = ndi.label(mask, np.ones((3, 3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        return sizes.max() / sizes.sum()

    free = simulate_pneumothorax(tcia_volume, "right", 0.1, seed=6, anatomy=anatomy, location="diffuse",
                                 anterior_bias=0.3)
    held = simulate_pneumothorax(tcia_volume, "right", 0.1, seed=6, anatomy=anatomy, location="diffuse",
                                 anterior_bias=0.3, adhesions=0.65)
    assert largest_share(free.mask) > 0.95  # one free pleural space
    assert largest_share(held.mask) < 0.8  # pockets between the adhesions
    assert held.options["adhesions"] == 0.65


def test_hydropneumothorax_fluid_lies_dependent_below_one_level(tcia_volume, anatomy):
    result = simulate_pneumothorax(tcia_volume, "right", 0.25, seed=7, anatomy=anatomy, location="diffuse",
                                   anterior_bias=0.4, fluid_share=0.4)
    air, fluid = result.mask.astype(bool), result.fluid_mask.astype(bool)
    assert fluid.sum() > 0.25 * (air.sum() + fluid.sum()) and not (air & fluid).any()
    posterior = np.broadcast_to(patient_axis_coordinate(tcia_volume.affine, air.shape, 1), air.shape)
    assert posterior[fluid].min() >= posterior[air].max() - 2 * tcia_volume.spacing[1]  # supine: fluid is posterior
    assert -20 < np.median(result.volume.hu[fluid]) < 60 and np.median(result.volume.hu[air]) < -950


@pytest.fixture(scope="module")
def confounded(tcia_volume, anatomy):
    from ptx_annotator.synthetic.confounders import add_confounder

    cache = {}

    def make(kind, side="right"):
        if (kind, side) not in cache:
            cache[kind, side] = add_confounder(tcia_volume, kind, side, seed=8, anatomy=anatomy)
        return cache[kind, side]
    return make


def test_a_bulla_is_air_enclosed_by_lung(tcia_volume, anatomy, confounded):
    from scipy import ndimage as ndi

    bulla = confounded("bulla", "left")
    mask = bulla.mask.astype(bool)
    assert bulla.volume_ml > 2 and np.median(bulla.volume.hu[mask]) < -950
    ring = ndi.binary_dilation(mask, iterations=3) & ~ndi.binary_dilation(mask)
    assert np.mean(anatomy.lung_left[ring]) > 0.95  # lung on every side
    assert _depth_in(anatomy.hemithorax_left, tcia_volume.spacing)[mask].min() > 3.0  # away from the wall


def test_a_subpleural_bleb_touches_the_chest_wall(tcia_volume, anatomy, confounded):
    bleb = confounded("subpleural_bleb")
    mask = bleb.mask.astype(bool)
    depth = _depth_in(anatomy.hemithorax_right, tcia_volume.spacing)
    assert bleb.volume_ml > 0.5 and np.all(anatomy.hemithorax_right[mask])
    assert depth[mask].min() <= 1.5 * tcia_volume.spacing[1]


@pytest.mark.parametrize("kind", ["subcutaneous_emphysema", "pneumomediastinum", "oesophageal_gas", "bowel_gas"])
def test_extrapleural_air_stays_out_of_the_pleural_cavities(tcia_volume, anatomy, confounded, kind):
    result = confounded(kind)
    mask = result.mask.astype(bool)
    assert result.volume_ml > 1 and np.median(result.volume.hu[mask]) < -900
    assert not (mask & anatomy.hemithoraces).any() and np.all(anatomy.body[mask])
    left_mm = np.broadcast_to(left_coordinate(tcia_volume.affine, mask.shape), mask.shape)
    superior = np.broadcast_to(patient_axis_coordinate(tcia_volume.affine, mask.shape, 2), mask.shape)
    if kind == "subcutaneous_emphysema":
        assert left_mm[mask].max() < left_mm[anatomy.body].mean() + 1  # on the right
    if kind == "pneumomediastinum":
        assert abs(left_mm[mask].mean() - left_mm[anatomy.body].mean()) < 40  # between the lungs
    if kind == "bowel_gas":  # at or below the lung base
        assert superior[mask].mean() < np.percentile(superior[anatomy.lung_right], 10)


def test_emphysema_lowers_the_lung_not_the_wall(tcia_volume, anatomy, confounded):
    result = confounded("emphysema")
    mask = result.mask.astype(bool)
    assert np.all(anatomy.lungs[mask]) and result.volume_ml > 50
    assert np.median(result.volume.hu[mask]) < -930  # low attenuation, a little above pure air
    assert np.mean(result.volume.hu[mask]) < np.mean(tcia_volume.hu[mask]) - 50
    assert np.array_equal(result.volume.hu[~anatomy.lungs], tcia_volume.hu[~anatomy.lungs])


def test_a_case_spec_replays_exactly_and_records_bilateral_and_protocol(tcia_volume, anatomy):
    from ptx_annotator.synthetic.cases import simulate_case

    spec = {"pneumothorax": [{"side": "right", "fraction": 0.05, "seed": 1},
                             {"side": "left", "rim_mm": 2.0, "rim_extent": "apex", "seed": 2}],
            "confounders": [{"kind": "subcutaneous_emphysema", "side": "left", "seed": 3}],
            "acquisition": {"slice_mm": 8.0, "noise_hu": 40.0, "kernel": "sharp", "seed": 4}}
    case = simulate_case(tcia_volume, spec, anatomy=anatomy)
    again = simulate_case(tcia_volume, spec, anatomy=anatomy)
    assert np.array_equal(case.volume.hu, again.volume.hu) and np.array_equal(case.mask, again.mask)
    assert case.volume.spacing[0] == 8.0 and case.volume.shape[0] == int((tcia_volume.shape[0] - 1) * 5 // 8) + 1
    assert case.volume.voxel_volume_ml == pytest.approx(tcia_volume.voxel_volume_ml * 8 / 5)
    left_mm = np.broadcast_to(left_coordinate(case.volume.affine, case.mask.shape), case.mask.shape)
    mask = case.mask.astype(bool)
    assert (left_mm[mask] < 0).any() and (left_mm[mask] > 0).any() or len(np.unique(left_mm[mask] > 0)) == 2
    before = sum(r["volume_ml"] for r in case.records if "pneumothorax" in r)
    assert case.volume_ml == pytest.approx(before, rel=0.3)  # 8 mm partial volume keeps the truth's size
    assert [list(r)[0] for r in case.records] == ["pneumothorax", "pneumothorax", "confounder", "acquisition"]
    assert not (mask & case.confounder_mask.astype(bool)).any()


def test_kernel_and_noise_change_what_they_should(tcia_volume):
    from ptx_annotator.synthetic.acquisition import reacquire

    def edges(hu):
        return float(np.mean(np.abs(np.diff(hu[32].astype(np.float32), axis=1))))

    smooth, _ = reacquire(tcia_volume, kernel="smooth")
    sharp, _ = reacquire(tcia_volume, kernel="sharp")
    noisy, _ = reacquire(tcia_volume, noise_hu=60.0, seed=1)
    assert edges(smooth.hu) < edges(tcia_volume.hu) < edges(sharp.hu)
    body = tcia_volume.hu[32, 250:260, 250:260].astype(np.float32)  # inside the heart: soft tissue
    assert np.std(noisy.hu[32, 250:260, 250:260].astype(np.float32) - body) == pytest.approx(60, rel=0.25)
    with pytest.raises(ValueError, match="slice_mm"):
        reacquire(tcia_volume, slice_mm=12.0)


def test_simulate_cli_confounders_only_and_refusals(tmp_path, tcia_volume, capsys):
    import json

    from ptx_annotator.cli import main
    from ptx_annotator.io import load_mask_nifti

    rc = main(["simulate", str(tcia_volume.source), str(tmp_path), "--no-pneumothorax", "--confounder", "bulla:left"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "spec.json").read_text())
    assert record["spec"]["pneumothorax"] == [] and record["spec"]["confounders"][0]["kind"] == "bulla"
    truth, _ = load_mask_nifti(tmp_path / "truth_mask.nii.gz")
    others, _ = load_mask_nifti(tmp_path / "confounder_mask.nii.gz")
    assert truth.sum() == 0 and others.sum() > 0 and record["truth_ml"] == 0
    assert main(["simulate", str(tcia_volume.source), str(tmp_path), "--confounder", "cyst"]) == 2
    err = capsys.readouterr().err
    assert "--confounder 'cyst'" in err and "Traceback" not in err


# --- mediastinal shift (tension pneumothorax) ---------------------------------------------------

@pytest.fixture(scope="module")
def shifted(anatomy, right20):
    from ptx_annotator.synthetic.shift import shift_mediastinum

    return shift_mediastinum(right20.volume, anatomy, 15.0, "right", seed=3,
                             masks={"air": right20.air_share, "mask": right20.mask})


def test_mediastinal_shift_moves_the_mediastinum_towards_the_other_side(tcia_volume, right20, shifted):
    before, after = right20.volume.hu.astype(np.float32), shifted.volume.hu.astype(np.float32)
    moved = shifted.displacement_mm >= 0.9 * 15.0
    zs = np.flatnonzero(moved.sum(axis=(1, 2)) > 2000)
    assert zs.size >= 5
    z = int(zs[zs.size // 2])
    rows, cols = (np.flatnonzero(moved[z].any(axis=a)) for a in (1, 0))
    box = (z, slice(rows[0], rows[-1] + 1), slice(cols[0] + 30, cols[-1] + 1 - 30))
    # the shift that best lines the new heart up with the old one, measured on the CT itself
    columns = {c: float(np.mean(np.abs(after[box] - np.roll(before, c, axis=2)[box]))) for c in range(-5, 35)}
    best_mm = min(columns, key=columns.get) * tcia_volume.affine[0, 2]  # + is towards the patient's left
    assert 12.0 <= best_mm <= 18.0, columns
    assert shifted.options["shift_mm"] == 15.0 and shifted.options["away_from"] == "right"
    assert shifted.options["core_shift_mm"] == pytest.approx(15.0, rel=0.1)
    assert shifted.options["min_stretch"] > 0.3  # smooth: no tissue folded over
    # the chest wall, the spine and everything outside the body stay where they were
    left_mm = np.broadcast_to(left_coordinate(tcia_volume.affine, before.shape), before.shape)
    posterior = np.broadcast_to(patient_axis_coordinate(tcia_volume.affine, before.shape, 1), before.shape)
    body = shifted.anatomy.body
    middle = left_mm[body].mean()
    spine = (before > 300) & (np.abs(left_mm - middle) < 12) & (posterior > np.percentile(posterior[body], 70))
    assert spine.sum() > 2000 and np.mean(after[spine] == before[spine]) > 0.9
    assert np.array_equal(after[~body], before[~body])


def test_mediastinal_shift_keeps_the_masks_on_their_ct(anatomy, right20, shifted):
    mask = shifted.masks["mask"].astype(bool)
    assert np.all(shifted.anatomy.hemithorax_right[mask])  # the air still lies in its pleural cavity
    assert not (mask & shifted.anatomy.hemithorax_left).any()
    assert np.array_equal(mask, shifted.masks["air"] >= 0.5)  # masks and air shares moved alike
    assert np.median(shifted.volume.hu[mask]) < -950  # the truth is still air on the new CT
    assert mask.sum() > right20.mask.sum()  # the pneumothorax side is stretched, the air grew
    fresh = segment_thorax(shifted.volume)  # the moved anatomy is the new CT's anatomy
    for name in ("lung_left", "hemithorax_left"):
        a, b = getattr(fresh, name), getattr(shifted.anatomy, name)
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95
    # the opposite lung is compressed and denser (its tissue mass kept), not cut off
    assert shifted.anatomy.lung_left.sum() < 0.97 * anatomy.lung_left.sum()
    assert np.median(shifted.volume.hu[shifted.anatomy.lung_left]) > np.median(right20.volume.hu[anatomy.lung_left])


def test_simulate_cli_mediastinal_shift_is_recorded_and_bad_values_refused(tmp_path, tcia_volume, capsys):
    import json

    from ptx_annotator.cli import main
    from ptx_annotator.io import load_mask_nifti

    source = str(tcia_volume.source)
    bad = [(["--mediastinal-shift-mm", "80"], "--mediastinal-shift-mm 80 is outside [1, 40] mm"),
           (["--mediastinal-shift-mm", "nan"], "--mediastinal-shift-mm nan"),
           (["--side", "both", "--mediastinal-shift-mm", "10"], "--side right"),
           (["--no-pneumothorax", "--confounder", "bulla", "--mediastinal-shift-mm", "10"], "--no-pneumothorax"),
           (["--rim-mm", "50"], "--rim-mm 50 is outside [0.5, 20]"), (["--seed", "-1"], "--seed -1"),
           (["--fluid-share", "0.9"], "--fluid-share"), (["--slice-mm", "12"], "--slice-mm 12")]
    for options, message in bad:
        assert main(["simulate", source, str(tmp_path / "bad"), *options]) == 2, options
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "shifted"
    assert main(["simulate", source, str(out), "--fraction", "0.3", "--mediastinal-shift-mm", "12", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "mediastinal shift 12 mm away from the right" in printed
    record = json.loads((out / "spec.json").read_text())
    assert record["spec"]["mediastinal_shift"] == {"shift_mm": 12.0, "seed": 302}
    shift = next(r["mediastinal_shift"] for r in record["records"] if "mediastinal_shift" in r)
    assert shift["away_from"] == "right" and shift["core_shift_mm"] == pytest.approx(12.0, rel=0.1)
    truth, _ = load_mask_nifti(out / "truth_mask.nii.gz")
    assert truth.sum() * tcia_volume.voxel_volume_ml == pytest.approx(record["truth_ml"], rel=1e-3)
    # the record replays: the same spec gives the same truth
    again = tmp_path / "again"
    assert main(["simulate", source, str(again), "--spec", str(out / "spec.json")]) == 0
    assert np.array_equal(load_mask_nifti(again / "truth_mask.nii.gz")[0], truth)


# --- partial volume of thick slices; noise and kernels ------------------------------------------

def test_a_1mm_rim_on_5mm_slices_is_a_faint_partial_volume_band(tcia_volume, anatomy):
    from ptx_annotator.synthetic.slab import COVERED_SHARE

    assert tcia_volume.spacing[0] == 5.0
    rim = simulate_pneumothorax(tcia_volume, "right", rim_mm=1.0, seed=4, anatomy=anatomy)
    share, mask = rim.air_share, rim.mask.astype(bool)
    assert np.array_equal(mask, share >= COVERED_SHARE)  # the truth: voxels at least half air
    touched = share > 0
    band = touched & ~mask
    assert band.sum() > 0.2 * touched.sum()  # where the wall meets the slice at an angle: part air
    before, after = tcia_volume.hu.astype(np.float32), rim.volume.hu.astype(np.float32)
    darker = before[band] - after[band]
    expected = share[band] * (before[band] - rim.air_hu[0])  # that share of the voxel turned to air
    assert np.mean(darker) == pytest.approx(np.mean(expected), rel=0.25)
    assert 10 < np.mean(darker) < 150 and np.median(after[band]) > -950  # faint, not pure air
    # thin: within the rim's 1 mm (+20 %) of the wall, allowing half a 5 mm slice across an oblique wall
    depth = _depth_in(anatomy.hemithorax_right, tcia_volume.spacing)
    assert depth[mask].max() <= 1.2 + tcia_volume.spacing[0] / 2
    assert 0 < float(share.sum()) * tcia_volume.voxel_volume_ml < 100


def test_thick_reacquisition_keeps_the_one_truth_rule(tcia_volume, anatomy):
    from ptx_annotator.synthetic.acquisition import reacquire
    from ptx_annotator.synthetic.cases import simulate_case

    rim = {"side": "right", "rim_mm": 3.0, "seed": 9}
    case = simulate_case(tcia_volume, {"pneumothorax": [rim], "acquisition": {"slice_mm": 8.0, "seed": 1}},
                         anatomy=anatomy)
    single = simulate_pneumothorax(tcia_volume, anatomy=anatomy, **rim)
    # the truth is where at least half of each 8 mm voxel is pneumothorax air: shares averaged, then the rule
    _, masks = reacquire(single.volume, {"air": single.air_share, "binary": single.mask}, slice_mm=8.0)
    assert np.array_equal(case.mask, masks["air"])
    assert case.mask.sum() > 0 and not np.array_equal(masks["air"], masks["binary"])
    assert np.median(case.volume.hu[case.mask.astype(bool)]) < -900  # what the truth marks is visibly air


@pytest.mark.parametrize("kernel", ["smooth", "sharp"])
def test_low_dose_noise_has_the_sd_asked_whatever_the_kernel(tcia_volume, kernel):
    from ptx_annotator.synthetic.acquisition import reacquire

    quiet, _ = reacquire(tcia_volume, kernel=kernel)
    noisy, _ = reacquire(tcia_volume, kernel=kernel, noise_hu=40.0, seed=2)
    heart = (slice(28, 36), slice(250, 270), slice(250, 270))  # soft tissue: nothing clipped
    added = noisy.hu[heart].astype(np.float32) - quiet.hu[heart].astype(np.float32)
    assert np.std(added) == pytest.approx(40.0, rel=0.15) and abs(np.mean(added)) < 3
    assert noisy.warnings[-1].startswith("Re-acquired") and "'noise_hu': 40.0" in noisy.warnings[-1]


def test_mediastinal_shift_away_from_the_left_moves_it_right_and_bad_options_are_refused(tcia_volume, anatomy):
    from ptx_annotator.synthetic.cases import simulate_case
    from ptx_annotator.synthetic.shift import shift_mediastinum

    result = shift_mediastinum(tcia_volume, anatomy, 10.0, "left", seed=0)
    assert result.displacement_mm.max() <= 0 and result.options["core_shift_mm"] == pytest.approx(10.0, rel=0.1)
    for options, message in (({"shift_mm": 80}, "mediastinal shift must be in"),
                             ({"shift_mm": 10, "towards": "left"}, "unknown mediastinal_shift options"),
                             ({"seed": 1}, "needs shift_mm")):
        with pytest.raises(ValueError, match=message):
            simulate_case(tcia_volume, {"pneumothorax": [], "confounders": [{"kind": "bulla", "seed": 1}],
                                        "mediastinal_shift": {"away_from": "right", **options}}, anatomy=anatomy)
    with pytest.raises(ValueError, match="needs a pneumothorax"):
        simulate_case(tcia_volume, {"mediastinal_shift": {"shift_mm": 10}}, anatomy=anatomy)
