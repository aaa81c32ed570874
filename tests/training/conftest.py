"""Tiny, learnable training data made from the real TCIA chest CT.

The "pneumothorax" here is a stand-in that a small U-Net learns in seconds: in every other slice,
the rim of one lung (the lung voxels within a few pixels of the chest wall) is replaced by
uniform air at -1000 HU, and that rim is the label. Volumes are block-averaged to 64 x 64 px so
training on CPU takes seconds. Each "patient" is a different slab of the real CT, saved as its
own NIfTI file (the file stem is the patient).
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_data import crescent_volume, downsample, write_ct_nifti  # noqa: F401 - tests/training is on sys.path

SIZE = 64
SLAB_STARTS = (12, 20, 28, 36)
SLAB_SLICES = 8


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a crowded 2-core machine two threads spin against each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ct(tcia_volume):
    """(hu, spacing, affine) of the TCIA CT at 64 x 64 px."""
    factor = tcia_volume.shape[1] // SIZE
    hu = downsample(np.asarray(tcia_volume.hu, dtype=np.float32), factor)
    affine = np.array(tcia_volume.affine, dtype=float)
    affine[:3, 1] *= factor
    affine[:3, 2] *= factor
    spacing = (tcia_volume.spacing[0], tcia_volume.spacing[1] * factor, tcia_volume.spacing[2] * factor)
    return hu, spacing, affine


@pytest.fixture(scope="session")
def tiny_slabs(tiny_ct):
    """Four 'patients': (name, hu, mask, affine) for slabs of 8 slices of the real CT."""
    hu, _, affine = tiny_ct
    slabs = []
    for patient, start in enumerate(SLAB_STARTS):
        slab_hu, slab_mask = crescent_volume(hu[start:start + SLAB_SLICES], seed=patient)
        slab_affine = affine.copy()
        slab_affine[:3, 3] = affine[:3, 3] + start * affine[:3, 0]
        slabs.append((f"patient{patient}", slab_hu, slab_mask, slab_affine))
    return slabs


@pytest.fixture(scope="session")
def tiny_slices(tiny_slabs, tiny_ct):
    """The four slabs as LabelledSlice lists, one list per patient."""
    from ptx_annotator.training.data import LabelledSlice

    spacing_z = float(tiny_ct[1][0])
    return [[LabelledSlice(hu[z], mask[z], name, name, z, spacing_z) for z in range(hu.shape[0])]
            for name, hu, mask, _ in tiny_slabs]


@pytest.fixture(scope="session")
def tiny_pairs(tiny_slabs, tmp_path_factory):
    """The four slabs as NIfTI CT + mask files (the file stem is the patient)."""
    from ptx_annotator.io import save_mask_nifti

    folder = tmp_path_factory.mktemp("tiny_pairs")
    images, masks = [], []
    for patient, (_, slab_hu, slab_mask, slab_affine) in enumerate(tiny_slabs):
        image_path, mask_path = folder / f"patient{patient}.nii.gz", folder / f"patient{patient}_mask.nii.gz"
        write_ct_nifti(slab_hu, slab_affine, image_path)
        save_mask_nifti(slab_mask, slab_affine, mask_path)
        images.append(image_path)
        masks.append(mask_path)
    return images, masks
