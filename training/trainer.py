"""The training loop: one reusable ``fit`` for CT slices and chest X-rays alike.

API
---
``fit(model, train_dataset, val_dataset, config, progress=None, should_cancel=None) -> TrainResult``

* ``train_dataset`` / ``val_dataset``: any ``torch.utils.data.Dataset`` whose items are
  ``(image, mask)``: ``image`` float32 ``[C, H, W]`` scaled to 0..1, ``mask`` float32 ``[1, H, W]``
  of 0/1. ``val_dataset`` may be ``None`` (then the best epoch is the one of lowest training loss
  and there is no early stopping). Batches whose size differs from ``config.input_size`` are resized
  (bilinear image, nearest mask).
* ``config``: :class:`TrainConfig`; defaults follow the CT paper: Adam, lr 1e-4, BCE + Jaccard
  (``loss='bce_jaccard'``; ``'focal_dice'`` is the X-ray papers' focal + Dice), early stopping on
  the validation loss with patience 8; augmentation (rotation <= 20 deg, zoom +-10 %, brightness
  +-15 %, left-right flips) applied to the training set only, see :mod:`.augment`.
* ``progress(event)``: called with a :class:`TrainEvent` after every step (``kind='step'``) and
  every epoch (``kind='epoch'``, with validation loss and Dice); only on rank 0 under DDP.
* ``should_cancel()``: checked before every step; True stops after the current step. Ctrl-C
  (KeyboardInterrupt) does the same. Either way the best weights so far are returned.
* ``config.max_seconds``: checked before every step; when the time is up mid-epoch, the steps of
  that epoch are validated and recorded (``partial_steps`` in its history entry), then training ends.
* Result :class:`TrainResult`: ``best_state`` (CPU state dict of the unwrapped model, or None if
  no epoch finished), ``history`` (one dict per epoch), ``best_epoch``, ``stopped_early``,
  ``cancelled``; ``model`` is left holding ``best_state``.

Devices: CUDA uses automatic mixed precision (bfloat16 where supported, else float16 with a grad
scaler) and channels_last; CPU runs float32 at a smaller default input size (256 instead of 512).
Runs are deterministic for a given ``seed`` on one device (CPU bit-exact; CUDA up to cuDNN).

Distributed: started under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1) the same call runs
DistributedDataParallel (NCCL on GPUs, gloo on CPU) with a ``DistributedSampler``; validation sums
are all-reduced so every rank takes the same early-stopping decision. Callers write files only
where :func:`ptx_annotator.training.distributed.is_main_process` is true.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import distributed
from .augment import AugmentedDataset

LOSSES = ("bce_jaccard", "focal_dice")
DEFAULT_SIZE_CUDA = 512
DEFAULT_SIZE_CPU = 256


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (JSON-able; recorded in the checkpoint provenance)."""

    epochs: int = 30
    lr: float = 1e-4
    batch_size: int = 4
    loss: str = "bce_jaccard"
    patience: int = 8
    seed: int = 0
    device: str | None = None          # None: cuda if available else cpu
    amp: bool | None = None            # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    input_size: int | None = None      # None: 512 on CUDA, 256 on CPU
    augment: bool = True
    zoom_range: tuple = (0.9, 1.1)     # +-10 % (the paper); bootstrap widens it for other fields of view
    crop_size: int | None = None       # train on random crops of this size (fully convolutional)
    max_seconds: float | None = None   # stop (keeping the best weights) after this much time
    threshold: float = 0.5
    num_workers: int = 0

    def resolved(self) -> "TrainConfig":
        """A copy with device, AMP, channels_last and input size decided."""
        out = copy.copy(self)
        if out.loss not in LOSSES:
            raise ValueError(f"Unknown loss '{out.loss}'; choose one of {', '.join(LOSSES)}.")
        if out.device is None:
            out.device = "cuda" if torch.cuda.is_available() else "cpu"
        if out.device.startswith("cuda") and not torch.cuda.is_available():
            from ptx_annotator.errors import PtxError

            raise PtxError("--device cuda was asked for but no CUDA GPU is visible to PyTorch; use --device cpu.")
        on_cuda = out.device.startswith("cuda")
        out.amp = on_cuda if out.amp is None else bool(out.amp and on_cuda)
        out.channels_last = on_cuda if out.channels_last is None else bool(out.channels_last)
        if out.input_size is None:
            out.input_size = DEFAULT_SIZE_CUDA if on_cuda else DEFAULT_SIZE_CPU
        return out

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainEvent:
    """Progress report: ``kind`` is 'step' (within an epoch) or 'epoch' (epoch finished)."""

    kind: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    val_loss: float | None = None
    val_dice: float | None = None
    best_epoch: int | None = None
    elapsed: float = 0.0
    history: list = field(default_factory=list)


@dataclass
class TrainResult:
    best_state: dict | None
    history: list
    best_epoch: int | None
    stopped_early: bool
    cancelled: bool
    config: TrainConfig | None = None
    seconds: float = 0.0
    timed_out: bool = False
    world_size: int = 1

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def make_loss(name: str) -> Callable:
    """The combined loss ``name`` (see :data:`LOSSES`) over logits and 0/1 targets."""
    from segmentation_models_pytorch import losses

    if name == "bce_jaccard":
        first, second = losses.SoftBCEWithLogitsLoss(), losses.JaccardLoss("binary", from_logits=True)
    elif name == "focal_dice":
        first, second = losses.FocalLoss("binary"), losses.DiceLoss("binary", from_logits=True)
    else:
        raise ValueError(f"Unknown loss '{name}'; choose one of {', '.join(LOSSES)}.")

    def combined(logits, target):
        return first(logits, target) + second(logits, target)

    return combined


def fastest_cpu_threads(model, crop: int = 128, batch_size: int = 4, steps: int = 2,
                        candidates: tuple | None = None) -> tuple[int, dict]:
    """``(threads, seconds per step by thread count)``: the faster of one and all intra-op threads.

    On a crowded machine (other processes on the same cores) PyTorch's threads spin against each
    other and one thread trains several times faster; on an idle one all threads win. A few
    training steps on random data decide (the model's weights are restored afterwards).
    """
    import os

    before = torch.get_num_threads()
    candidates = candidates or tuple(sorted({1, max(1, before), max(1, os.cpu_count() or 1)}))
    state = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.rand(batch_size, 1, crop, crop)
    y = (torch.rand(batch_size, 1, crop, crop) > 0.5).float()
    timings = {}
    model.train()
    try:
        for threads in candidates:
            torch.set_num_threads(int(threads))
            best = math.inf
            for step in range(steps + 1):
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                F.binary_cross_entropy_with_logits(model(x), y).backward()
                optimizer.step()
                if step:  # the first step warms up
                    best = min(best, time.perf_counter() - started)
            timings[int(threads)] = round(best, 3)
    finally:
        model.load_state_dict(state)
        torch.set_num_threads(before)
    return min(timings, key=timings.get), timings


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _resize_batch(images, masks, size: int | None):
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images, masks
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    masks = F.interpolate(masks, size=(size, size), mode="nearest")
    return images, masks


def fit(model, train_dataset: Dataset, val_dataset: Dataset | None, config: TrainConfig | None = None,
        progress: Callable[[TrainEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None) -> TrainResult:
    """Train ``model`` in place and return the best weights; see the module docstring."""
    config = (config or TrainConfig()).resolved()
    if len(train_dataset) == 0:
        from ptx_annotator.errors import PtxError

        raise PtxError("There is nothing to train on: the training set is empty.")
    seed_everything(config.seed)
    context = distributed.setup(config.device)
    device = torch.device(context.device)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = distributed.wrap(model, context)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    criterion = make_loss(config.loss)
    amp_dtype = _amp_dtype(config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    train_data = train_dataset
    if config.augment or config.crop_size:
        train_data = AugmentedDataset(train_dataset, seed=config.seed, crop_size=config.crop_size,
                                      augment=config.augment, zoom_range=tuple(config.zoom_range))
    train_loader, train_sampler = _loader(train_data, config, context, shuffle=True)
    val_loader = _loader(val_dataset, config, context, shuffle=False)[0] if val_dataset is not None and len(val_dataset) else None

    history: list[dict] = []
    best = {"loss": math.inf, "epoch": None, "state": None}
    since_best, cancelled, stopped_early, timed_out = 0, False, False, False
    started = time.monotonic()
    report = progress if context.is_main else None
    try:
        for epoch in range(1, config.epochs + 1):
            if hasattr(train_data, "set_epoch"):
                train_data.set_epoch(epoch)
            if train_sampler is not None and hasattr(train_sampler, "set_epoch"):
                train_sampler.set_epoch(epoch)
            net.train()
            total, count = 0.0, 0
            steps = len(train_loader)
            partial = False
            for step, (images, masks) in enumerate(train_loader, start=1):
                cancel_now, late = _stop_flags(should_cancel, config, started, context)
                if cancel_now or late:
                    cancelled, timed_out = cancel_now, late and not cancel_now
                    if cancel_now or count == 0:
                        raise _Stop()
                    partial = True  # the time is up mid-epoch: the steps taken still count (validated)
                    break
                images, masks = _to_device(images, masks, device, config)
                if not config.crop_size:
                    images, masks = _resize_batch(images, masks, config.input_size)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = criterion(net(images), masks)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * images.shape[0]
                count += images.shape[0]
                if report:
                    report(TrainEvent("step", epoch, config.epochs, step, steps, total / count,
                                      elapsed=time.monotonic() - started, history=history))
            train_loss = distributed.mean_over_ranks(total, count, context)
            val_loss, val_dice = _validate(net, val_loader, criterion, config, device, amp_dtype, context)
            monitored = val_loss if val_loss is not None else train_loss
            improved = monitored < best["loss"]
            if improved:
                best.update(loss=monitored, epoch=epoch, state=_cpu_state(model))
                since_best = 0
            else:
                since_best += 1
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_dice": val_dice,
                            "seconds": round(time.monotonic() - started, 2), "best": improved,
                            **({"partial_steps": step - 1} if partial else {})})
            if report:
                report(TrainEvent("epoch", epoch, config.epochs, steps, steps, train_loss, val_loss, val_dice,
                                  best["epoch"], time.monotonic() - started, history))
            if partial:
                break
            if val_loader is not None and since_best >= config.patience:
                stopped_early = True
                break
            if _stop_flags(None, config, started, context)[1]:
                timed_out = True
                break
    except _Stop:
        pass
    except KeyboardInterrupt:
        cancelled = True
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return TrainResult(best["state"], history, best["epoch"], stopped_early, cancelled, config,
                       round(time.monotonic() - started, 2), timed_out, context.world_size)


class _Stop(Exception):
    pass


def _amp_dtype(config: TrainConfig):
    if not config.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _stop_flags(should_cancel, config: TrainConfig, started: float, context) -> tuple[bool, bool]:
    """(cancel asked, time budget spent), agreed by all ranks so they stop at the same step."""
    cancel = bool(should_cancel()) if should_cancel is not None else False
    late = config.max_seconds is not None and time.monotonic() - started > config.max_seconds
    return distributed.any_rank(cancel, context), distributed.any_rank(late, context)


def _to_device(images, masks, device, config):
    images = images.to(device, non_blocking=True).float()
    masks = masks.to(device, non_blocking=True).float()
    if config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def _loader(dataset, config: TrainConfig, context, shuffle: bool):
    sampler = distributed.sampler(dataset, context, shuffle=shuffle, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle and sampler is None,
                        sampler=sampler, generator=generator, num_workers=config.num_workers,
                        drop_last=False, pin_memory=str(config.device).startswith("cuda"))
    return loader, sampler


@torch.no_grad()
def _validate(net, loader, criterion, config, device, amp_dtype, context):
    """Mean validation loss and pooled Dice (all-reduced across ranks); (None, None) without data."""
    if loader is None:
        return None, None
    net.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # loss*n, n, tp, fp, fn
    for images, masks in loader:
        images, masks = _to_device(images, masks, device, config)
        images, masks = _resize_batch(images, masks, config.input_size)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = net(images)
        loss = criterion(logits.float(), masks)
        predicted = logits.float() > math.log(config.threshold / (1 - config.threshold))
        truth = masks > 0.5
        sums += torch.tensor([float(loss) * images.shape[0], images.shape[0], float((predicted & truth).sum()),
                              float((predicted & ~truth).sum()), float((~predicted & truth).sum())], dtype=torch.float64)
    sums = distributed.sum_over_ranks(sums, context)
    loss_sum, n, tp, fp, fn = (float(v) for v in sums)
    dice = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return loss_sum / max(n, 1.0), dice


def _cpu_state(model) -> dict:
    return {name: tensor.detach().to("cpu", copy=True).contiguous()
            for name, tensor in distributed.unwrap(model).state_dict().items()}
