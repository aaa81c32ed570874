"""NIfTI and NRRD volumes and masks, converted to and from the (z, y, x) + LPS convention."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptx_annotator.errors import StudyError
from ptx_annotator.geometry import voxel_volume_mm3
from ptx_annotator.volume import Volume

#: Flips between DICOM/ITK LPS and NIfTI RAS patient coordinates (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Reorders index vectors between array order (z, y, x) and file order (x, y, z).
ZYX_TO_XYZ = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")


def is_volume_file(path) -> bool:
    name = str(path).lower()
    return os.path.isfile(path) and name.endswith(VOLUME_SUFFIXES)


def nifti_affine_from_lps(affine_zyx_lps: np.ndarray) -> np.ndarray:
    """The NIfTI (x, y, z index to RAS) affine of a (z, y, x index to LPS) affine."""
    return LPS_TO_RAS @ np.asarray(affine_zyx_lps, dtype=float) @ ZYX_TO_XYZ


def lps_affine_from_nifti(affine_xyz_ras: np.ndarray) -> np.ndarray:
    """The inverse of :func:`nifti_affine_from_lps`."""
    return LPS_TO_RAS @ np.asarray(affine_xyz_ras, dtype=float) @ ZYX_TO_XYZ


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]


def load_nifti(path) -> Volume:
    """Read a NIfTI image as a Volume (values as stored, scaled by the header's slope)."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:
        raise StudyError(f"Cannot read NIfTI '{path}': {exc}. Check the file is complete.") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise StudyError(f"'{path}' holds a {data.ndim}-D image {data.shape}; a 3D volume is needed.")
    affine = lps_affine_from_nifti(image.affine)
    return _volume(np.ascontiguousarray(data.transpose(2, 1, 0)), affine, path)


def load_nrrd(path) -> Volume:
    """Read a NRRD volume (any 'space' the format allows) as a Volume in LPS."""
    import nrrd

    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:
        raise StudyError(f"Cannot read NRRD '{path}': {exc}. Check the file is complete.") from exc
    if data.ndim != 3:
        raise StudyError(f"'{path}' holds a {data.ndim}-D image {data.shape}; a 3D volume is needed.")
    directions = np.asarray(header.get("space directions", np.eye(3)), dtype=float)
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    space = str(header.get("space", "left-posterior-superior")).lower()
    to_lps = _space_to_lps(space, path)
    affine_xyz = np.eye(4)
    affine_xyz[:3, :3] = to_lps @ directions.T  # columns: world step per x, y, z index
    affine_xyz[:3, 3] = to_lps @ origin
    affine = affine_xyz @ ZYX_TO_XYZ
    return _volume(np.ascontiguousarray(data.transpose(2, 1, 0)), affine, path)


def _space_to_lps(space: str, path) -> np.ndarray:
    known = {
        "left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
        "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1),
        "left-anterior-superior": (1, -1, 1), "las": (1, -1, 1),
    }
    if space not in known:
        raise StudyError(f"NRRD '{path}' uses space '{space}', which is not a patient space this tool knows (LPS, RAS, LAS).")
    return np.diag(known[space]).astype(float)


def nonfinite_warnings(values: np.ndarray, what: str) -> list[str]:
    """A warning when ``values`` hold NaN or infinite numbers (they are kept, never silently replaced)."""
    if values.dtype.kind != "f":
        return []
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if not bad:
        return []
    return [f"{what} has {bad} NaN or infinite voxel values ({100 * bad / values.size:.2g}% of the volume): "
            "the file is damaged or not a CT in HU; measurements and proposals there are meaningless."]


def _volume(data: np.ndarray, affine: np.ndarray, path) -> Volume:
    warnings = nonfinite_warnings(data, f"'{Path(path).name}'")
    if not np.all(np.isfinite(affine)) or voxel_volume_mm3(affine) < 1e-9:
        raise StudyError(f"'{path}' has no usable geometry (its affine is singular or not finite): "
                         "re-export it with its voxel spacing and orientation.")
    if data.dtype.kind == "f":
        whole = not warnings and np.all(np.mod(data[:: max(1, data.shape[0] // 8)], 1) == 0)
        if whole and data.min() >= -32768 and data.max() <= 32767:
            data = data.astype(np.int16)
        else:
            data = data.astype(np.float32)
    return Volume(
        hu=data,
        spacing=spacing_from_affine(affine),
        affine=affine,
        source=str(path),
        description=Path(path).name,
        transfer_syntax="NIfTI" if str(path).lower().endswith((".nii", ".nii.gz")) else "NRRD",
        warnings=warnings,
    )


def save_mask_nifti(mask: np.ndarray, affine_zyx_lps: np.ndarray, path) -> None:
    """Write a (z, y, x) uint8 mask as NIfTI with the CT's geometry (opens aligned in Slicer / ITK-SNAP).

    The write is not atomic; :mod:`ptx_annotator.review.store` wraps it for that.
    """
    import nibabel as nib

    data = np.asarray(mask, dtype=np.uint8).transpose(2, 1, 0)
    affine = nifti_affine_from_lps(affine_zyx_lps)
    image = nib.Nifti1Image(data, affine)
    image.header.set_data_dtype(np.uint8)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def load_mask_nifti(path) -> tuple[np.ndarray, np.ndarray]:
    """A (z, y, x) uint8 mask and its (z, y, x to LPS) affine from a NIfTI file."""
    volume = load_nifti(path)
    return np.asarray(volume.hu).astype(np.uint8), volume.affine
