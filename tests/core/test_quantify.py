"""Pneumothorax volumes per patient side, hemithorax share and the 3D rim distance."""

import json

import numpy as np
import pytest

from ptx_annotator.anatomy import ThoraxAnatomy, segment_thorax
from ptx_annotator.cli import main
from ptx_annotator.quantify import quantify, widest_rim
from ptx_annotator.volume import Volume


@pytest.fixture(scope="module")
def tcia_anatomy(tcia_volume):
    return segment_thorax(tcia_volume)


def _blobs(volume):
    """The air of two boxes reaching from the chest wall into the lungs, at low and high image columns."""
    air = volume.hu < -400
    low = np.zeros(volume.shape, dtype=np.uint8)
    high = np.zeros(volume.shape, dtype=np.uint8)
    low[28:34, 250:300, 90:160] = air[28:34, 250:300, 90:160]
    high[28:34, 250:300, 360:430] = air[28:34, 250:300, 360:430]
    return low, high


def _flipped_x(volume):
    """The same CT with the x array axis reversed and the affine adjusted: patient space unchanged."""
    affine = np.array(volume.affine, dtype=float)
    affine[:3, 3] += affine[:3, 2] * (volume.shape[2] - 1)
    affine[:3, 2] *= -1
    return Volume(hu=np.ascontiguousarray(volume.hu[:, :, ::-1]), spacing=volume.spacing, affine=affine,
                  series_uid="flipped", source="flipped")


def test_sides_follow_patient_orientation_not_columns(tcia_volume, tcia_anatomy):
    low, high = _blobs(tcia_volume)
    assert low.sum() > 5000 and high.sum() > 5000
    assert (tcia_volume.hu[28:34, 250:300, 90] > -400).all()  # the boxes start in the chest wall
    assert tcia_volume.affine[0, 2] > 0  # columns run towards patient left: low columns are patient right
    voxel_ml = float(np.prod(tcia_volume.spacing)) / 1000

    right = quantify(low, tcia_volume, tcia_anatomy)
    assert right.volume_right_ml == pytest.approx(low.sum() * voxel_ml, rel=1e-9)
    assert right.volume_left_ml == 0 and right.volume_ml == pytest.approx(low.sum() * voxel_ml)
    left = quantify(high, tcia_volume, tcia_anatomy)
    assert left.volume_left_ml == pytest.approx(high.sum() * voxel_ml) and left.volume_right_ml == 0
    both = quantify(low | high, tcia_volume, tcia_anatomy)
    assert both.volume_right_ml == pytest.approx(right.volume_ml) and both.volume_left_ml == pytest.approx(left.volume_ml)

    for side in ("right", "left"):  # share of the same-side pleural cavity, in a plausible range
        cavity = getattr(both, f"hemithorax_volume_{side}_ml")
        assert 1000 < cavity < 5000
        assert getattr(both, f"hemithorax_share_{side}") == pytest.approx(getattr(both, f"volume_{side}_ml") / cavity)

    flipped = _flipped_x(tcia_volume)
    flipped_low = np.ascontiguousarray(low[:, :, ::-1])
    assert flipped_low[:, :, 300:].any() and not flipped_low[:, :, :256].any()  # now at HIGH columns ...
    result = quantify(flipped_low, flipped)
    assert result.volume_right_ml == pytest.approx(right.volume_ml)  # ... and still the patient's right
    assert result.volume_left_ml == 0
    assert result.hemithorax_share_right == pytest.approx(right.hemithorax_share_right, rel=0.02)


def _shell_case(thickness_mm, spacing=(2.5, 0.7, 0.9), inner_mm=40.0):
    """A 'lung' ball, a pneumothorax shell of known thickness around it, soft tissue outside."""
    outer = inner_mm + thickness_mm
    shape = [int(np.ceil(2 * (outer + 15) / s)) for s in spacing]
    centre = [(n - 1) / 2 for n in shape]
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = np.sqrt(((z - centre[0]) * spacing[0]) ** 2 + ((y - centre[1]) * spacing[1]) ** 2
                     + ((x - centre[2]) * spacing[2]) ** 2)
    lung, cavity = radius < inner_mm, radius < outer
    hu = np.where(cavity, -1000, 40).astype(np.int16)
    hu[lung] = -850
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, 0, spacing[2]], [0, spacing[1], 0], [spacing[0], 0, 0]])
    affine[:3, 3] = (-200.0, -100.0, -300.0)  # all of it on the patient's right of x = 0
    volume = Volume(hu=hu, spacing=spacing, affine=affine, series_uid="shell")
    empty = np.zeros(hu.shape, dtype=bool)
    anatomy = ThoraxAnatomy(body=radius < outer + 10, lungs=cavity, lung_right=cavity, lung_left=empty,
                            airways=empty, hemithorax_right=cavity, hemithorax_left=empty, outside_air=empty)
    return volume, anatomy, (cavity & ~lung).astype(np.uint8), radius


@pytest.mark.parametrize("thickness_mm, large", [(20.0, True), (12.0, False)])
def test_rim_of_a_shell_of_known_thickness(thickness_mm, large):
    volume, anatomy, shell, radius = _shell_case(thickness_mm)
    result = quantify(shell, volume, anatomy)
    voxel = max(volume.spacing)
    assert abs(result.max_rim_mm - thickness_mm) <= voxel
    assert result.bts_large is large and result.max_rim_side == "right"
    z, y, x = result.max_rim_index_zyx
    assert result.max_rim_slice == z and shell[z, y, x]
    assert abs(radius[z, y, x] - 40.0) <= voxel  # measured from the lung edge
    analytic_ml = 4 / 3 * np.pi * ((40 + thickness_mm) ** 3 - 40 ** 3) / 1000
    assert result.volume_ml == pytest.approx(shell.sum() * np.prod(volume.spacing) / 1000)
    assert result.volume_ml == pytest.approx(analytic_ml, rel=0.03)
    assert result.hemithorax_share_right == pytest.approx(result.volume_ml / (anatomy.hemithorax_right.sum()
                                                                             * np.prod(volume.spacing) / 1000))


def test_rim_undefined_without_lung_and_uneven_rim():
    volume, anatomy, shell, radius = _shell_case(20.0)
    assert widest_rim(shell > 0, np.zeros_like(shell, dtype=bool), radius >= 60, volume.spacing) is None
    collapsed = quantify((radius < 60).astype(np.uint8), volume, anatomy)  # no aerated lung left
    assert collapsed.max_rim_mm is None and collapsed.bts_large is None
    assert any("collapse" in note for note in collapsed.notes)
    stray = shell.copy()
    stray[0, 0, :5] = 1  # a slip of the brush outside the body: counted, noted, not a rim
    with_stray = quantify(stray, volume, anatomy)
    assert with_stray.n_voxels == shell.sum() + 5 and any("outside the body" in n for n in with_stray.notes)
    assert with_stray.max_rim_mm == quantify(shell, volume, anatomy).max_rim_mm
    # a shell thicker on one side: the rim is the widest gap, found at that side
    lopsided = shell.copy()
    z, y, x = np.indices(shell.shape)
    centre_x = (shell.shape[2] - 1) / 2
    lopsided[(radius >= 60) & (radius < 70) & (x > centre_x + 40 / 0.9)] = 1
    anatomy.hemithorax_right = anatomy.hemithorax_right | (lopsided > 0)
    result = quantify(lopsided, volume, anatomy)
    assert abs(result.max_rim_mm - 30.0) <= max(volume.spacing)
    assert result.max_rim_index_zyx[2] > centre_x


@pytest.mark.parametrize("side, fraction", [("left", 0.2)])
def test_simulated_pneumothorax_of_known_size(tcia_volume, tcia_anatomy, side, fraction):
    from scipy import ndimage as ndi

    from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

    simulated = simulate_pneumothorax(tcia_volume, side, fraction, seed=1, anatomy=tcia_anatomy)
    truth = simulated.mask > 0
    result = quantify(simulated.mask, simulated.volume)  # the anatomy is found again on the simulated CT
    other = "left" if side == "right" else "right"
    assert getattr(result, f"volume_{side}_ml") == pytest.approx(simulated.volume_ml, abs=0.5)
    assert getattr(result, f"volume_{other}_ml") < 0.5
    assert getattr(result, f"hemithorax_share_{side}") == pytest.approx(simulated.fraction_achieved, abs=0.02)
    # the simulation's air layer is 'depth from the chest wall < local thickness': its widest gap is the
    # deepest pneumothorax voxel's depth in the original pleural cavity
    cavity = tcia_anatomy.hemithorax(side)
    depth = ndi.distance_transform_edt(np.pad(cavity, 1), sampling=tcia_volume.spacing)[1:-1, 1:-1, 1:-1]
    assert abs(result.max_rim_mm - depth[truth].max()) <= max(tcia_volume.spacing)
    assert result.max_rim_side == side and result.bts_large is (result.max_rim_mm >= 20)


def test_cli_quantify_json_and_text(tcia_volume, tcia_dir, tmp_path, capsys):
    from ptx_annotator.io import save_mask_nifti
    from ptx_annotator.review.store import Annotation, AnnotationStore

    low, high = _blobs(tcia_volume)
    annotation = Annotation.empty(tcia_volume, "dr_q")
    annotation.mask = low
    content = [int(z) for z in np.flatnonzero(low.any(axis=(1, 2)))]
    for z in range(tcia_volume.shape[0]):
        annotation.review.mark(z, "proposed", by="model:test", source="model:test")
    annotation.review.mark(content[0], "accepted", by="dr_q")
    annotation.review.mark(content[1], "edited", by="dr_q")
    store = AnnotationStore(tmp_path / "store")
    store.save(annotation)
    store.close()
    rc = main(["quantify", str(tcia_dir), "--annotator", "dr_q", "--store", str(tmp_path / "store"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    payload = json.loads(out.out)
    for key in ("volume_ml", "volume_right_ml", "volume_left_ml", "hemithorax_share_right", "hemithorax_share_left",
                "max_rim_mm", "max_rim_slice", "bts_large"):
        assert key in payload
    n = tcia_volume.shape[0]
    assert (payload["n_slices"], payload["reviewed_slices"], payload["proposed_slices"]) == (n, 2, n - 2)
    assert (payload["accepted_slices"], payload["edited_slices"]) == (1, 1)
    on_reviewed = int(low[content[:2]].sum())
    assert payload["reviewed_voxels"] == on_reviewed and payload["unreviewed_voxels"] == int(low.sum()) - on_reviewed
    rc = main(["quantify", str(tcia_dir), "--annotator", "dr_q", "--store", str(tmp_path / "store")])
    assert f"reviewed by a person: 2 of {n} slices (1 accepted, 1 edited); {n - 2} proposed" in capsys.readouterr().out
    assert payload["volume_right_ml"] == pytest.approx(low.sum() * np.prod(tcia_volume.spacing) / 1000, rel=1e-3)
    assert payload["volume_left_ml"] == 0 and 28 <= payload["max_rim_slice"] <= 33

    save_mask_nifti(high, tcia_volume.affine, tmp_path / "left.nii.gz")
    rc = main(["quantify", "--mask", str(tmp_path / "left.nii.gz"), "--ct", str(tcia_dir), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_slices"] == n and payload["reviewed_slices"] is None  # a file carries no review states
    rc = main(["quantify", "--mask", str(tmp_path / "left.nii.gz"), "--ct", str(tcia_dir)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "right 0.0 mL" in out.out and f"left  {high.sum() * np.prod(tcia_volume.spacing) / 1000:.1f} mL" in out.out
