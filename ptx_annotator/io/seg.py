"""DICOM SEG (binary segmentation) of a pneumothorax mask, written and read against its CT series.

Writing uses :class:`highdicom.seg.Segmentation` with the source CT slices as ``source_images``,
so every frame carries the source slice's ImagePositionPatient, the CT's ImageOrientationPatient,
PixelSpacing and FrameOfReferenceUID, and a reference to the source SOPInstanceUID: the SEG opens
aligned on the CT in 3D Slicer and OHIF. Only frames with content are stored (highdicom's
``omit_empty_frames``); an empty mask is written with all frames, since a SEG needs at least one.

Reading maps every frame back to a slice of the CT, first by its referenced SOPInstanceUID, else
by its plane position, and refuses a SEG whose grid does not coincide with the CT's.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ptx_annotator.errors import GeometryMismatchError, PtxError, StudyError
from ptx_annotator.volume import Volume

#: SNOMED CT 36118008 |Pneumothorax|, the segmented property type.
PNEUMOTHORAX_CODE = ("36118008", "SCT", "Pneumothorax")
#: SNOMED CT 49755003 |Morphologically abnormal structure|, the segmented property category.
CATEGORY_CODE = ("49755003", "SCT", "Morphologically Abnormal Structure")
SEGMENT_LABEL = "Pneumothorax"
#: Tolerance in mm for matching a frame's position or orientation to the CT's.
POSITION_TOLERANCE_MM = 0.05


@dataclass
class AlgorithmInfo:
    """Which algorithm made (part of) a mask, for the SEG's AlgorithmIdentificationSequence.

    ``algorithm_type`` is 'AUTOMATIC' (model output nobody reviewed) or 'SEMIAUTOMATIC'
    (model output a person reviewed or edited); ``family`` is 'ai' or 'image_processing'.
    """

    name: str
    version: str
    algorithm_type: str = "SEMIAUTOMATIC"
    family: str = "ai"
    parameters: dict = field(default_factory=dict)


@dataclass
class SegContents:
    """A SEG read onto a CT grid: the mask and what the file says about itself."""

    mask: np.ndarray
    segment_numbers: list[int]
    algorithm_type: str
    algorithm_name: str | None
    series_uid: str
    content_creator: str | None
    mapped_by: str  # 'sop_instance_uid' or 'position'


def _code(triple):
    from highdicom.sr import CodedConcept

    return CodedConcept(*triple)


def pneumothorax_code():
    """The SNOMED CT code of pneumothorax, from pydicom's code dictionary when it has it."""
    try:
        from pydicom.sr.codedict import codes

        return codes.SCT.Pneumothorax
    except (ImportError, AttributeError):
        return _code(PNEUMOTHORAX_CODE)


def _algorithm_sequence(info: AlgorithmInfo):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    family = codes.DCM.ArtificialIntelligence if info.family == "ai" else codes.DCM.ImageProcessing
    parameters = {str(k)[:64]: str(v)[:1024] for k, v in info.parameters.items()} or None
    return hd.AlgorithmIdentificationSequence(
        name=info.name[:64] or "unknown", family=family, version=(info.version or "unknown")[:64],
        source="ptx-annotator", parameters=parameters,
    )


def _read_sources(volume: Volume):
    import pydicom

    if not volume.source_files or len(volume.source_files) != volume.shape[0]:
        raise StudyError(
            f"A DICOM SEG references the CT's DICOM slices, but '{volume.source}' was not read from a "
            "DICOM series (or its files are gone). Export with --format nifti instead."
        )
    try:
        return [pydicom.dcmread(path, stop_before_pixels=True) for path in volume.source_files]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise StudyError(f"Cannot re-read the source slice {getattr(exc, 'filename', '')}: {exc}.") from exc


def write_seg(mask: np.ndarray, volume: Volume, path, *, annotator: str | None,
              algorithm: AlgorithmInfo | None = None, series_description: str | None = None,
              content_description: str | None = None, series_number: int = 9901,
              operator: str | None = None) -> None:
    """Write a (z, y, x) mask as a binary DICOM SEG referencing ``volume``'s CT slices.

    ``annotator`` becomes the ContentCreatorName; None for machine output no person reviewed
    (the SEG then names no content creator, and its algorithm type says AUTOMATIC). ``operator``
    (OperatorsName) is the person who made the export.

    The write is not atomic; :func:`ptx_annotator.export.export_annotation` wraps it.
    """
    import highdicom as hd

    mask = np.asarray(mask)
    if mask.shape != volume.shape:
        raise GeometryMismatchError(f"The mask has shape {mask.shape} but the CT has {volume.shape}.")
    sources = _read_sources(volume)
    algorithm_type = hd.seg.SegmentAlgorithmTypeValues[algorithm.algorithm_type] if algorithm else \
        hd.seg.SegmentAlgorithmTypeValues.MANUAL
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=_code(CATEGORY_CODE),
        segmented_property_type=pneumothorax_code(),
        algorithm_type=algorithm_type,
        algorithm_identification=_algorithm_sequence(algorithm) if algorithm else None,
        tracking_id=f"pneumothorax-{annotator or 'proposal'}"[:64], tracking_uid=hd.UID(),
    )
    binary = (mask > 0).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom nags about one-component patient names
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=binary,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=hd.UID(), series_number=series_number,
            sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="ptx-annotator", manufacturer_model_name="ptx-annotator",
            software_versions=software_version(), device_serial_number="0",
            content_label="PNEUMOTHORAX", content_description=(content_description or "")[:64] or None,
            content_creator_name=_person_name(annotator) if annotator else None,
            omit_empty_frames=bool(binary.any()),
        )
    if operator:
        seg.OperatorsName = _person_name(operator)
    seg.SeriesDescription = (series_description or f"Pneumothorax ({annotator or 'proposal'})")[:64]
    seg.save_as(os.fspath(path))


def software_version() -> str:
    """The installed ptx-annotator version (for SoftwareVersions and report footers)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptx-annotator")
    except PackageNotFoundError:
        return "unknown"


def _person_name(annotator: str):
    from pydicom.valuerep import PersonName

    return PersonName.from_named_components(family_name=str(annotator)[:64])


def _group_item(seg, frame: int, keyword: str):
    """A functional group item of one frame (per-frame first, then shared)."""
    per_frame = seg.PerFrameFunctionalGroupsSequence[frame]
    if keyword in per_frame:
        return getattr(per_frame, keyword)[0]
    shared = seg.SharedFunctionalGroupsSequence[0]
    if keyword in shared:
        return getattr(shared, keyword)[0]
    return None


def _pick_segments(seg, segment: int | None) -> list[int]:
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence]
    if segment is not None:
        if segment not in numbers:
            raise PtxError(f"The SEG has no segment {segment}; it has {numbers}.")
        return [segment]
    coded = [int(item.SegmentNumber) for item in seg.SegmentSequence
             if str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue) == PNEUMOTHORAX_CODE[0]
             or "pneumothorax" in str(getattr(item, "SegmentLabel", "")).lower()]
    if coded:
        return coded
    if len(numbers) == 1:
        return numbers
    labels = ", ".join(f"{int(i.SegmentNumber)} '{getattr(i, 'SegmentLabel', '')}'" for i in seg.SegmentSequence)
    raise PtxError(f"The SEG holds {len(numbers)} segments ({labels}) and none is coded as pneumothorax: "
                   "choose one with --segment NUMBER.")


def _check_plane(seg, volume: Volume, path) -> None:
    orientation = _group_item(seg, 0, "PlaneOrientationSequence")
    measures = _group_item(seg, 0, "PixelMeasuresSequence")
    if (int(seg.Rows), int(seg.Columns)) != volume.shape[1:]:
        raise GeometryMismatchError(
            f"The SEG '{path}' has {seg.Columns}x{seg.Rows} pixel frames but the CT slices are "
            f"{volume.shape[2]}x{volume.shape[1]}: it was made on another image grid.")
    affine = np.asarray(volume.affine, dtype=float)
    if orientation is not None:
        iop = np.array([float(v) for v in orientation.ImageOrientationPatient])
        expected = np.concatenate([affine[:3, 2] / volume.spacing[2], affine[:3, 1] / volume.spacing[1]])
        if not np.allclose(iop, expected, atol=1e-3):
            raise GeometryMismatchError(
                f"The SEG '{path}' frames are oriented {np.round(iop, 4).tolist()} but the CT slices "
                f"{np.round(expected, 4).tolist()}: it belongs to another reconstruction.")
    if measures is not None and "PixelSpacing" in measures:
        spacing = [float(v) for v in measures.PixelSpacing]
        if not np.allclose(spacing, volume.spacing[1:], atol=1e-3):
            raise GeometryMismatchError(
                f"The SEG '{path}' has pixel spacing {spacing} mm but the CT {list(volume.spacing[1:])} mm.")


def _slice_of_position(position: np.ndarray, volume: Volume) -> int | None:
    index = np.linalg.solve(np.asarray(volume.affine, dtype=float), np.append(position, 1.0))[:3]
    nearest = np.round(index)
    world_error = np.asarray(volume.affine)[:3, :3] @ (index - nearest)
    if np.linalg.norm(world_error) > POSITION_TOLERANCE_MM or nearest[1] != 0 or nearest[2] != 0:
        return None
    z = int(nearest[0])
    return z if 0 <= z < volume.shape[0] else None


def read_seg(path, volume: Volume, segment: int | None = None) -> SegContents:
    """Read a DICOM SEG onto ``volume``'s grid (union of the pneumothorax segments, uint8 0/1).

    Raises :class:`GeometryMismatchError` when the SEG was made on another series or grid.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(os.fspath(path))
    except Exception as exc:  # not DICOM, not a SEG, damaged
        raise StudyError(f"Cannot read '{path}' as a DICOM SEG: {str(exc).splitlines()[0] if str(exc) else exc}.") from exc
    for_uid = str(getattr(seg, "FrameOfReferenceUID", "") or "")
    if volume.frame_of_reference_uid and for_uid and for_uid != volume.frame_of_reference_uid:
        raise GeometryMismatchError(
            f"The SEG '{path}' lies in frame of reference {for_uid}, the CT in "
            f"{volume.frame_of_reference_uid}: it was made on another scan. Import it with that scan.")
    _check_plane(seg, volume, path)
    numbers = _pick_segments(seg, segment)
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    threshold = 1 if str(seg.SegmentationType) == "BINARY" else max(1, int(getattr(seg, "MaximumFractionalValue", 255)) // 2)
    slice_of_uid = {uid: i for i, uid in enumerate(volume.slice_uids)}
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mapped_by = "sop_instance_uid"
    for frame in range(frames.shape[0]):
        identification = _group_item(seg, frame, "SegmentIdentificationSequence")
        if identification is None or int(identification.ReferencedSegmentNumber) not in numbers:
            continue
        z = _frame_slice(seg, frame, volume, slice_of_uid)
        if z is None:
            mapped_by = "position"
            z = _frame_slice_by_position(seg, frame, volume, path)
        mask[z] |= (frames[frame] >= threshold).astype(np.uint8)
    algorithm = seg.SegmentSequence[0]
    name = None
    if "SegmentationAlgorithmIdentificationSequence" in algorithm:
        name = str(algorithm.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName)
    creator = str(getattr(seg, "ContentCreatorName", "") or "") or None
    return SegContents(mask=mask, segment_numbers=numbers, algorithm_type=str(algorithm.SegmentAlgorithmType),
                       algorithm_name=name, series_uid=str(seg.SeriesInstanceUID), content_creator=creator,
                       mapped_by=mapped_by)


def _frame_slice(seg, frame: int, volume: Volume, slice_of_uid: dict) -> int | None:
    derivation = _group_item(seg, frame, "DerivationImageSequence")
    if derivation is None or "SourceImageSequence" not in derivation:
        return None
    for source in derivation.SourceImageSequence:
        z = slice_of_uid.get(str(source.ReferencedSOPInstanceUID))
        if z is not None:
            return z
    return None


def _frame_slice_by_position(seg, frame: int, volume: Volume, path) -> int:
    plane = _group_item(seg, frame, "PlanePositionSequence")
    if plane is None:
        raise GeometryMismatchError(
            f"Frame {frame + 1} of the SEG '{path}' references no slice of this CT and has no position: "
            "it was made on another series.")
    position = np.array([float(v) for v in plane.ImagePositionPatient])
    z = _slice_of_position(position, volume)
    if z is None:
        raise GeometryMismatchError(
            f"Frame {frame + 1} of the SEG '{path}' lies at {np.round(position, 2).tolist()} mm, which is not "
            "the position of any slice of this CT: it was made on another series or reconstruction.")
    return z
