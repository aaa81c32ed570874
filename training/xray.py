"""Train a chest X-ray pneumothorax U-Net on SIIM-ACR style data (images + stage-1 RLE table).

The images are read lazily, one per item (:class:`XrayMaskDataset`), so the full 12,047-image
SIIM set streams from disk through DataLoader workers; on CUDA the shared trainer
(:func:`ptx_annotator.training.trainer.fit`) runs with AMP and channels_last. Negative images are
undersampled to ``negative_ratio`` times the positives. The validation split is a stable hash of
each ImageId, so every run with the same seed holds out the same images. Preprocessing is
:mod:`ptx_annotator.xray.preprocess` (resize, CLAHE) and is stored in the checkpoint.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ptx_annotator.errors import PtxError
from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint
from ptx_annotator.xray.io import load_xray
from ptx_annotator.xray.predict import MIN_AREA_AT_1024, TOP_THRESHOLD
from ptx_annotator.xray.preprocess import XrayPreprocessing, prepare_xray, resize_mask
from ptx_annotator.xray.rle import is_positive, mask_from_rows, read_rle_table
from . import distributed
from .trainer import TrainConfig, fit

IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
DEFAULT_MASK_THRESHOLD = 0.4


@dataclass
class XrayItem:
    """One training image: its file, SIIM ImageId and RLE rows (``['-1']`` for a negative)."""

    path: Path
    image_id: str
    rows: list[str]

    @property
    def positive(self) -> bool:
        return is_positive(self.rows)


@dataclass
class XraySelection:
    """The images chosen for one run and what was left out."""

    train: list[XrayItem]
    val: list[XrayItem]
    positives: int
    negatives_available: int
    negatives_used: int
    files_found: int
    not_in_table: list[str] = field(default_factory=list)
    validation_is_training: bool = False

    def summary(self) -> dict:
        return {"files_found": self.files_found, "positives": self.positives,
                "negatives_available": self.negatives_available, "negatives_used": self.negatives_used,
                "not_in_table": len(self.not_in_table), "train_images": len(self.train),
                "val_images": len(self.val), "validation_is_training": self.validation_is_training}


class XrayMaskDataset(Dataset):
    """Items ``(image float32 [1, S, S] in 0..1, mask float32 [1, S, S])`` read from disk on demand."""

    def __init__(self, items: list[XrayItem], settings: XrayPreprocessing):
        self.items = list(items)
        self.settings = settings

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item = self.items[index]
        image = load_xray(item.path)
        rows, columns = image.shape
        mask = mask_from_rows(item.rows, width=columns, height=rows)
        size = (self.settings.size, self.settings.size)
        prepared = prepare_xray(image.pixels, self.settings)
        target = resize_mask(mask, size).astype(np.float32)
        return torch.from_numpy(prepared[None].copy()), torch.from_numpy(target[None].copy())


def find_image_files(images_dir) -> list[Path]:
    """Every DICOM / PNG / JPEG file under ``images_dir`` (recursively), sorted."""
    root = Path(images_dir)
    if not root.is_dir():
        raise PtxError(f"--images '{root}' is not a folder. Give the folder holding the SIIM DICOM files.")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_id_of(path: Path, table: dict) -> str:
    """The SIIM ImageId of a file: its name stem, or the DICOM SOPInstanceUID when the stem is unknown."""
    if path.stem in table or path.suffix.lower() not in (".dcm", ".dicom"):
        return path.stem
    try:
        import pydicom

        return str(pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:  # an unreadable header simply has no ImageId
        return path.stem


def in_validation(image_id: str, seed: int, fraction: float) -> bool:
    """A stable draw per ImageId: the same images are held out on every run with this seed."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def select_images(images_dir, table: dict, negative_ratio: float = 1.0, val_fraction: float = 0.1,
                  seed: int = 0) -> XraySelection:
    """Match files to the RLE table, undersample negatives and split train / validation."""
    files = find_image_files(images_dir)
    positives, negatives, missing = [], [], []
    for path in files:
        image_id = image_id_of(path, table)
        if image_id not in table:
            missing.append(path.name)
            continue
        item = XrayItem(path, image_id, table[image_id])
        (positives if item.positive else negatives).append(item)
    if not positives and not negatives:
        raise PtxError(f"None of the {len(files)} image files under '{images_dir}' has a row in the RLE table "
                       "(files are matched by name stem or SOPInstanceUID to ImageId). Check --images and --rle.")
    if not positives:
        raise PtxError(f"The {len(negatives)} matched images are all negative ('-1'); a segmentation model needs "
                       "pneumothorax examples. Add positive images.")
    if negative_ratio < 0:
        raise PtxError(f"--negative-ratio must be >= 0 (got {negative_ratio}).")
    keep = min(len(negatives), int(round(negative_ratio * len(positives))))
    if negative_ratio > 0 and negatives:
        keep = max(keep, 1)
    chosen_negatives = random.Random(seed).sample(negatives, keep)
    items = sorted(positives + chosen_negatives, key=lambda it: it.image_id)
    val = [it for it in items if in_validation(it.image_id, seed, val_fraction)]
    train = [it for it in items if not in_validation(it.image_id, seed, val_fraction)]
    tiny = len(items) < 10 or not val or not any(it.positive for it in train)
    if tiny:  # too few images to hold any out: validate on the training images and say so
        train, val = items, list(items)
    return XraySelection(train, val, len(positives), len(negatives), len(chosen_negatives), len(files),
                         missing, validation_is_training=tiny)


def train_xray(images_dir, rle_path, out, *, size: int = 512, encoder: str = "resnet34", patches: int | None = None,
               epochs: int = 30, loss: str = "focal_dice", negative_ratio: float = 1.0, batch_size: int = 8,
               lr: float = 1e-4, device: str | None = None, num_workers: int = 0, seed: int = 0,
               val_fraction: float = 0.1, threshold: float = DEFAULT_MASK_THRESHOLD, augment: bool = True,
               patience: int = 8, max_seconds: float | None = None, registry_dir=None, progress=None,
               should_cancel=None) -> dict:
    """Train and save an X-ray checkpoint; returns a JSON-able summary (paths, data counts, metrics)."""
    if patches is not None and (patches < 32 or patches % 32 or patches > size):
        raise PtxError(f"--patches must be a multiple of 32 no larger than --size {size} (got {patches}).")
    table = read_rle_table(rle_path)
    selection = select_images(images_dir, table, negative_ratio, val_fraction, seed)
    settings = XrayPreprocessing(size=size)
    train_set, val_set = XrayMaskDataset(selection.train, settings), XrayMaskDataset(selection.val, settings)
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, loss=loss, patience=patience, seed=seed,
                         device=device, input_size=size, augment=augment, crop_size=patches,
                         threshold=threshold, num_workers=num_workers, max_seconds=max_seconds)
    model = build_model(encoder, in_channels=1, classes=1)
    result = fit(model, train_set, val_set, config, progress=progress, should_cancel=should_cancel)
    if result.best_state is None:
        raise PtxError("Training stopped before the first epoch finished; no checkpoint was written.")
    metrics = evaluate(model, val_set, result.config.device, threshold)
    meta = CheckpointMeta(
        encoder=encoder, in_channels=1, classes=1, input_size=size, hu_window=None, threshold=threshold,
        modality="XR", preprocessing=settings.to_json(), metrics=metrics,
        provenance={"task": "chest X-ray pneumothorax (SIIM-ACR stage-1 RLE)", "images_dir": str(images_dir),
                    "rle_table": str(rle_path), "data": selection.summary(), "patches": patches,
                    "train_config": result.config.to_json(), "epochs_run": result.epochs_run,
                    "best_epoch": result.best_epoch, "history": result.history,
                    "decision_rule": {"top_threshold": TOP_THRESHOLD, "min_area_at_1024": MIN_AREA_AT_1024}},
        name=Path(out).stem if out else "")
    summary = {"data": selection.summary(), "metrics": metrics, "epochs_run": result.epochs_run,
               "best_epoch": result.best_epoch, "cancelled": result.cancelled, "seconds": result.seconds,
               "history": result.history, "checkpoint": None, "registry": None}
    if not distributed.is_main_process():
        return summary
    if out:
        summary["checkpoint"] = str(save_checkpoint(model, out, meta))
    if registry_dir:
        from .registry import ModelRegistry

        registration = ModelRegistry(registry_dir).register(
            model, replace(meta, name=""), metrics, data_manifest=_manifest(selection), epochs=result.epochs_run,
            extra={"modality": "XR"})
        summary["registry"] = {"version": registration.version, "path": str(registration.path),
                               "activated": registration.activated, "message": registration.message}
    return summary


@torch.no_grad()
def evaluate(model, dataset: XrayMaskDataset, device: str, threshold: float) -> dict:
    """Pooled pixel Dice / IoU / precision / recall / accuracy and image-level AUC on ``dataset``."""
    model.eval()
    tp = fp = fn = tn = 0
    scores, labels = [], []
    for index in range(len(dataset)):
        image, mask = dataset[index]
        probability = torch.sigmoid(model(image[None].to(device)))[0].float().cpu()
        predicted, truth = probability >= threshold, mask > 0.5
        tp += int((predicted & truth).sum())
        fp += int((predicted & ~truth).sum())
        fn += int((~predicted & truth).sum())
        tn += int((~predicted & ~truth).sum())
        scores.append(float(probability.max()))
        labels.append(int(truth.any()))
    dice = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    iou = 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
    auc = None
    if 0 < sum(labels) < len(labels):
        from sklearn.metrics import roc_auc_score

        auc = round(float(roc_auc_score(labels, scores)), 4)
    total = max(tp + fp + fn + tn, 1)
    return {"dice": round(dice, 4), "iou": round(iou, 4),
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "accuracy": round((tp + tn) / total, 4), "auc": auc, "n_images": len(dataset)}


def _manifest(selection: XraySelection) -> str:
    ids = "\n".join(sorted(it.image_id for it in selection.train + selection.val))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]
