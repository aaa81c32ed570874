"""Training data: reviewed slices from the annotation store, or image + mask volume pairs.

A :class:`LabelledSlice` is one 2D CT slice (HU) with its 0/1 mask and where it came from (patient,
series, z, annotator). :class:`SliceDataset` turns a list of them into ``(image, mask)`` tensors at
the model's input size, windowed exactly as inference does (``hu_to_unit`` with the lung window).

Sources
-------
* :func:`reviewed_slices`: every slice an annotator marked ``accepted`` or ``edited`` (negative
  slices, with an empty mask, included: they teach the model where there is no pneumothorax);
* :func:`volume_pair_slices`: a CT (DICOM, NIfTI, NRRD) and a mask file of the same grid, every
  slice used.

The patient is the DICOM PatientID, else the StudyInstanceUID, else the file stem.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ptx_annotator.errors import PtxError, StudyError
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit
from ptx_annotator.review.states import REVIEWED_STATES
from ptx_annotator.volume import Volume


@dataclass
class LabelledSlice:
    """One training example before resizing: HU slice, 0/1 mask and its origin."""

    hu: np.ndarray
    mask: np.ndarray
    patient: str
    series_key: str
    z: int
    spacing_z: float = 1.0
    annotator: str = ""
    state: str = ""

    @property
    def positive(self) -> bool:
        return bool(np.any(self.mask))

    def fingerprint(self) -> str:
        digest = hashlib.sha1(np.ascontiguousarray(self.mask, dtype=np.uint8).tobytes()).hexdigest()[:16]
        return f"{self.series_key}|{self.annotator}|{self.z}|{self.state}|{digest}"


def manifest_hash(slices: list[LabelledSlice]) -> str:
    """A hash of which slices (and which mask contents) a model was trained and tested on."""
    lines = sorted(item.fingerprint() for item in slices)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def prepare_slice(hu: np.ndarray, mask: np.ndarray | None, size: int,
                  window=LUNG_WINDOW_HU) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Window to 0..1 and resize to ``size`` x ``size``: image ``[1,S,S]`` float32, mask ``[1,S,S]`` 0/1."""
    image = torch.from_numpy(hu_to_unit(hu, window))[None, None]
    if tuple(image.shape[-2:]) != (size, size):
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if mask is None:
        return image[0].contiguous(), None
    target = torch.from_numpy(np.asarray(mask > 0, dtype=np.float32))[None, None]
    if tuple(target.shape[-2:]) != (size, size):
        target = (F.interpolate(target, size=(size, size), mode="bilinear", align_corners=False) >= 0.5).float()
    return image[0].contiguous(), target[0].contiguous()


class SliceDataset(Dataset):
    """``(image [1,S,S], mask [1,S,S])`` float32 tensors, prepared once, held in memory."""

    def __init__(self, slices: list[LabelledSlice], size: int, window=LUNG_WINDOW_HU):
        self.slices = list(slices)
        self.size = int(size)
        self.items = [prepare_slice(item.hu, item.mask, self.size, window) for item in self.slices]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]

    @property
    def n_positive(self) -> int:
        return sum(1 for item in self.slices if item.positive)


def patient_id(volume: Volume) -> str:
    """PatientID from the DICOM header, else the StudyInstanceUID, else the file stem."""
    if volume.source_files:
        try:
            import pydicom

            header = pydicom.dcmread(volume.source_files[0], stop_before_pixels=True, specific_tags=["PatientID"])
            value = str(getattr(header, "PatientID", "") or "").strip()
            if value:
                return value
        except Exception:  # noqa: BLE001 - an unreadable header only loses the patient name
            pass
    if volume.study_uid:
        return volume.study_uid
    return file_stem(volume.source or "volume")


def file_stem(path) -> str:
    name = os.path.basename(str(path).rstrip("/"))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def study_volumes(study) -> list[Volume]:
    """Every CT series of a study folder (or the one volume of a file)."""
    from ptx_annotator.io import load_volume, read_series_files, scan_study
    from ptx_annotator.io.volume_files import is_volume_file

    path = os.fspath(study)
    if os.path.isfile(path) and (is_volume_file(path) or path.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr"))):
        return [load_volume(path)]
    scan = scan_study(path)
    volumes = []
    for series in scan.series:
        try:
            volumes.append(read_series_files(series.files))
        except StudyError:
            continue
    if not volumes:
        raise StudyError(f"'{path}' holds no readable CT series; check the folder with 'ptx-annotate info'.")
    return volumes


def reviewed_slices(studies, annotators=None, store_dir=None, states=REVIEWED_STATES,
                    volumes: dict | None = None) -> list[LabelledSlice]:
    """The slices marked ``accepted``/``edited`` by ``annotators`` (all when None) in ``studies``.

    ``volumes`` may map a study path to already loaded volumes (the napari widget passes the
    one on screen, so nothing is read twice).
    """
    from ptx_annotator.review.store import AnnotationStore

    found: list[LabelledSlice] = []
    for study in studies:
        study_path = os.fspath(study)
        store = AnnotationStore.for_study(study_path, store_dir)
        for volume in (volumes or {}).get(study_path) or study_volumes(study_path):
            found += reviewed_slices_of_volume(volume, store, annotators, states)
    return found


def reviewed_slices_of_volume(volume: Volume, store, annotators=None, states=REVIEWED_STATES,
                              patient: str | None = None) -> list[LabelledSlice]:
    """The reviewed slices of one loaded series in ``store`` (an AnnotationStore)."""
    patient = patient or patient_id(volume)
    found = []
    for name in (list(annotators) if annotators else store.annotators(volume.key)):
        annotation = store.load(volume.key, name, volume)
        if annotation is None:
            continue
        for z, entry in enumerate(annotation.review):
            if entry.state in states:
                found.append(LabelledSlice(volume.hu[z], annotation.mask[z], patient, volume.key, z,
                                           float(volume.spacing[0]), annotation.annotator, entry.state))
    return found


def volume_pair_slices(images, masks) -> list[LabelledSlice]:
    """Every slice of each (CT, mask) pair; mask and CT must share the voxel grid."""
    from ptx_annotator.io import load_volume
    from ptx_annotator.io.masks import read_mask

    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise PtxError(f"Got {len(images)} --images but {len(masks)} --masks: give one mask per image, in the same order.")
    found: list[LabelledSlice] = []
    for image_path, mask_path in zip(images, masks):
        volume = load_volume(image_path)
        mask = read_mask(mask_path, volume).mask  # the one mask reader: values as stored, the CT's grid checked
        patient = patient_id(volume) if volume.source_files else file_stem(image_path)
        for z in range(volume.shape[0]):
            found.append(LabelledSlice(volume.hu[z], (mask[z] > 0).astype(np.uint8), patient, volume.key, z,
                                       float(volume.spacing[0]), "", "mask-file"))
    return found
