"""CT I/O on the real shared series, and every error path by its message."""

import random
import shutil

import numpy as np
import pydicom
import pytest

from shared_data import JPEG2000_CT, MINIMAL_SLICE, NRRD_CT, TCIA_CT, need
from ptx_annotator.errors import NotCTError, SeriesError, StudyError
from ptx_annotator.io import load_nrrd, load_series, load_volume, scan_study


def _copy_series(src, dst, rename=None):
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.name != "LICENSE.txt")
    out = []
    for i, path in enumerate(files):
        target = dst / (rename(i, path) if rename else path.name)
        shutil.copyfile(path, target)
        out.append(target)
    return out


def test_tcia_series_geometry_and_hu(tcia_volume):
    vol = tcia_volume
    assert vol.shape == (64, 512, 512)
    assert vol.spacing == pytest.approx((5.0, 0.8418, 0.8418), abs=1e-3)
    assert float(vol.hu.min()) == -1024 and float(vol.hu.max()) == 2976
    assert len(vol.slice_uids) == 64 and len(set(vol.slice_uids)) == 64
    assert vol.orientation == "LPS"
    assert vol.warnings == [] or all("skipped" in w for w in vol.warnings)


def test_tcia_order_ignores_file_names_and_instance_numbers(tmp_path, tcia_volume):
    src = need(TCIA_CT)
    names = [f"img{n:03d}" for n in range(64)]
    random.Random(3).shuffle(names)
    files = _copy_series(src, tmp_path / "scrambled" / "deep", rename=lambda i, p: names[i])
    for path in files:  # reverse InstanceNumber so it disagrees with the true order
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 1000 - int(ds.InstanceNumber)
        ds.save_as(path)
    (tmp_path / "scrambled" / "notes.txt").write_text("not dicom")
    vol = load_series(tmp_path / "scrambled")
    truth_z = sorted((float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
                      str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)) for p in src.glob("*.dcm"))
    assert vol.slice_uids == [uid for _, uid in truth_z]
    np.testing.assert_array_equal(vol.hu, tcia_volume.hu)
    assert any("notes.txt" in w and "skipped" in w for w in vol.warnings)
    z_positions = [(vol.affine @ [k, 0, 0, 1])[2] for k in range(64)]
    assert z_positions == pytest.approx([z for z, _ in truth_z], abs=1e-3)


def test_jpeg2000_series_decodes_with_header_geometry():
    src = need(JPEG2000_CT)
    vol = load_series(src)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in src.iterdir() if p.name.startswith("CT.")]
    assert "JPEG 2000" in vol.transfer_syntax
    assert vol.shape == (len(headers), int(headers[0].Rows), int(headers[0].Columns))
    z = sorted(float(h.ImagePositionPatient[2]) for h in headers)
    assert vol.spacing[0] == pytest.approx(np.median(np.diff(z)), abs=1e-3) == pytest.approx(2.0, abs=1e-3)
    assert vol.spacing[1:] == pytest.approx(tuple(float(v) for v in headers[0].PixelSpacing), abs=1e-4)
    assert float(headers[0].SliceThickness) != pytest.approx(vol.spacing[0])  # spacing from positions, not thickness
    # lossless decode: soft tissue and air present, values in a CT range
    assert -1100 <= vol.hu.min() < -900 and 100 < vol.hu.max() < 4000
    assert np.median(vol.hu[:, 200:300, 200:300]) > -200


def test_minimal_header_slice_loads_with_warnings():
    vol = load_series(need(MINIMAL_SLICE))
    assert vol.shape == (1, 512, 512)
    assert any("single slice" in w for w in vol.warnings)
    assert any("no Modality" in w for w in vol.warnings)
    assert vol.hu.min() == -2048  # padding outside the field of view kept as stored


def test_nrrd_volume_loads_with_spacing():
    vol = load_nrrd(need(NRRD_CT))
    assert vol.shape == (48, 512, 512)
    assert vol.spacing == pytest.approx((5.0, 0.570, 0.570), abs=2e-3)
    assert vol.orientation[:2] in ("LP", "RA")
    assert load_volume(NRRD_CT).shape == vol.shape


def test_nifti_round_trip_keeps_geometry(tmp_path, tcia_volume):
    import nibabel as nib

    from ptx_annotator.io.volume_files import nifti_affine_from_lps

    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(tcia_volume.hu.transpose(2, 1, 0), nifti_affine_from_lps(tcia_volume.affine)), path)
    vol = load_volume(path)
    np.testing.assert_array_equal(vol.hu, tcia_volume.hu)
    np.testing.assert_allclose(vol.affine, tcia_volume.affine, atol=1e-4)
    assert vol.spacing == pytest.approx(tcia_volume.spacing, abs=1e-4)


# ---- error paths ---------------------------------------------------------------------------

def test_empty_folder(tmp_path):
    with pytest.raises(StudyError, match="is empty"):
        load_series(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(StudyError, match="No DICOM image series.*readme.txt"):
        scan_study(tmp_path)


def test_truncated_file_is_named(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    victim = files[10]
    victim.write_bytes(victim.read_bytes()[:200_000])
    with pytest.raises(SeriesError, match=victim.name + ".*truncated"):
        load_series(tmp_path)


def test_missing_slices_warn(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    by_z = sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    for path in by_z[30:32]:
        path.unlink()
    vol = load_series(tmp_path)
    assert vol.shape[0] == 62
    assert vol.spacing[0] == pytest.approx(5.0)
    assert any("Missing slices" in w and "about 2 slice(s) missing" in w for w in vol.warnings)


def test_uneven_spacing_warns(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    ds = pydicom.dcmread(files[20])
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 1.5
    ds.save_as(files[20])
    vol = load_series(tmp_path)
    assert any("Uneven slice spacing" in w for w in vol.warnings)


def _alter(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_mixed_image_sizes_refused(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    ds = pydicom.dcmread(files[5])
    small = ds.pixel_array[::2, ::2].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    ds.save_as(files[5])
    with pytest.raises(SeriesError, match=r"mixes image sizes.*256x256 in 1 file"):
        load_series(tmp_path)


def test_mixed_orientations_refused(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    _alter(files[7], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(SeriesError, match="mixes orientations"):
        load_series(tmp_path)


def test_non_ct_modality_refused_unless_allowed(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    for path in files[:3]:
        _alter(path, Modality="MR")
    for path in files[3:]:
        path.unlink()
    with pytest.raises(NotCTError, match="is MR, not CT"):
        load_series(tmp_path)
    vol = load_series(tmp_path, allow_non_ct=True)
    assert any("not CT" in w for w in vol.warnings)


def test_duplicate_position_from_other_acquisition_refused(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path)
    extra = tmp_path / "extra.dcm"
    shutil.copyfile(files[0], extra)
    _alter(extra, SOPInstanceUID=pydicom.uid.generate_uid())
    with pytest.raises(SeriesError, match="same position"):
        load_series(tmp_path)


def test_several_series_need_a_choice(tmp_path):
    files = _copy_series(need(TCIA_CT), tmp_path / "a")
    other_uid = pydicom.uid.generate_uid()
    for path in files[:4]:
        _alter(path, SeriesInstanceUID=other_uid)
    scan = scan_study(tmp_path)
    assert sorted(len(s.files) for s in scan.series) == [4, 60]
    with pytest.raises(StudyError, match="holds 2 series"):
        load_series(tmp_path)
    assert load_series(tmp_path, series_uid=other_uid).shape[0] == 4


def test_the_viewer_shows_the_largest_ct_series_first_or_the_one_asked_for():
    from ptx_annotator.io.discovery import SeriesFiles, StudyScan

    scan = StudyScan(root="study", series=[
        SeriesFiles("1.2.scout", ["a"] * 3, "CT", "scout"),
        SeriesFiles("1.2.pet", ["b"] * 300, "PT", "PET"),  # more images, but not a CT
        SeriesFiles("1.2.lung", ["c"] * 64, "CT", "lung"),
    ])
    assert scan.preferred_index() == 2
    assert scan.preferred_index("1.2.scout") == 0
    with pytest.raises(StudyError, match="1.2.scout, 1.2.pet, 1.2.lung"):
        scan.preferred_index("9.9.missing")
    assert StudyScan(root="empty").preferred_index() == 0
