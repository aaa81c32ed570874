"""The U-Net inference engine: a CT volume -> per-slice probabilities and masks, as a generator.

:class:`ModelProposer` implements the :class:`~ptx_annotator.proposers.contract.Proposer` protocol. The slice
on screen is computed first (alone, for latency), then the others outwards from it in small batches;
``should_cancel()`` is checked between slices and the generator simply stops.

Preprocessing matches training (:mod:`ptx_annotator.preprocessing`): HU clipped to the checkpoint's
window and scaled to 0..1, one channel; a slice whose size differs from the checkpoint's
``input_size`` is resized (bilinear) to ``input_size`` x ``input_size`` and the logits are resized
back to the slice before the sigmoid.

Device and precision are chosen automatically and can be overridden:

* CUDA (when available): channels_last + autocast bf16 (fp16 where the GPU lacks bf16).
* CPU: channels_last + bf16 autocast when oneDNN reports native bf16 support *and* a one-time
  self-check on the first slice shows bf16 and fp32 masks agree on at least 99.9 % of pixels;
  channels_last fp32 otherwise (CPUs without native bf16 emulate it, several times slower).
  fp16 on CPU is refused.

On every device BatchNorm layers are folded into the convolutions before them (``torch.fx``),
which saves a pass over memory per layer without changing the function. The self-check and the
reason for the precision in use are reported by :meth:`ModelProposer.describe`.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ptx_annotator.atomic import file_sha256
from ptx_annotator.errors import CheckpointError, PtxError
from ptx_annotator.proposers.postprocess import PostprocessParams, postprocess_mask
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit
from ptx_annotator.proposers.contract import SliceResult, finish_after_last_slice, slice_order
from ptx_annotator.volume import Volume

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda")
#: What :meth:`ModelProposer.finish_volume` does, recorded with every proposal.
VOLUME_POSTPROCESS = "3D components below min_component_mm3 dropped after all slices"
#: Share of first-slice pixels on which bf16 and fp32 masks must agree for auto bf16 on CPU.
BF16_MIN_AGREEMENT = 0.999


def cpu_supports_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX), not by emulation."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str | None = None) -> str:
    """``'cuda'`` when available and not overridden, else ``'cpu'``; a refused choice is a PtxError."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device).lower()
    if device not in DEVICES:
        raise PtxError(f"Device '{device}' is not one of {', '.join(DEVICES)}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise PtxError("Device 'cuda' was asked for but PyTorch sees no CUDA GPU here; use --device cpu.")
    return device


def resolve_precision(device: str, precision: str | None = None) -> tuple[str, str, bool]:
    """``(precision, reason, needs_bf16_self_check)`` for ``device``; fp16 on CPU is refused."""
    import torch

    if precision is not None:
        precision = str(precision).lower()
        if precision not in PRECISIONS:
            raise PtxError(f"Precision '{precision}' is not one of {', '.join(PRECISIONS)}.")
        if device == "cpu" and precision == "fp16":
            raise PtxError("Precision fp16 is not supported on the CPU; use --precision bf16 or fp32 "
                           "(or --device cuda on a machine with a GPU).")
        return precision, "requested", False
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: CUDA with bf16", False
        return "fp16", "auto: CUDA without bf16", False
    if cpu_supports_bf16():
        return "bf16", "auto: CPU has native bf16; pending first-slice agreement check", True
    return "fp32", "auto: CPU has no native bf16 (it would be emulated and slower)", False


class ModelProposer:
    """A checkpointed U-Net as a :class:`~ptx_annotator.proposers.contract.Proposer`.

    Parameters
    ----------
    model : torch.nn.Module
        The U-Net (1 input channel, 1 class, logits out).
    meta : CheckpointMeta
        Its metadata (HU window, input size, threshold, modality).
    device, precision : str, optional
        Overrides of the automatic choice ('cpu' | 'cuda'; 'fp32' | 'bf16' | 'fp16').
    postprocess : PostprocessParams, optional
        Defaults to the checkpoint's threshold and the module defaults.
    batch_size : int, optional
        Slices per forward pass after the first one (CPU 2, CUDA 8).
    fuse_batchnorm : bool
        Fold each BatchNorm into the convolution before it (``torch.fx``; the module is kept as it
        is when tracing fails). Same function, fewer passes over memory.
    """

    def __init__(self, model, meta, *, device: str | None = None, precision: str | None = None,
                 postprocess: PostprocessParams | None = None, batch_size: int | None = None,
                 name: str | None = None, sha256: str | None = None, path=None, fuse_batchnorm: bool = True):
        import torch

        if int(meta.in_channels) != 1 or int(meta.classes) != 1:
            raise CheckpointError(f"Checkpoint '{name or meta.name}' has {meta.in_channels} input channel(s) and "
                                  f"{meta.classes} class(es); the CT engine needs a 1-channel, 1-class U-Net.")
        if str(meta.modality).upper() != "CT":
            raise CheckpointError(f"Checkpoint '{name or meta.name}' is a {meta.modality} model, not a CT model; "
                                  "use it with the X-ray demo.")
        self.meta = meta
        self.device = resolve_device(device)
        self.precision, self.precision_reason, self._bf16_check_pending = resolve_precision(self.device, precision)
        self.postprocess = postprocess or PostprocessParams(threshold=float(meta.threshold))
        self.batch_size = max(1, int(batch_size or (2 if self.device == "cpu" else 8)))
        self.name = name or meta.name or f"{meta.architecture}-{meta.encoder}"
        self.sha256 = sha256
        self.path = str(path) if path is not None else None
        self.model, self.fused = _prepare_model(model.eval(), fuse_batchnorm)
        self.model = self.model.to(self.device).to(memory_format=torch.channels_last)
        self.bf16_agreement: float | None = None
        suffix = f"@{sha256[:8]}" if sha256 else ""
        self.source_id = f"checkpoint:{self.name}{suffix}" if path is not None else f"model:{self.name}{suffix}"

    @classmethod
    def from_checkpoint(cls, path, device: str | None = None, precision: str | None = None,
                        threshold: float | None = None, min_component_mm2: float | None = None,
                        min_component_mm3: float | None = None, fill_holes: bool | None = None,
                        drop_outside_air: bool | None = None, batch_size: int | None = None,
                        fuse_batchnorm: bool = True) -> "ModelProposer":
        """Load a ``.safetensors`` checkpoint (see :func:`ptx_annotator.model.load_checkpoint`)."""
        from ptx_annotator.model import load_checkpoint

        path = Path(path)
        model, meta = load_checkpoint(path, device="cpu")
        params = PostprocessParams(threshold=float(meta.threshold if threshold is None else threshold))
        for key, value in (("min_component_mm2", min_component_mm2), ("min_component_mm3", min_component_mm3),
                           ("fill_holes", fill_holes), ("drop_outside_air", drop_outside_air)):
            if value is not None:
                setattr(params, key, value)
        PostprocessParams(**params.__dict__)  # validate the overrides
        return cls(model, meta, device=device, precision=precision, postprocess=params, batch_size=batch_size,
                   name=meta.name or path.name.split(".")[0], sha256=file_sha256(path), path=path,
                   fuse_batchnorm=fuse_batchnorm)

    # -- Proposer protocol -----------------------------------------------------------------
    def describe(self) -> dict:
        meta = self.meta
        return {
            "kind": "model",
            "checkpoint": {
                "name": self.name, "path": self.path, "sha256": self.sha256,
                "architecture": meta.architecture, "encoder": meta.encoder, "input_size": meta.input_size,
                "hu_window": list(meta.hu_window) if meta.hu_window is not None else None,
                "threshold": meta.threshold, "modality": meta.modality, "created": meta.created,
                "metrics": dict(meta.metrics or {}),
            },
            "device": self.device,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "bf16_agreement": self.bf16_agreement,
            "batch_size": self.batch_size,
            "batchnorm_folded": self.fused,
            "postprocess": self.postprocess.to_json(),
            "volume_postprocess": VOLUME_POSTPROCESS,
        }

    def iter_slices(self, volume: Volume, first_slice: int | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> Iterator[SliceResult]:
        """Yield one :class:`SliceResult` per slice, ``first_slice`` first; stop when cancelled.

        After the last slice, the slices the 3D clean-up (:meth:`finish_volume`) changed come again
        (``revised=True``): the generator is the whole proposal.
        """
        slices = self._slices(volume, first_slice, should_cancel)
        return finish_after_last_slice(slices, volume, self.finish_volume, should_cancel)

    def _slices(self, volume: Volume, first_slice: int | None, should_cancel) -> Iterator[SliceResult]:
        n_slices = volume.shape[0]
        order = slice_order(n_slices, first_slice)
        batches = [order[:1]] + [order[i:i + self.batch_size] for i in range(1, n_slices, self.batch_size)]
        spacing_yx = tuple(volume.spacing[1:])
        done = 0
        for batch in filter(None, batches):
            if should_cancel is not None and should_cancel():
                return
            probabilities = self.predict_probabilities(volume.hu[batch])
            for index, probability in zip(batch, probabilities):
                if should_cancel is not None and should_cancel():
                    return
                done += 1
                mask = self.postprocess.apply_slice(probability, spacing_yx, hu=volume.hu[index])
                yield SliceResult(index=index, mask=mask, probability=probability, done=done, total=n_slices)

    def finish_volume(self, mask: np.ndarray, volume: Volume) -> np.ndarray:
        """The 3D clean-up of the assembled mask, run at the end of :meth:`iter_slices`."""
        return self.postprocess_volume(mask, volume.spacing)

    def postprocess_volume(self, mask: np.ndarray, spacing_zyx) -> np.ndarray:
        """The 3D clean-up of an assembled mask: drop components below ``min_component_mm3``."""
        return postprocess_mask(mask, spacing_zyx, min_component_mm3=self.postprocess.min_component_mm3,
                                fill_holes=False)

    # -- the forward pass --------------------------------------------------------------------
    def predict_probabilities(self, hu_slices: np.ndarray) -> np.ndarray:
        """Sigmoid probabilities, float32 ``(n, y, x)``, for HU slices ``(n, y, x)`` (or one ``(y, x)``)."""
        hu_slices = np.asarray(hu_slices)
        if hu_slices.ndim == 2:
            return self.predict_probabilities(hu_slices[None])[0]
        window = self.meta.hu_window if self.meta.hu_window is not None else LUNG_WINDOW_HU
        unit = hu_to_unit(hu_slices, window)
        if self._bf16_check_pending:
            return self._bf16_self_check(unit)
        return self._forward(unit, self.precision)

    def _bf16_self_check(self, unit: np.ndarray) -> np.ndarray:
        """Run the first batch in fp32 and bf16; keep bf16 only if the masks agree well enough."""
        reference = self._forward(unit, "fp32")
        candidate = self._forward(unit, "bf16")
        threshold = self.postprocess.threshold
        agreement = float(np.mean((reference >= threshold) == (candidate >= threshold)))
        self.bf16_agreement = agreement
        self._bf16_check_pending = False
        if agreement >= BF16_MIN_AGREEMENT:
            self.precision, self.precision_reason = "bf16", f"auto: CPU bf16, first-slice mask agreement {agreement:.5f}"
        else:
            self.precision = "fp32"
            self.precision_reason = (f"auto: bf16 masks agreed on only {agreement:.5f} of the first slice "
                                     f"(< {BF16_MIN_AGREEMENT}); fp32 kept")
        return reference

    def _forward(self, unit: np.ndarray, precision: str) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        height, width = unit.shape[-2:]
        size = int(self.meta.input_size)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32)).unsqueeze(1)
            resized = (height, width) != (size, size)
            if resized:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with _autocast(self.device, precision):
                logits = self.model(x)
            logits = logits.float()
            if resized:
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            return torch.sigmoid(logits)[:, 0].cpu().numpy().astype(np.float32, copy=False)


def _prepare_model(model, fuse_batchnorm: bool):
    """``(module, folded)``: the model with BatchNorm folded into convolutions where tracing allows."""
    if not fuse_batchnorm:
        return model, False
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(model), True
    except Exception:  # noqa: BLE001 - an untraceable encoder simply runs unfused
        return model, False


def _autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


def volume_probabilities(proposer: ModelProposer, volume: Volume, first_slice: int | None = None) -> np.ndarray:
    """All slices' probabilities as one float32 ``(z, y, x)`` array (for tests and scripts)."""
    out = np.zeros(volume.shape, dtype=np.float32)
    for result in proposer.iter_slices(volume, first_slice):
        if not result.revised:
            out[result.index] = result.probability
    return out
