"""Readers' SEGs on a real Orthanc: push, supersede, read back, compare across workstations, worklist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ._helpers import environment_for, reader_mask, run_cli
from ptx_annotator.io import load_volume, save_mask_nifti
from ptx_annotator.io.dicomweb import Connection, parse_study_url
from ptx_annotator.io.dicomweb_cache import cached_ct
from ptx_annotator.io.seg import read_seg
from ptx_annotator.pacs import reader_segs, seg_series_uid


def import_and_push(orthanc, tmp_path, capsys, reader: str, mask: np.ndarray, affine) -> None:
    path = tmp_path / f"{reader}.nii.gz"
    save_mask_nifti(mask, affine, path)
    status, out, err = run_cli(["import", orthanc.study_url(), str(path), "--annotator", reader, "--replace"], capsys)
    assert status == 0, err
    status, out, err = run_cli(["push", orthanc.study_url(), "--annotator", reader], capsys)
    assert status == 0, err
    assert orthanc.auth.split(":")[1] not in out + err


def test_push_supersedes_and_reads_back_exactly(orthanc, workstation, tmp_path, capsys):
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    volume = load_volume(cached_ct(parse_study_url(orthanc.study_url())))
    first, second = reader_mask(volume.shape, 30, 2), reader_mask(volume.shape, 33, 4)
    import_and_push(orthanc, tmp_path, capsys, "dana", first, volume.affine)
    import_and_push(orthanc, tmp_path, capsys, "dana", second, volume.affine)
    connection = Connection(orthanc.url, orthanc.auth)
    series_uid = seg_series_uid(orthanc.ct_study, "dana")
    ours = [s for s in reader_segs(connection, parse_study_url(orthanc.study_url())) if s.reader == "dana"]
    assert len(ours) == 1, "a later push must not add a second series"
    assert ours[0].series_uid == series_uid and ours[0].number == 2
    assert ours[0].description.startswith("Pneumothorax (dana, ") and "% reviewed" in ours[0].description
    path = tmp_path / "back.dcm"
    path.write_bytes(connection.instance_bytes(orthanc.ct_study, series_uid, ours[0].sop_uid))
    back = read_seg(path, volume)
    assert back.mapped_by == "sop_instance_uid" and back.content_creator.startswith("dana")
    assert np.array_equal(back.mask, second)
    status, out, err = run_cli(["quantify", orthanc.study_url(), "--annotator", "dana"], capsys)
    assert status == 0 and "kept the local mask" not in err, "its own push is not news to this machine"


def push_from_process(orthanc, home: Path, reader: str, mask_path: Path) -> None:
    env = environment_for(home, orthanc.auth)
    for argv in (["import", orthanc.study_url(), str(mask_path), "--annotator", reader],
                 ["push", orthanc.study_url(), "--annotator", reader]):
        done = subprocess.run([sys.executable, "-m", "ptx_annotator", *argv], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr


def test_two_readers_pushed_from_two_processes_compare_on_a_third(orthanc, workstation, tmp_path, capsys):
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    volume = load_volume(cached_ct(parse_study_url(orthanc.study_url())))
    masks = {"erin": reader_mask(volume.shape, 20, 3), "femi": reader_mask(volume.shape, 21, 3, shift=6)}
    for reader, mask in masks.items():
        save_mask_nifti(mask, volume.affine, tmp_path / f"{reader}.nii.gz")
        push_from_process(orthanc, tmp_path / reader, reader, tmp_path / f"{reader}.nii.gz")
    status, out, err = run_cli(["compare", orthanc.study_url(), "--annotators", "erin", "femi",
                                "--out", str(tmp_path / "cmp"), "--json"], capsys)
    assert status == 0, err
    summary = json.loads(out)
    a, b = masks["erin"].astype(bool), masks["femi"].astype(bool)
    assert summary["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), abs=1e-6)
    assert "'erin': mask from the server's SEG" in err and "'femi': mask from the server's SEG" in err


def test_worklist_is_patient_free_and_shows_readers(orthanc, workstation, tmp_path, capsys):
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    volume = load_volume(cached_ct(parse_study_url(orthanc.study_url())))
    import_and_push(orthanc, tmp_path, capsys, "gil", reader_mask(volume.shape, 25, 2), volume.affine)
    status, out, err = run_cli(["worklist", orthanc.url, "--json"], capsys)
    assert status == 0, err
    listing = json.loads(out)
    rows = {row["study_uid"]: row for row in listing["studies"]}
    assert orthanc.xray_study not in rows, "a study without CT is not on the CT worklist"
    row = rows[orthanc.ct_study]
    assert row["slices"] == 64 and row["seg"] and row["url"] == orthanc.study_url()
    assert row["readers"]["gil"]["seg_instance"] >= 1 and row["readers"]["gil"]["n_slices"] == 64
    assert row["readers"]["gil"]["reviewed_slices"] == 2
    status, text, err = run_cli(["worklist", orthanc.url], capsys)
    for private in ("Lung_Dx", "PatientName", "PatientID"):
        assert private not in out + text


def test_worklist_predicts_every_unproposed_study(orthanc, workstation, capsys):
    status, out, err = run_cli(["worklist", orthanc.url, "--predict-unproposed", "--json"], capsys)
    assert status == 0, err
    rows = {row["study_uid"]: row for row in json.loads(out)["studies"]}
    assert rows[orthanc.ct_study]["proposal"] and "predicting 1 of 1" in err
    status, out, err = run_cli(["worklist", orthanc.url, "--predict-unproposed"], capsys)
    assert status == 0 and "predicting 0 of 1" in err


def test_a_seg_referencing_other_instances_is_skipped_with_a_note(orthanc, workstation, tmp_path, capsys):
    import pydicom
    from pydicom.uid import generate_uid

    from ptx_annotator.io.seg import write_seg

    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    folder = cached_ct(parse_study_url(orthanc.study_url()))
    other = tmp_path / "other_reconstruction"  # the same study, reconstructed again: other slices and frame
    other.mkdir()
    series_uid, frame_uid = generate_uid(), generate_uid()
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series_uid, frame_uid
        ds.ImagePositionPatient = [float(v) + d for v, d in zip(ds.ImagePositionPatient, (0.0, 0.0, 2.5))]
        ds.save_as(other / path.name)
    volume = load_volume(other)
    write_seg(reader_mask(volume.shape, 5, 2), volume, tmp_path / "other.dcm", annotator="hana")
    assert str(pydicom.dcmread(tmp_path / "other.dcm").StudyInstanceUID) == orthanc.ct_study
    orthanc.upload(tmp_path / "other.dcm")
    status, out, err = run_cli(["export", orthanc.study_url(), "--annotator", "hana", "--out",
                                str(tmp_path / "x.nii.gz"), "--format", "nifti"], capsys)
    assert status == 2
    assert "skipped the SEG of 'hana'" in err and orthanc.ct_study in err
    assert "No saved mask of annotator 'hana'" in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_a_readers_newer_push_replaces_what_was_pulled_but_never_local_work(orthanc, workstation, tmp_path, capsys):
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    volume = load_volume(cached_ct(parse_study_url(orthanc.study_url())))
    old, new = reader_mask(volume.shape, 40, 2), reader_mask(volume.shape, 44, 3)
    for name, mask in (("old", old), ("new", new)):
        save_mask_nifti(mask, volume.affine, tmp_path / f"{name}.nii.gz")
    elsewhere = tmp_path / "jo_machine"
    push_from_process(orthanc, elsewhere, "jo", tmp_path / "old.nii.gz")

    def pulled() -> tuple[np.ndarray, str]:
        status, out, err = run_cli(["export", orthanc.study_url(), "--annotator", "jo", "--format", "nifti",
                                    "--out", str(tmp_path / "jo.nii.gz")], capsys)
        assert status == 0, err
        from ptx_annotator.io import load_mask_nifti

        return load_mask_nifti(tmp_path / "jo.nii.gz")[0], err

    assert np.array_equal(pulled()[0], old)
    env = environment_for(elsewhere, orthanc.auth)
    for argv in (["import", orthanc.study_url(), str(tmp_path / "new.nii.gz"), "--annotator", "jo", "--replace"],
                 ["push", orthanc.study_url(), "--annotator", "jo"]):
        done = subprocess.run([sys.executable, "-m", "ptx_annotator", *argv], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert np.array_equal(pulled()[0], new), "the newer push replaces the pulled mask"
    status, out, err = run_cli(["import", orthanc.study_url(), str(tmp_path / "old.nii.gz"), "--annotator", "jo",
                                "--replace"], capsys)
    assert status == 0, err  # now this machine has its own work for 'jo'
    mask, err = pulled()
    assert np.array_equal(mask, old), "local work is never overwritten by a pull"
    assert "kept the local mask of 'jo' (the server has their SEG #2 too)" in err
