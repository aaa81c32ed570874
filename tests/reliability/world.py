"""Small hostile inputs for the reliability battery, built once per session in a temp folder.

The inputs are small on purpose (a 12-slice 48x48 CT, 6-slice 32x32 DICOM series) so that some
150 commands run in-process in well under a minute; each one is a real file of the kind a user
could hand the tool (a cut DICOM, a NaN NIfTI, a mask on another grid, a damaged review.json ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ptx_annotator.io.volume_files import nifti_affine_from_lps, save_mask_nifti

SHAPE = (12, 48, 48)
SPACING = (2.5, 0.8, 0.8)


def ct_affine(shape=SHAPE, spacing=SPACING, origin=(-20.0, -20.0, -15.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 0] = [0, 0, spacing[0]]
    affine[:3, 1] = [0, spacing[1], 0]
    affine[:3, 2] = [spacing[2], 0, 0]
    affine[:3, 3] = origin
    return affine


def chest_hu(shape=SHAPE) -> np.ndarray:
    """Air around an elliptic body (40 HU) holding two lungs (-850 HU)."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (0.42 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 <= 1
    lungs = (((y - cy) / (0.3 * shape[1])) ** 2 + ((np.abs(x - cx) - 0.2 * shape[2]) / (0.14 * shape[2])) ** 2) <= 1
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[body] = 40
    hu[body & lungs] = -850
    return hu


def write_nifti(path: Path, data: np.ndarray, affine_lps: np.ndarray, dtype=None) -> Path:
    array = np.asarray(data if dtype is None else data.astype(dtype)).transpose(2, 1, 0)
    image = nib.Nifti1Image(array, nifti_affine_from_lps(affine_lps))
    image.header.set_data_dtype(array.dtype)
    nib.save(image, str(path))
    return path


def write_dicom_series(folder: Path, n: int = 6, size: int = 32, modify=None) -> Path:
    """A small CT series, one file per slice; ``modify(ds, i)`` may spoil slice i."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    hu = chest_hu((n, size, size))
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "RELIABILITY^TEST", "REL-0001"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [0.8, 0.8]
        ds.SliceThickness = 2.5
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-12.8, -12.8, 2.5 * i]
        ds.InstanceNumber = i + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = hu[i].astype(np.int16).tobytes()
        if modify is not None:
            modify(ds, i)
        ds.save_as(str(folder / f"slice{i:03d}.dcm"), enforce_file_format=True)
    return folder


@dataclass
class World:
    root: Path
    ct: Path
    ct_other_grid: Path
    dicom: Path
    volume: object

    def path(self, name: str) -> Path:
        return self.root / name


def build_world(root: Path) -> World:
    from ptx_annotator.io import load_volume

    root.mkdir(parents=True, exist_ok=True)
    affine = ct_affine()
    study = root / "study"
    study.mkdir()
    ct = write_nifti(study / "ct.nii.gz", chest_hu(), affine)
    other = write_nifti(root / "other_grid.nii.gz", chest_hu((12, 40, 40)), ct_affine((12, 40, 40)))
    dicom = write_dicom_series(root / "dicom_ok")
    volume = load_volume(ct)
    world = World(root, ct, other, dicom, volume)
    _masks(world, affine)
    _bad_ct_files(world, affine)
    _bad_dicom_series(world)
    _checkpoints(world)
    return world


def _masks(world: World, affine: np.ndarray) -> None:
    m = world.path
    content = np.zeros(SHAPE, dtype=np.uint8)
    content[5, 20:26, 10:16] = 1
    write_nifti(m("mask_ok.nii.gz"), content, affine)
    write_nifti(m("mask_label256.nii.gz"), content.astype(np.uint16) * 256, affine)
    write_nifti(m("mask_float04.nii.gz"), content.astype(np.float32) * 0.4, affine)
    two = content.copy()
    two[7, 20:26, 30:36] = 7
    write_nifti(m("mask_labels_1_7.nii.gz"), two, affine)
    write_nifti(m("mask_negative.nii.gz"), content.astype(np.int16) * -3, affine)
    nan = content.astype(np.float32)
    nan[0, 0, 0] = np.nan
    write_nifti(m("mask_nan.nii.gz"), nan, affine)
    write_nifti(m("mask_image.nii.gz"), chest_hu().astype(np.float32) + np.random.default_rng(0).normal(0, 1, SHAPE),
                affine)
    write_nifti(m("mask_empty.nii.gz"), np.zeros(SHAPE, np.uint8), affine)
    write_nifti(m("mask_other_grid.nii.gz"), np.ones((12, 60, 60), np.uint8), ct_affine((12, 60, 60)))
    write_nifti(m("mask_probability.nii.gz"), np.random.default_rng(1).random(SHAPE).astype(np.float32), affine)
    shifted = ct_affine()
    shifted[:3, 3] += [0.3, 0.3, 0.3]
    write_nifti(m("mask_shifted.nii.gz"), content, shifted)
    coarse = ct_affine(spacing=(5.0, 1.6, 1.6))
    write_nifti(m("mask_coarse.nii.gz"), content[::2, ::2, ::2], coarse)
    nib.save(nib.Nifti1Image(np.ones((48, 48), np.uint8), np.eye(4)), str(m("mask_2d.nii.gz")))
    nib.save(nib.Nifti1Image(np.ones((48, 48, 12, 3), np.uint8), np.eye(4)), str(m("mask_4d.nii.gz")))
    m("mask_zero_bytes.nii.gz").write_bytes(b"")
    m("mask_text.nii.gz").write_text("not a nifti\n")
    m("mask_cut.nii.gz").write_bytes(m("mask_ok.nii.gz").read_bytes()[:120])
    m("mask_folder.nii.gz").mkdir()
    m("notes.txt").write_text("findings: none\n")


def _bad_ct_files(world: World, affine: np.ndarray) -> None:
    m = world.path
    hu = chest_hu().astype(np.float32)
    nan = hu.copy()
    nan[3, 10:20, 10:20] = np.nan
    write_nifti(m("ct_nan.nii.gz"), nan, affine)
    inf = hu.copy()
    inf[4, 5, 5] = np.inf
    write_nifti(m("ct_inf.nii.gz"), inf, affine)
    import nrrd

    nrrd.write(str(m("ct_singular.nrrd")), chest_hu().transpose(2, 1, 0),
               {"space": "left-posterior-superior", "space directions": [[0.0, 0, 0], [0, 0.8, 0], [0, 0, 2.5]],
                "space origin": [0.0, 0, 0]})
    m("ct_zero_bytes.nii.gz").write_bytes(b"")
    m("ct_cut.nii.gz").write_bytes(world.ct.read_bytes()[:200])
    m("ct_text.nrrd").write_text("NRRD0004\ntype: banana\n\n")
    nib.save(nib.Nifti1Image(np.zeros((48, 48), np.int16), np.eye(4)), str(m("ct_2d.nii.gz")))
    (m("empty_folder")).mkdir()
    (m("text_only")).mkdir()
    (m("text_only") / "readme.txt").write_text("no images here\n")


def _bad_dicom_series(world: World) -> None:
    m = world.path

    def cut_pixels(ds, i):
        if i == 2:
            ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]

    def no_pixels(ds, i):
        if i == 1:
            del ds.PixelData

    def duplicate(ds, i):
        if i == 3:
            ds.ImagePositionPatient = [-12.8, -12.8, 2.5 * 2]

    def mixed_sizes(ds, i):
        if i == 4:
            ds.Rows = ds.Columns = 16
            ds.PixelData = np.zeros((16, 16), np.int16).tobytes()

    def rgb(ds, i):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.zeros((32, 32, 3), np.uint8).tobytes()

    def mr(ds, i):
        ds.Modality = "MR"

    def tilted(ds, i):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0] if i < 3 else [1, 0, 0, 0, 0.8, 0.6]

    for name, spoil in (("dicom_cut_pixels", cut_pixels), ("dicom_no_pixels", no_pixels),
                        ("dicom_duplicate_positions", duplicate), ("dicom_mixed_sizes", mixed_sizes),
                        ("dicom_rgb", rgb), ("dicom_mr", mr), ("dicom_mixed_orientation", tilted)):
        write_dicom_series(m(name), modify=spoil)
    tiny = m("dicom_tiny")
    tiny.mkdir()
    (tiny / "x.dcm").write_bytes((world.dicom / "slice000.dcm").read_bytes()[:300])
    renamed = m("dicom_renamed_text")
    renamed.mkdir()
    (renamed / "a.dcm").write_text("Findings: normal.\n" * 20)
    two = m("two_series")
    write_dicom_series(two / "a")
    write_dicom_series(two / "b")


def _checkpoints(world: World) -> None:
    import torch
    from safetensors.torch import save_file

    from ptx_annotator.model import METADATA_KEY

    m = world.path
    base = {"architecture": "Unet", "encoder": "resnet34", "in_channels": 1, "classes": 1, "input_size": 64,
            "threshold": 0.5, "modality": "CT", "format": 1}
    for name, meta in (("ckpt_huge_input.safetensors", {**base, "input_size": 2 ** 20}),
                       ("ckpt_bad_threshold.safetensors", {**base, "threshold": 7}),
                       ("ckpt_unknown_encoder.safetensors", {**base, "encoder": "banana"}),
                       ("ckpt_missing_keys.safetensors", {"encoder": "resnet34"})):
        save_file({"w": torch.zeros(1)}, str(m(name)), metadata={METADATA_KEY: json.dumps(meta)})
    save_file({"w": torch.zeros(1)}, str(m("ckpt_no_metadata.safetensors")))
    m("ckpt_text.safetensors").write_text("I am not a checkpoint")
    m("ckpt_pickle.pt").write_bytes(b"\x80\x04\x95cos\nsystem\n(S'echo pwned'\ntR.")


def fresh_store(root: Path, volume, annotator: str = "alice") -> Path:
    """A store beside a copy-free study path, with one saved version of ``annotator`` (content on slice 5)."""
    from ptx_annotator.review.states import EDITED
    from ptx_annotator.review.store import AnnotationStore

    store = AnnotationStore(root)
    annotation = store.load_or_empty(volume, annotator)
    annotation.mask[5, 20:26, 10:16] = 1
    annotation.review.mark(5, EDITED, by=annotator)
    store.save(annotation)
    store.close()
    return root


def spoil_review(store_root: Path, volume, change, annotator: str = "alice") -> None:
    path = store_root / volume.key / annotator / "review.json"
    payload = json.loads(path.read_text())
    result = change(payload)
    path.write_text(result if isinstance(result, str) else json.dumps(result))


def store_snapshot(store_root: Path) -> dict:
    """Every file of a store and its bytes (to prove a refused command changed nothing)."""
    return {str(p.relative_to(store_root)): p.read_bytes() for p in sorted(store_root.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def save_mask(path: Path, mask, affine) -> Path:
    save_mask_nifti(mask, affine, path)
    return path
