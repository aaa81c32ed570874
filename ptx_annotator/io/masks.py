"""The one mask reader of every command: NIfTI, NRRD or DICOM SEG -> a 0/1 mask, never a silent cast.

Which voxels are content is decided on the values as stored (no cast to uint8 first, so a uint16
label 256 or a float 0.4 is never lost):

* by default any non-zero value is content; several labels (1 and 7, say) are all content and
  are reported, so a multi-label file is never read silently as one structure;
* ``label=N`` takes only voxels equal to N; ``threshold=T`` takes voxels >= T (a probability map);
* negative values, NaN / inf, or more distinct values than a label map can hold (:data:`MAX_LABELS`)
  are refused unless ``label`` or ``threshold`` says what to take: such a file is an image or a
  probability map, not a label mask.

With a CT ``volume`` the mask is put onto its grid (axes permuted / flipped / cropped only when
its voxels coincide with the CT's) and any other grid is refused; without one it keeps its own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptx_annotator.errors import PtxError, StudyError

#: Distinct non-zero values a label mask may hold (a uint8 label map's range).
MAX_LABELS = 255
MASK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")


class MaskFileError(PtxError):
    """A mask file that cannot be read, or whose content is ambiguous without --label / --threshold."""


@dataclass
class MaskFile:
    """A mask read from a file: 0/1 uint8 (z, y, x), its affine, and how its content was chosen."""

    mask: np.ndarray
    affine: np.ndarray
    file_format: str  # 'nifti', 'nrrd' or 'seg'
    details: dict = field(default_factory=dict)

    @property
    def rule(self) -> str:
        """How content was chosen, in words (for the command's report)."""
        return self.details.get("rule", "")


def is_mask_volume_path(path) -> bool:
    return str(path).lower().endswith(MASK_SUFFIXES)


def read_mask(path, volume=None, *, label: float | None = None, threshold: float | None = None,
              segment: int | None = None) -> MaskFile:
    """Read the mask file ``path`` (onto ``volume``'s grid when given); see the module rules."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if label is not None and threshold is not None:
        raise MaskFileError("Give --label or --threshold, not both.")
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise MaskFileError(f"--threshold {threshold} must be a number above 0 (0 or less would take the background).")
    if label is not None and not math.isfinite(label):
        raise MaskFileError(f"--label {label} must be a finite number.")
    if path.is_dir():
        raise MaskFileError(f"'{path}' is a folder: give one mask file (NIfTI .nii.gz, NRRD or DICOM SEG).")
    if not path.is_file():
        raise MaskFileError(f"Mask file '{path}' does not exist: give a NIfTI (.nii.gz), NRRD or DICOM SEG file.")
    if path.stat().st_size == 0:
        raise MaskFileError(f"Mask file '{path}' is empty (0 bytes): it was not written completely.")
    if not is_mask_volume_path(path):
        return _read_seg(path, volume, segment, label, threshold)
    from ptx_annotator.io.volume_files import load_nifti, load_nrrd

    try:
        loaded = load_nifti(path) if str(path).lower().endswith((".nii", ".nii.gz")) else load_nrrd(path)
    except StudyError as exc:
        raise MaskFileError(str(exc).replace("Cannot read", "Cannot read the mask", 1)) from None
    data = np.asarray(loaded.hu)
    content, details = content_of(data, f"the mask '{path.name}'", label=label, threshold=threshold)
    fmt = "nifti" if str(path).lower().endswith((".nii", ".nii.gz")) else "nrrd"
    affine = np.asarray(loaded.affine, dtype=float)
    if volume is None:
        return MaskFile(content.astype(np.uint8), affine, fmt, details)
    from ptx_annotator.geometry import place_on_grid

    mask = place_on_grid(content, affine, volume, f"the mask '{path.name}'")
    return MaskFile(np.asarray(mask, dtype=np.uint8), np.asarray(volume.affine, dtype=float), fmt, details)


def content_of(data: np.ndarray, what: str, *, label=None, threshold=None) -> tuple[np.ndarray, dict]:
    """(boolean content, details) of a mask's stored values by the module's rules."""
    if data.dtype.kind not in "biuf":
        raise MaskFileError(f"{_cap(what)} holds {data.dtype} values, not numbers; give a label mask.")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise MaskFileError(f"{_cap(what)} holds {bad} NaN or infinite values: it is damaged or not a mask.")
    if label is not None:
        content = data == label
        if not content.any():
            raise MaskFileError(f"{_cap(what)} has no voxel with label {label:g}; its labels: {_labels_text(data)}.")
        return content, {"labels": _labels(data), "rule": f"label {label:g} only"}
    if threshold is not None:
        content = data >= threshold
        return content, {"value_range": [float(data.min()), float(data.max())], "rule": f"values >= {threshold:g}"}
    values = np.unique(data[data != 0]) if data.size else np.array([])
    if values.size and values.min() < 0:
        raise MaskFileError(
            f"{_cap(what)} holds negative values (down to {float(values.min()):g}): it is an image, not a label mask. "
            "Give --label N to take one label or --threshold T to take values >= T.")
    if values.size > MAX_LABELS:
        raise MaskFileError(
            f"{_cap(what)} holds {values.size} distinct values ({float(values.min()):g}..{float(values.max()):g}): "
            "it looks like an image or a probability map, not a label mask. Give --threshold T (e.g. 0.5) or --label N.")
    whole = bool(np.all(np.mod(values, 1) == 0))
    if not values.size:
        rule = "no content (every value is 0)"
    elif whole and values.size == 1:
        rule = f"label {values[0]:g}"
    elif whole:
        rule = f"labels {_labels_text(data)} all counted as content (give --label N for one)"
    else:
        rule = (f"fractional values {float(values.min()):g}..{float(values.max()):g} counted as content wherever "
                "non-zero (give --threshold T for a probability map)")
    return data != 0, {"labels": [float(v) if not whole else int(v) for v in values[:MAX_LABELS]], "rule": rule}


def _read_seg(path: Path, volume, segment, label, threshold) -> MaskFile:
    if volume is None:
        raise MaskFileError(f"'{path.name}' is not NIfTI or NRRD; a DICOM SEG needs its CT (give the study) to be read.")
    if threshold is not None:
        raise MaskFileError("--threshold applies to NIfTI / NRRD masks; for a DICOM SEG choose --segment N.")
    from ptx_annotator.io.seg import read_seg

    contents = read_seg(path, volume, segment=segment if segment is not None else
                        (int(label) if label is not None else None))
    return MaskFile(contents.mask.astype(np.uint8), np.asarray(volume.affine, dtype=float), "seg", {
        "segments": contents.segment_numbers, "algorithm_type": contents.algorithm_type,
        "algorithm_name": contents.algorithm_name, "seg_series_uid": contents.series_uid,
        "content_creator": contents.content_creator, "mapped_by": contents.mapped_by,
        "rule": f"segments {', '.join(map(str, contents.segment_numbers))}",
    })


def _labels(data: np.ndarray) -> list:
    values = np.unique(data[data != 0])[:MAX_LABELS]
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def _labels_text(data: np.ndarray) -> str:
    labels = _labels(data)
    text = ", ".join(f"{v:g}" for v in labels[:8]) + (", ..." if len(labels) > 8 else "")
    return text or "none (every value is 0)"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
