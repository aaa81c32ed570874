"""Training-time augmentation, deterministic per (seed, epoch, item).

Each training item gets, with its own seeded generator:

* rotation by up to +-20 degrees and zoom by up to +-10 % (one affine resampling; bilinear for the
  image, nearest for the mask; outside the image counts as 0 = air in the lung window);
* brightness scaled by 0.85..1.15 (then clipped to 0..1);
* a left-right flip with probability 0.5. A flip turns the patient's right into left, so it is only
  valid because the model is side-agnostic: it segments "pneumothorax", one class, and the side is
  derived afterwards from the CT's affine (``ptx_annotator.anatomy``), never learned. Image and
  mask are flipped together; no side-dependent label exists to swap. Up-down flips are not used
  (anterior/posterior matters: free air gathers anteriorly in a supine patient);
* optionally a random crop (``crop_size``), centred on foreground half of the time, so a
  fully convolutional model trains faster on CPU while seeing pneumothorax edges often.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

MAX_ROTATION_DEG = 20.0
ZOOM_RANGE = (0.9, 1.1)
BRIGHTNESS_RANGE = (0.85, 1.15)
FLIP_PROBABILITY = 0.5
FOREGROUND_CROP_PROBABILITY = 0.5


class AugmentedDataset(Dataset):
    """Wrap a dataset of ``(image [C,H,W], mask [1,H,W])`` with random, reproducible augmentation."""

    def __init__(self, dataset: Dataset, seed: int = 0, crop_size: int | None = None, augment: bool = True,
                 zoom_range: tuple = ZOOM_RANGE):
        self.dataset = dataset
        self.zoom_range = zoom_range
        self.seed = int(seed)
        self.crop_size = crop_size
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, mask = self.dataset[index]
        image, mask = torch.as_tensor(image, dtype=torch.float32), torch.as_tensor(mask, dtype=torch.float32)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 10_007 + int(index)) % 2**63)
        if self.crop_size:
            image, mask = random_crop(image, mask, self.crop_size, generator)
        if self.augment:
            image, mask = augment_pair(image, mask, generator, self.zoom_range)
        return image, mask


def _uniform(generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def augment_pair(image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, zoom_range=ZOOM_RANGE):
    """Rotate + zoom (> 1 magnifies), brighten and maybe flip one (image, mask) pair."""
    angle = math.radians(_uniform(generator, -MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    zoom = _uniform(generator, *zoom_range)
    brightness = _uniform(generator, *BRIGHTNESS_RANGE)
    flip = float(torch.rand((), generator=generator)) < FLIP_PROBABILITY
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = torch.tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]], dtype=torch.float32)
    grid = F.affine_grid(theta, (1, 1, *image.shape[-2:]), align_corners=False)
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    mask = F.grid_sample(mask[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    image = (image * brightness).clamp_(0.0, 1.0)
    if flip:
        image, mask = image.flip(-1), mask.flip(-1)
    return image.contiguous(), mask.contiguous()


def random_crop(image: torch.Tensor, mask: torch.Tensor, size: int, generator: torch.Generator):
    """A ``size`` x ``size`` crop, centred on a random foreground pixel half of the time when there is one."""
    height, width = image.shape[-2:]
    if size >= height and size >= width:
        return image, mask
    size_y, size_x = min(size, height), min(size, width)
    foreground = torch.nonzero(mask[0] > 0.5)
    if len(foreground) and float(torch.rand((), generator=generator)) < FOREGROUND_CROP_PROBABILITY:
        cy, cx = foreground[int(torch.randint(len(foreground), (), generator=generator))].tolist()
        top, left = cy - size_y // 2, cx - size_x // 2
    else:
        top = int(torch.randint(height - size_y + 1, (), generator=generator))
        left = int(torch.randint(width - size_x + 1, (), generator=generator))
    top, left = min(max(top, 0), height - size_y), min(max(left, 0), width - size_x)
    return image[..., top:top + size_y, left:left + size_x], mask[..., top:top + size_y, left:left + size_x]
