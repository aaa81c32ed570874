"""The annotation store: round trip, NIfTI geometry, crash safety, locking, names."""

import os
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ptx_annotator.errors import AnnotationLockedError, InvalidAnnotatorError
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED
from ptx_annotator.review.store import Annotation, AnnotationStore, safe_annotator_name
from ptx_annotator.volume import Volume


def _small_volume(shape=(6, 32, 40)):
    affine = np.eye(4)
    affine[:3, 0] = [0, 0, 2.5]
    affine[:3, 1] = [0, 0.7, 0]
    affine[:3, 2] = [0.7, 0, 0]
    affine[:3, 3] = [-100, -120, -300]
    hu = np.full(shape, -1000, dtype=np.int16)
    return Volume(hu=hu, spacing=(2.5, 0.7, 0.7), affine=affine, series_uid="1.2.3.4.5")


def test_round_trip_mask_and_review(tmp_path):
    vol = _small_volume()
    store = AnnotationStore(tmp_path)
    ann = store.load_or_empty(vol, "Dr Smith")
    assert ann.annotator == "Dr_Smith" and ann.version == 0
    ann.mask[2, 5:9, 10:20] = 1
    ann.review.mark(2, EDITED, by="Dr_Smith", source="classical-v1")
    ann.review.mark(3, FLAGGED, by="Dr_Smith")
    ann.current_slice = 3
    ann.proposals["classical-v1"] = {"kind": "classical", "threshold_hu": -950}
    assert store.save(ann) == 1
    store.close()

    again = AnnotationStore(tmp_path).load(vol.key, "Dr Smith", vol)
    np.testing.assert_array_equal(again.mask, ann.mask)
    assert again.review.states()[2:4] == [EDITED, FLAGGED]
    assert again.review[2].by == "Dr_Smith" and again.review[2].source == "classical-v1" and again.review[2].at
    assert again.current_slice == 3 and again.version == 1
    assert again.proposals["classical-v1"]["threshold_hu"] == -950
    assert AnnotationStore(tmp_path).annotators(vol.key) == ["Dr_Smith"]


def test_nifti_mask_has_the_cts_affine(tmp_path, tcia_volume, tcia_dir):
    store = AnnotationStore(tmp_path)
    ann = Annotation.empty(tcia_volume, "alice")
    ann.mask[10, 100:110, 200:220] = 1
    store.save(ann)
    image = nib.load(store.mask_path(tcia_volume.key, "alice"))
    assert image.shape == (512, 512, 64) and image.get_data_dtype() == np.uint8
    assert np.asarray(image.dataobj)[200:220, 100:110, 10].all()
    # independent check: voxel (i, j, k) maps to the RAS form of slice k's DICOM ImagePositionPatient
    headers = {str(h.SOPInstanceUID): h for h in (pydicom.dcmread(p, stop_before_pixels=True) for p in tcia_dir.glob("*.dcm"))}
    for k in (0, 17, 63):
        ipp = np.array([float(v) for v in headers[tcia_volume.slice_uids[k]].ImagePositionPatient])
        ras = image.affine @ [0, 0, k, 1]
        np.testing.assert_allclose(ras[:3], [-ipp[0], -ipp[1], ipp[2]], atol=1e-3)
    col = image.affine @ [1, 0, 0, 1] - image.affine @ [0, 0, 0, 1]  # +i is +x (patient left): RAS -x
    assert col[0] == pytest.approx(-0.8418, abs=1e-3)
    assert image.header.get_sform(coded=True)[1] == 1


def test_last_n_versions_kept(tmp_path):
    vol = _small_volume()
    store = AnnotationStore(tmp_path, keep_versions=3)
    ann = store.load_or_empty(vol, "bob")
    for i in range(5):
        ann.mask[:] = 0
        ann.mask[i, 0, 0] = 1
        store.save(ann)
    assert store.versions(vol.key, "bob") == [3, 4, 5]
    old = store.load_version(vol.key, "bob", 3)
    assert old.mask[2, 0, 0] == 1 and old.mask.sum() == 1


_KILLER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import _small_volume
    from ptx_annotator.review.store import AnnotationStore
    store = AnnotationStore({root!r})
    ann = store.load({key!r}, "carol")
    ann.mask[:] = 1
    real_replace, calls = os.replace, [0]
    def dying_replace(src, dst):
        calls[0] += 1
        if calls[0] == {die_at}:
            os.kill(os.getpid(), signal.SIGKILL)   # killed between write and rename
        return real_replace(src, dst)
    os.replace = dying_replace
    store.save(ann)
""")


@pytest.mark.parametrize("die_at", [1, 2, 3])
def test_kill_between_write_and_rename_keeps_previous_version(tmp_path, die_at):
    vol = _small_volume()
    store = AnnotationStore(tmp_path)
    ann = store.load_or_empty(vol, "carol")
    ann.mask[1, 2:4, 2:4] = 1
    ann.review.mark(1, ACCEPTED, by="carol")
    store.save(ann)
    store.close()
    script = _KILLER.format(tests=os.path.dirname(__file__), root=str(tmp_path), key=vol.key, die_at=die_at)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    survived = AnnotationStore(tmp_path).load(vol.key, "carol", vol)
    np.testing.assert_array_equal(survived.mask, ann.mask)
    assert survived.version == 1 and survived.review[1].state == ACCEPTED
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / vol.key / "carol" / "mask.nii.gz").dataobj).transpose(2, 1, 0), ann.mask)


def test_second_writer_is_refused(tmp_path):
    vol = _small_volume()
    first = AnnotationStore(tmp_path)
    ann = first.load_or_empty(vol, "dave")
    first.save(ann)  # takes and keeps the lock
    second = AnnotationStore(tmp_path)
    other = second.load(vol.key, "dave")
    with pytest.raises(AnnotationLockedError, match="open for writing by another session.*process"):
        second.save(other)
    first.close()
    assert second.save(other) == 2


def test_second_process_is_refused(tmp_path):
    vol = _small_volume()
    store = AnnotationStore(tmp_path)
    store.save(store.load_or_empty(vol, "erin"))
    code = (f"from ptx_annotator.review.store import AnnotationStore\n"
            f"s = AnnotationStore({str(tmp_path)!r})\n"
            f"a = s.load({vol.key!r}, 'erin')\n"
            f"s.save(a)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "AnnotationLockedError" in proc.stderr


@pytest.mark.parametrize("name, expected", [("Dr. Jane Smith", "Dr._Jane_Smith"), ("../../etc/passwd", "etc_passwd"),
                                            ("..", None), ("/", None), ("müller", "muller")])
def test_annotator_names_are_sanitised(tmp_path, name, expected):
    if expected is None:
        with pytest.raises(InvalidAnnotatorError):
            safe_annotator_name(name)
        return
    assert safe_annotator_name(name) == expected
    folder = AnnotationStore(tmp_path).folder("1.2.3", name)
    assert tmp_path.resolve() in folder.resolve().parents


def test_review_navigation():
    vol = _small_volume()
    ann = Annotation.empty(vol, "x")
    for i in range(6):
        ann.review.mark(i, ACCEPTED, by="x")
    ann.review.mark(4, PROPOSED, by=None)
    assert ann.review.next_needing_review(0) == 4
    assert ann.review.next_needing_review(4) is None
    assert ann.review.next_needing_review(5, step=-1) == 4
    assert ann.review.counts()[ACCEPTED] == 5


def test_default_store_place(tmp_path):
    assert AnnotationStore.for_study(tmp_path).root == tmp_path / ".ptx"
    assert AnnotationStore.for_study(tmp_path, tmp_path / "elsewhere").root == tmp_path / "elsewhere"


def test_store_root_rule_finds_the_study_store_above_a_series_folder(tmp_path):
    study = tmp_path / "study"
    series = study / "sim" / "series-1"
    series.mkdir(parents=True)
    (series / "slice.dcm").write_bytes(b"x")
    assert AnnotationStore.for_study(study).root == study / ".ptx"  # nothing yet: the folder named
    (study / ".ptx").mkdir()
    assert AnnotationStore.for_study(series).root == study / ".ptx"  # a sub-folder shares it
    assert AnnotationStore.for_study(series / "slice.dcm").root == study / ".ptx"  # so does a file in it
    assert AnnotationStore.for_study(series, tmp_path / "mine").root == tmp_path / "mine"  # --store wins


def _stamped(store, vol, name, key, at, monkeypatch, voxel):
    import ptx_annotator.review.store as store_module

    monkeypatch.setattr(store_module.time, "time", lambda: at)
    ann = store.load_or_empty(vol, name)
    ann.mask[voxel] = 1
    return store.save(ann, coalesce_key=key)


def test_autosaves_of_one_visit_coalesce_and_a_restore_can_be_undone(tmp_path, monkeypatch):
    vol = _small_volume()
    store = AnnotationStore(tmp_path)
    t0 = 1_000_000.0
    _stamped(store, vol, "fay", 2, t0, monkeypatch, (2, 1, 1))
    _stamped(store, vol, "fay", 2, t0 + 500, monkeypatch, (2, 1, 2))  # same visit (slice 2): replaces
    assert store.versions(vol.key, "fay") == [2]
    _stamped(store, vol, "fay", 3, t0 + 520, monkeypatch, (3, 1, 1))  # another slice, visit began 520 s ago
    _stamped(store, vol, "fay", 4, t0 + 530, monkeypatch, (4, 1, 1))  # < 60 s after version 3 began: joins it
    infos = store.list_versions(vol.key, "fay")
    assert [(v.id, v.n_voxels) for v in infos] == [(2, 2), (4, 4)] and infos[-1].committed
    restored = store.restore_version(vol.key, "fay", 2)
    assert restored == 5 and store.load(vol.key, "fay").mask.sum() == 2
    assert store.restore_version(vol.key, "fay", 4) == 6  # the restore itself is a version: undone
    assert store.load(vol.key, "fay").mask.sum() == 4 and store.versions(vol.key, "fay") == [2, 4, 5, 6]


def test_listing_versions_reads_each_version_file_once_and_again_when_it_is_replaced(tmp_path, monkeypatch):
    import ptx_annotator.review.store_versions as versions_module
    from ptx_annotator.review.store_versions import VERSION_FILE

    vol = _small_volume()
    store = AnnotationStore(tmp_path, keep_versions=50)
    for z in range(4):
        _stamped(store, vol, "gil", z, 1_000_000.0 + 100 * z, monkeypatch, (z, 1, 1))
    read = []
    real = versions_module.read_json
    monkeypatch.setattr(versions_module, "read_json", lambda path: read.append(path.name) or real(path))
    first = store.list_versions(vol.key, "gil")
    assert [(v.id, v.n_voxels, v.committed) for v in first] == [(1, 1, False), (2, 2, False), (3, 3, False),
                                                                  (4, 4, True)]
    assert sorted(read) == [VERSION_FILE.format(n) for n in (1, 2, 3, 4)] + ["review.json"]
    _stamped(store, vol, "gil", 5, 1_000_900.0, monkeypatch, (5, 1, 1))  # a new version: only it is read
    read.clear()
    again = store.list_versions(vol.key, "gil")
    assert sorted(read) == [VERSION_FILE.format(5), "review.json"]
    assert [(v.id, v.n_voxels, v.committed) for v in again][-2:] == [(4, 4, False), (5, 5, True)]
    _stamped(store, vol, "gil", 5, 1_000_910.0, monkeypatch, (5, 2, 2))  # same visit: version 6 replaces 5
    read.clear()
    latest = store.list_versions(vol.key, "gil")
    assert sorted(read) == [VERSION_FILE.format(6), "review.json"]
    assert [(v.id, v.n_voxels) for v in latest][-1] == (6, 6) and 5 not in [v.id for v in latest]
    assert [sorted(known) for known in store._version_infos.values()] == [[1, 2, 3, 4, 6]]  # what is gone is forgotten


def _edit_review(tmp_path, vol, name, change):
    import json

    store = AnnotationStore(tmp_path)
    ann = store.load_or_empty(vol, name)
    ann.mask[1, 3, 3] = 1
    ann.review.mark(1, EDITED, by=name)
    store.save(ann)
    store.close()
    path = tmp_path / vol.key / name / "review.json"
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(change(payload)))
    return AnnotationStore(tmp_path)


@pytest.mark.parametrize("change, reason", [
    (lambda p: {**p, "slices": p["slices"][:-1]}, "5 slice states for a mask of 6"),
    (lambda p: {}, "empty or not a JSON object"),
    (lambda p: {**p, "mask_file": "../gus/mask.nii.gz"}, "not a file name inside"),
    (lambda p: {**p, "mask_file": "/etc/passwd"}, "not a file name inside"),
    (lambda p: {**p, "annotator": "gus"}, "names annotator 'gus'"),
    (lambda p: {**p, "mask_sha256": "0" * 64}, "sha256 differs"),
])
def test_a_damaged_review_file_is_refused_and_recovered_in_one_command(tmp_path, change, reason):
    from ptx_annotator.review.store import DamagedStoreError

    vol = _small_volume()
    store = _edit_review(tmp_path, vol, "hal", change)
    with pytest.raises(DamagedStoreError, match=reason) as refused:
        store.load(vol.key, "hal", vol)
    assert "ptx-annotate store recover" in str(refused.value) and "--annotator hal" in str(refused.value)
    restored, new = store.recover(vol.key, "hal")
    again = store.load(vol.key, "hal", vol)
    assert (restored, new) == (1, 2) and again.review[1].state == EDITED and again.mask[1, 3, 3] == 1


def test_opening_for_writing_removes_leftover_temp_files_and_relinks_the_mask(tmp_path):
    vol = _small_volume()
    store = AnnotationStore(tmp_path)
    ann = store.load_or_empty(vol, "ivy")
    ann.mask[0, 0, 0] = 1
    store.save(ann)
    store.close()
    folder = tmp_path / vol.key / "ivy"
    (folder / ".tmp-review.json.abc").write_text("{")
    (folder / "versions" / ".tmp-mask-v000002.nii.gz.x.nii.gz").write_bytes(b"half")
    (folder / "mask.nii.gz").unlink()
    AnnotationStore(tmp_path).lock(vol.key, "ivy")
    assert not list(folder.rglob(".tmp-*"))
    assert os.path.samefile(folder / "mask.nii.gz", folder / "versions" / "mask-v000001.nii.gz")
