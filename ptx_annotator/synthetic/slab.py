"""Partial volume of thick slices: thin air laid down on sub-slices, each voxel keeps its air share.

A CT voxel of a 5 mm slice averages 5 mm of patient. A 1 mm rim of air meeting the slice plane at
an angle fills only part of the voxels it crosses, so it shows as a faint band (HU between air and
lung), not as a crisp line of pure air. The simulator therefore lays pleural air down on
sub-slices of at most :data:`SUBSLICE_MM` (the pleural cavity between slices by shape-based
interpolation: the signed distance to its wall, linear in z) and averages them back: each voxel
gets the share of it that is air.

The truth mask is one rule everywhere: **a voxel is pneumothorax when at least**
:data:`COVERED_SHARE` **of it is pleural air** — here, and when :mod:`.acquisition` re-acquires a
case at another slice thickness (the air shares are averaged over the new slice, then the same
rule). A rim too thin to fill half of any voxel leaves a faint band in the CT and nothing in the
truth: a reader cannot paint it either.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Sub-slices are at most this thick (mm); slices up to 1.5 times it are used as they are.
SUBSLICE_MM = 1.25
#: A voxel belongs to a mask when at least this share of it is covered.
COVERED_SHARE = 0.5


def subslices(slice_mm: float) -> int:
    """How many sub-slices one slice of ``slice_mm`` is laid down on (1: no partial-volume model)."""
    return 1 if slice_mm <= 1.5 * SUBSLICE_MM else int(np.ceil(slice_mm / SUBSLICE_MM - 1e-6))


def sub_positions(n_slices: int, n: int) -> np.ndarray:
    """Centres of the sub-slices in slice-index units (slice ``k`` covers ``k - 0.5 .. k + 0.5``)."""
    return (np.arange(n_slices * n, dtype=np.float64) + 0.5) / n - 0.5


def to_subslices(data: np.ndarray, n: int, linear: bool = True) -> np.ndarray:
    """``data`` (z first) on ``n`` sub-slices per slice: linear in z, or the slice's own value."""
    if n == 1:
        return data
    if not linear:
        return np.repeat(data, n, axis=0)
    positions = np.clip(sub_positions(data.shape[0], n), 0, data.shape[0] - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, data.shape[0] - 1)
    t = (positions - low).astype(np.float32).reshape((-1,) + (1,) * (data.ndim - 1))
    return data[low] * (1 - t) + data[high] * t


def cavity_on_subslices(cavity: np.ndarray, spacing, n: int) -> np.ndarray:
    """A boolean (z, y, x) region on ``n`` sub-slices per slice (shape-based interpolation).

    Outside the array counts as outside the region, as it does for the wall depth.
    """
    if n == 1:
        return cavity
    padded = np.pad(cavity, 1)
    signed = (ndi.distance_transform_edt(padded, sampling=spacing)
              - ndi.distance_transform_edt(~padded, sampling=spacing)).astype(np.float32)
    positions = sub_positions(cavity.shape[0], n) + 1.0  # in padded slice indices
    low = np.floor(positions).astype(int)
    t = (positions - low).astype(np.float32)[:, None, None]
    fine = signed[low] * (1 - t) + signed[low + 1] * t
    return fine[:, 1:-1, 1:-1] > 0


def slab_mean(fine: np.ndarray, n: int) -> np.ndarray:
    """Mean over each slice's ``n`` sub-slices (the slice's partial volume)."""
    if n == 1:
        return fine.astype(np.float32)
    return fine.reshape((fine.shape[0] // n, n) + fine.shape[1:]).mean(axis=1, dtype=np.float32)
