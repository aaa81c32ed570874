"""Helpers that make tiny, learnable training data from a real CT (see conftest.py)."""

import numpy as np
from scipy import ndimage


def downsample(hu: np.ndarray, factor: int) -> np.ndarray:
    z, y, x = hu.shape
    return hu.reshape(z, y // factor, factor, x // factor, factor).mean(axis=(2, 4)).astype(np.float32)


def crescent_volume(hu_small: np.ndarray, seed: int, rim_px: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Paint a -1000 HU rim into one lung of every other slice; return (hu, mask)."""
    rng = np.random.default_rng(seed)
    hu = hu_small.copy()
    mask = np.zeros(hu.shape, np.uint8)
    for z in range(hu.shape[0]):
        if z % 2:
            continue
        air = hu[z] < -400
        lung = air & ~ndimage.binary_dilation(_outside(air), iterations=2)
        labels, n = ndimage.label(lung)
        if n == 0:
            continue
        sizes = ndimage.sum(lung, labels, range(1, n + 1))
        biggest = np.argsort(sizes)[::-1][:2] + 1
        chosen = labels == biggest[rng.integers(len(biggest))]
        if chosen.sum() < 30:
            continue
        rim = chosen & ~ndimage.binary_erosion(chosen, iterations=rim_px)
        hu[z][rim] = -1000.0 + rng.normal(0, 8, int(rim.sum()))
        mask[z][rim] = 1
    return hu, mask


def _outside(air: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(air)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
    return np.isin(labels, list(border))


def write_ct_nifti(hu: np.ndarray, affine: np.ndarray, path) -> None:
    import nibabel as nib

    from ptx_annotator.io.volume_files import nifti_affine_from_lps

    data = np.ascontiguousarray(hu.astype(np.int16).transpose(2, 1, 0))
    nib.save(nib.Nifti1Image(data, nifti_affine_from_lps(affine)), str(path))
