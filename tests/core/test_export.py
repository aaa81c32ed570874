"""DICOM SEG and NIfTI export / import of annotator masks on the real TCIA chest CT."""

import dataclasses
import json
import warnings

import numpy as np
import pydicom
import pytest

from ptx_annotator.cli import main
from ptx_annotator.errors import GeometryMismatchError, PtxError, StudyError
from ptx_annotator.export import UnreviewedExportError, export_annotation, import_mask, mask_provenance, read_mask_file
from ptx_annotator.review.states import ACCEPTED, EDITED, PROPOSED, UNREVIEWED
from ptx_annotator.review.store import Annotation, AnnotationStore

SOURCE = "model:resnet34:ckpt-test"


def _annotation(volume, model_made=True):
    annotation = Annotation.empty(volume, "dr_a")
    annotation.mask[20:25, 150:230, 70:120] = 1  # image-left columns of five slices
    annotation.mask[22, 300:320, 400:430] = 1
    if model_made:
        annotation.proposals = {SOURCE: {"source": SOURCE, "created": "2026-11-23T18:00:00+00:00",
                                         "params": {"kind": "model", "device": "cpu",
                                                    "checkpoint": {"name": "ckpt-test", "sha256": "0123456789abcdef99",
                                                                   "encoder": "resnet34"}},
                                         "completed": True}}
        for z in range(volume.shape[0]):
            annotation.review.mark(z, PROPOSED, by=None, source=SOURCE)
        for z in (21, 22, 23):  # most of the mask's voxels: a person vouches for them
            annotation.review.mark(z, ACCEPTED, by="dr_a")
    return annotation


def _mostly_unreviewed(volume):
    annotation = _annotation(volume)
    for z in (21, 23):
        annotation.review.mark(z, PROPOSED, by=None, source=SOURCE)
    return annotation


def _slice_positions(volume):
    return np.array([volume.affine[:3, :3] @ (z, 0, 0) + volume.affine[:3, 3] for z in range(volume.shape[0])])


def test_seg_export_reads_back_identical_with_source_geometry(tcia_volume, tmp_path):
    import highdicom as hd

    annotation = _annotation(tcia_volume)
    path = export_annotation(tcia_volume, annotation, "seg", tmp_path / "ptx.dcm")
    seg = hd.seg.segread(path)

    assert seg.FrameOfReferenceUID == tcia_volume.frame_of_reference_uid
    assert seg.StudyInstanceUID == tcia_volume.study_uid
    slices_with_content = sorted({z for z in range(20, 25)})
    assert seg.NumberOfFrames == len(slices_with_content)  # empty frames are omitted
    positions = _slice_positions(tcia_volume)
    frame_slices = []
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = tcia_volume.slice_uids.index(uid)
        frame_slices.append(z)
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                   positions[z], atol=1e-3)
    assert sorted(frame_slices) == slices_with_content
    referenced = {item.ReferencedSOPInstanceUID for series in seg.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced == set(tcia_volume.slice_uids)

    pixels = seg.get_pixels_by_source_instance(tcia_volume.slice_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(pixels[..., 0], annotation.mask)

    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Pneumothorax"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "36118008"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert str(seg.ContentCreatorName) == "dr_a"
    assert "3/64 slices reviewed" in seg.SeriesDescription and "3/64 slices reviewed" in seg.ContentDescription
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == SOURCE
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmVersion == "0123456789abcdef"  # the checkpoint's sha256, shortened
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"  # DCM Artificial Intelligence
    assert "checkpoint.name=ckpt-test" in algorithm.AlgorithmParameters

    back = read_mask_file(path, tcia_volume)
    assert back.details["mapped_by"] == "sop_instance_uid"
    np.testing.assert_array_equal(back.mask, annotation.mask)


def test_provenance_manual_automatic_semiautomatic(tcia_volume):
    assert mask_provenance(_annotation(tcia_volume, model_made=False)).algorithm_type == "MANUAL"
    semi = _annotation(tcia_volume)
    assert mask_provenance(semi).algorithm_type == "SEMIAUTOMATIC"
    assert mask_provenance(semi).review["reviewed_slices"] == 3 and mask_provenance(semi).content_creator
    automatic = _mostly_unreviewed(tcia_volume)
    provenance = mask_provenance(automatic)
    assert provenance.algorithm_type == "AUTOMATIC" and provenance.main_source == SOURCE
    assert provenance.review["reviewed_slices"] == 1 and provenance.review["mostly_unreviewed"]
    assert not provenance.content_creator
    imported = _annotation(tcia_volume, model_made=False)
    for z in range(20, 25):
        imported.review.mark(z, EDITED, by="dr_a", source="import:other.nii.gz")
    assert mask_provenance(imported).algorithm_type == "MANUAL"
    classical = _annotation(tcia_volume, model_made=False)
    classical.proposals = {"classical:air-rim": {"created": "2026-11-23T18:00:00+00:00", "params": {"kind": "classical"}}}
    for z in range(20, 25):
        classical.review.mark(z, PROPOSED, by=None, source="classical:air-rim")
    info = mask_provenance(classical).algorithm_info()
    assert info.family == "image_processing" and info.algorithm_type == "AUTOMATIC"


def test_manual_and_empty_seg(tcia_volume, tmp_path):
    import highdicom as hd

    manual = export_annotation(tcia_volume, _annotation(tcia_volume, model_made=False), "seg", tmp_path)
    segment = hd.seg.segread(manual).SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "MANUAL"
    assert "SegmentationAlgorithmIdentificationSequence" not in segment
    empty = export_annotation(tcia_volume, Annotation.empty(tcia_volume, "nobody"), "seg", tmp_path / "empty.dcm")
    seg = hd.seg.segread(empty)
    assert seg.NumberOfFrames == tcia_volume.shape[0]
    assert not read_mask_file(empty, tcia_volume).mask.any()
    from_nifti = dataclasses.replace(tcia_volume, source_files=[], series_uid=None)
    with pytest.raises(StudyError, match="--format nifti"):
        export_annotation(from_nifti, _annotation(tcia_volume), "seg", tmp_path / "no.dcm")
    assert not (tmp_path / "no.dcm").exists() and not list(tmp_path.glob(".tmp-*"))


def test_nifti_round_trip_and_reoriented_copy(tcia_volume, tmp_path):
    import nibabel as nib

    from ptx_annotator.io.volume_files import nifti_affine_from_lps

    annotation = _annotation(tcia_volume)
    path = export_annotation(tcia_volume, annotation, "nifti", tmp_path / "ptx.nii.gz")
    image = nib.load(str(path))
    np.testing.assert_allclose(image.affine, nifti_affine_from_lps(tcia_volume.affine), atol=1e-4)
    assert image.shape == tcia_volume.shape[::-1]
    np.testing.assert_array_equal(read_mask_file(path, tcia_volume).mask, annotation.mask)

    # the same grid stored with the x axis flipped and the axes in (x, y, z) order reads back identically
    flipped = np.asarray(image.dataobj)[::-1].copy()
    affine = image.affine.copy()
    affine[:3, 3] += affine[:3, 0] * (flipped.shape[0] - 1)
    affine[:3, 0] *= -1
    nib.save(nib.Nifti1Image(flipped, affine), str(tmp_path / "flipped.nii.gz"))
    np.testing.assert_array_equal(read_mask_file(tmp_path / "flipped.nii.gz", tcia_volume).mask, annotation.mask)


def test_cropped_nifti_and_nrrd_masks_land_on_the_ct_grid(tcia_volume, tmp_path):
    import nibabel as nib
    import nrrd

    from ptx_annotator.io.volume_files import nifti_affine_from_lps

    mask = _annotation(tcia_volume).mask
    crop = (slice(18, 27), slice(140, 330), slice(60, 440))  # around the content, as some tools save it
    affine = np.array(tcia_volume.affine, dtype=float)
    affine[:3, 3] += affine[:3, :3] @ [s.start for s in crop]
    nib.save(nib.Nifti1Image(mask[crop].transpose(2, 1, 0).copy(), nifti_affine_from_lps(affine)),
             str(tmp_path / "cropped.nii.gz"))
    np.testing.assert_array_equal(read_mask_file(tmp_path / "cropped.nii.gz", tcia_volume).mask, mask)

    header = {"space": "left-posterior-superior", "space directions": affine[:3, 2::-1].T,
              "space origin": affine[:3, 3], "kinds": ["domain"] * 3}
    nrrd.write(str(tmp_path / "cropped.seg.nrrd"), (mask[crop] * 3).transpose(2, 1, 0).copy(), header)
    imported = read_mask_file(tmp_path / "cropped.seg.nrrd", tcia_volume)
    assert imported.file_format == "nrrd" and imported.details["labels"] == [3]
    np.testing.assert_array_equal(imported.mask, mask)


def test_import_refuses_other_geometry(tcia_volume, tmp_path):
    import nibabel as nib

    path = export_annotation(tcia_volume, _annotation(tcia_volume), "nifti", tmp_path / "ptx.nii.gz")
    image = nib.load(str(path))
    shifted = image.affine.copy()
    shifted[2, 3] += 2.5  # half a slice along z
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted), str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(GeometryMismatchError, match="fall between the CT's"):
        read_mask_file(tmp_path / "shifted.nii.gz", tcia_volume)
    late = image.affine.copy()
    late[:3, 3] += late[:3, 2] * 40  # the grid starts at CT slice 40: content at 60..64, past the last slice
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), late), str(tmp_path / "late.nii.gz"))
    with pytest.raises(GeometryMismatchError, match="lie outside the CT"):
        read_mask_file(tmp_path / "late.nii.gz", tcia_volume)
    coarse = image.affine.copy()
    coarse[:3, :2] *= 2
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[::2, ::2], coarse), str(tmp_path / "coarse.nii.gz"))
    with pytest.raises(GeometryMismatchError, match="other voxel sizes"):
        read_mask_file(tmp_path / "coarse.nii.gz", tcia_volume)

    seg_path = export_annotation(tcia_volume, _annotation(tcia_volume), "seg", tmp_path / "ptx.dcm")
    seg = pydicom.dcmread(seg_path)
    for frame in seg.PerFrameFunctionalGroupsSequence:  # a SEG of another series on the same grid
        frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = pydicom.uid.generate_uid()
    seg.save_as(tmp_path / "by_position.dcm")
    by_position = read_mask_file(tmp_path / "by_position.dcm", tcia_volume)
    assert by_position.details["mapped_by"] == "position"
    np.testing.assert_array_equal(by_position.mask, _annotation(tcia_volume).mask)
    for frame in seg.PerFrameFunctionalGroupsSequence:  # ... and on a grid shifted by 2.5 mm
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        frame.PlanePositionSequence[0].ImagePositionPatient = [position[0], position[1], float(position[2]) + 2.5]
    seg.save_as(tmp_path / "shifted.dcm")
    with pytest.raises(GeometryMismatchError, match="not the position of any slice"):
        read_mask_file(tmp_path / "shifted.dcm", tcia_volume)
    seg.FrameOfReferenceUID = pydicom.uid.generate_uid()
    seg.save_as(tmp_path / "other_scan.dcm")
    with pytest.raises(GeometryMismatchError, match="frame of reference"):
        read_mask_file(tmp_path / "other_scan.dcm", tcia_volume)


def test_import_into_store_marks_states_and_refuses_overwrite(tcia_volume, tmp_path):
    annotation = _annotation(tcia_volume)
    path = export_annotation(tcia_volume, annotation, "nifti", tmp_path / "ptx.nii.gz")
    store = AnnotationStore(tmp_path / "store")
    imported = import_mask(tcia_volume, store, "dr_b", path)
    saved = store.load(tcia_volume.key, "dr_b", tcia_volume)
    np.testing.assert_array_equal(saved.mask, annotation.mask)
    states = saved.review.states()
    assert [states[z] for z in range(20, 25)] == [EDITED] * 5
    assert states[0] == UNREVIEWED and saved.review[22].source == "import:ptx.nii.gz"
    assert saved.extra["imports"][-1]["voxels"] == int(annotation.mask.sum())
    with pytest.raises(PtxError, match="--replace"):
        import_mask(tcia_volume, store, "dr_b", path)
    again = import_mask(tcia_volume, store, "dr_b", path, replace=True, empty_state=ACCEPTED)
    assert again.version == imported.version + 1
    assert store.load(tcia_volume.key, "dr_b").review.states()[0] == ACCEPTED


def test_cli_export_then_import_both_formats(tcia_volume, tcia_dir, tmp_path, capsys):
    store_dir = tmp_path / "store"
    store = AnnotationStore(store_dir)
    annotation = _annotation(tcia_volume)
    store.save(annotation)
    store.close()
    for fmt, name in (("seg", "ptx.dcm"), ("nifti", "ptx.nii.gz")):
        rc = main(["export", str(tcia_dir), "--annotator", "dr_a", "--format", fmt,
                   "--out", str(tmp_path / name), "--store", str(store_dir)])
        assert rc == 0, capsys.readouterr().err
        assert f"wrote {tmp_path / name}" in capsys.readouterr().out
        rc = main(["import", str(tcia_dir), "--annotator", f"from_{fmt}", str(tmp_path / name), "--store", str(store_dir)])
        assert rc == 0, capsys.readouterr().err
        assert "5 slices marked edited" in capsys.readouterr().out
        np.testing.assert_array_equal(AnnotationStore(store_dir).load(tcia_volume.key, f"from_{fmt}").mask, annotation.mask)

    review = json.loads((store_dir / tcia_volume.key / "from_seg" / "review.json").read_text())
    assert review["extra"]["imports"][0]["format"] == "seg"
    rc = main(["import", str(tcia_dir), "--annotator", "from_seg", str(tmp_path / "ptx.dcm"), "--store", str(store_dir)])
    assert rc == 2 and "--replace" in capsys.readouterr().err
    rc = main(["export", str(tcia_dir), "--annotator", "nobody", "--format", "seg",
               "--out", str(tmp_path / "x.dcm"), "--store", str(store_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and "No saved mask of annotator 'nobody'" in err and "dr_a" in err


def test_seg_with_several_segments_from_another_tool(tcia_volume, tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    lung = np.zeros(tcia_volume.shape + (2,), dtype=np.uint8)
    lung[30:33, 200:300, 100:250, 0] = 1  # segment 1: a lung, segment 2: the pneumothorax
    lung[31:34, 200:240, 100:140, 1] = 1
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in tcia_volume.source_files]
    descriptions = [
        hd.seg.SegmentDescription(1, "Right lung", codes.SCT.Organ, codes.SCT.Lung, "MANUAL"),
        hd.seg.SegmentDescription(2, "PTX", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Pneumothorax,
                                  "MANUAL"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the TCIA patient name has one component
        seg = hd.seg.Segmentation(sources, lung, "BINARY", descriptions, hd.UID(), 5, hd.UID(), 1, "other", "tool",
                                  "1", "0")
    seg.save_as(tmp_path / "two.dcm")
    chosen = read_mask_file(tmp_path / "two.dcm", tcia_volume)
    assert chosen.details["segments"] == [2]
    np.testing.assert_array_equal(chosen.mask, lung[..., 1])
    np.testing.assert_array_equal(read_mask_file(tmp_path / "two.dcm", tcia_volume, segment=1).mask, lung[..., 0])
    with pytest.raises(PtxError, match="no segment 7"):
        read_mask_file(tmp_path / "two.dcm", tcia_volume, segment=7)


def test_mostly_unreviewed_export_is_refused_unless_allowed_and_then_labelled(tcia_volume, tcia_dir, tmp_path, capsys):
    import highdicom as hd

    annotation = _mostly_unreviewed(tcia_volume)
    with pytest.raises(UnreviewedExportError, match="1 of 64 slices reviewed.*--allow-unreviewed"):
        export_annotation(tcia_volume, annotation, "seg", tmp_path / "refused.dcm")
    with pytest.raises(UnreviewedExportError):
        export_annotation(tcia_volume, annotation, "nifti", tmp_path / "refused.nii.gz")
    assert not list(tmp_path.iterdir())
    path = export_annotation(tcia_volume, annotation, "seg", tmp_path / "auto.dcm", allow_unreviewed=True)
    seg = hd.seg.segread(path)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert "ContentCreatorName" not in seg or not str(seg.ContentCreatorName)  # no person made this content
    assert str(seg.OperatorsName) == "dr_a"  # who exported it
    assert seg.SeriesDescription.startswith("UNREVIEWED") and "1/64 slices reviewed" in seg.SeriesDescription

    store_dir = tmp_path / "store"
    AnnotationStore(store_dir).save(annotation)
    args = ["export", str(tcia_dir), "--annotator", "dr_a", "--out", str(tmp_path / "cli.dcm"), "--store", str(store_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "mostly machine output nobody reviewed" in err and "Traceback" not in err
    assert not (tmp_path / "cli.dcm").exists()
    assert main(args + ["--allow-unreviewed"]) == 0
    assert "automatic" in capsys.readouterr().out
    assert hd.seg.segread(tmp_path / "cli.dcm").SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
