"""U-Net models (segmentation-models-pytorch) and their checkpoints.

A checkpoint is one ``.safetensors`` file: the weights, plus a JSON metadata block stored in
the safetensors header under the key ``ptx_annotator``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ptx_annotator.atomic import atomic_path
from ptx_annotator.errors import CheckpointError
from ptx_annotator.preprocessing import LUNG_WINDOW_HU
from ptx_annotator.review.states import utc_now

METADATA_KEY = "ptx_annotator"
FORMAT_VERSION = 1

#: Encoder choices (the CT paper's ResNet-50 and the X-ray papers' comparison) -> smp encoder names.
ENCODERS = {
    "resnet50": "resnet50",
    "resnet34": "resnet34",
    "vgg19": "vgg19",
    "densenet121": "densenet121",
    "inceptionv3": "tu-inception_v3",
}
ARCHITECTURES = ("Unet",)
REQUIRED_KEYS = ("architecture", "encoder", "in_channels", "classes", "input_size", "threshold")
#: Largest model input side accepted from a checkpoint: 4x a CT slice's 512 px, the size of a full-resolution X-ray.
MAX_INPUT_SIZE = 2048


@dataclass
class CheckpointMeta:
    """What a model needs around its weights to be used and trusted."""

    architecture: str = "Unet"
    encoder: str = "resnet50"
    in_channels: int = 1
    classes: int = 1
    input_size: int = 512
    hu_window: tuple[float, float] | None = LUNG_WINDOW_HU
    threshold: float = 0.5
    modality: str = "CT"
    created: str = field(default_factory=utc_now)
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    name: str = ""

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["format"] = FORMAT_VERSION
        if self.hu_window is not None:
            payload["hu_window"] = [float(v) for v in self.hu_window]
        return payload

    @classmethod
    def from_json(cls, payload: dict, where: str = "checkpoint") -> "CheckpointMeta":
        missing = [key for key in REQUIRED_KEYS if key not in payload]
        if missing:
            raise CheckpointError(f"{where}: metadata lacks {', '.join(missing)}; it was not written by ptx-annotator "
                                  "or is damaged. Re-export it with 'ptx-annotate train'.")
        known = {k: payload[k] for k in cls.__dataclass_fields__ if k in payload}
        meta = cls(**known)
        if meta.architecture not in ARCHITECTURES:
            raise CheckpointError(f"{where}: architecture '{meta.architecture}' is not one of {', '.join(ARCHITECTURES)}.")
        if meta.encoder not in ENCODERS:
            raise CheckpointError(f"{where}: encoder '{meta.encoder}' is not one of {', '.join(ENCODERS)}.")
        try:
            meta.in_channels, meta.classes, meta.input_size = int(meta.in_channels), int(meta.classes), int(meta.input_size)
            meta.threshold = float(meta.threshold)
            if meta.hu_window is not None:
                low, high = (float(v) for v in meta.hu_window)
                if not high > low:
                    raise ValueError("empty HU window")
                meta.hu_window = (low, high)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: metadata has a malformed value ({exc}).") from exc
        if not 0.0 < meta.threshold < 1.0 or meta.input_size < 32 or meta.input_size % 32:
            raise CheckpointError(f"{where}: threshold must lie in (0, 1) and input_size be a multiple of 32 "
                                  f"(got {meta.threshold}, {meta.input_size}).")
        if meta.input_size > MAX_INPUT_SIZE or meta.in_channels < 1 or meta.classes < 1:
            raise CheckpointError(f"{where}: metadata claims input_size {meta.input_size} px, {meta.in_channels} input "
                                  f"channel(s) and {meta.classes} class(es); a checkpoint of this tool has input_size "
                                  f"<= {MAX_INPUT_SIZE} and at least one channel and class. It is damaged or not ours.")
        return meta


def build_model(encoder: str = "resnet50", in_channels: int = 1, classes: int = 1, architecture: str = "Unet"):
    """An untrained smp U-Net with no pretrained weights (nothing is downloaded)."""
    import segmentation_models_pytorch as smp

    if encoder not in ENCODERS:
        raise CheckpointError(f"Unknown encoder '{encoder}'; choose one of {', '.join(ENCODERS)}.")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"Unknown architecture '{architecture}'; choose one of {', '.join(ARCHITECTURES)}.")
    return smp.Unet(encoder_name=ENCODERS[encoder], encoder_weights=None, in_channels=in_channels, classes=classes)


def build_from_meta(meta: CheckpointMeta):
    return build_model(meta.encoder, meta.in_channels, meta.classes, meta.architecture)


def save_checkpoint(model, path, meta: CheckpointMeta) -> Path:
    """Write weights + metadata atomically as one safetensors file."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in _unwrap(model).state_dict().items()}
    path = Path(path)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta.to_json())})
    return path


def read_checkpoint_meta(path) -> CheckpointMeta:
    """The metadata of a checkpoint, validated, without loading its weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"'{path}' is not a readable safetensors checkpoint ({str(exc).splitlines()[0]}). "
                              "It is damaged or of another format; ptx-annotator never unpickles .pt/.pth files.") from exc
    if METADATA_KEY not in header:
        raise CheckpointError(f"'{path}' has no '{METADATA_KEY}' metadata: it holds weights only, without the "
                              "architecture, HU window and threshold needed to use them.")
    try:
        payload = json.loads(header[METADATA_KEY])
    except ValueError as exc:
        raise CheckpointError(f"'{path}': its metadata is not valid JSON ({exc}).") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"'{path}': its metadata is not a JSON object.")
    return CheckpointMeta.from_json(payload, where=f"'{path}'")


def load_checkpoint(path, device: str = "cpu"):
    """Return ``(model, meta)`` with the weights loaded strictly; every failure is a CheckpointError."""
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"The weights in '{path}' cannot be read ({str(exc).splitlines()[0]}); the file is "
                              "truncated or corrupt. Use another copy or retrain.") from exc
    model = build_from_meta(meta)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        detail = []
        if mismatched:
            k = mismatched[0]
            detail.append(f"{len(mismatched)} tensors of the wrong shape (e.g. {k}: {tuple(state[k].shape)} "
                          f"where {meta.encoder} U-Net has {tuple(expected[k].shape)})")
        if missing:
            detail.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise CheckpointError(f"The weights in '{path}' do not fit a {meta.architecture}-{meta.encoder} with "
                              f"{meta.in_channels} input channel(s): " + "; ".join(detail) + ".")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.to(device), meta


def _unwrap(model):
    return getattr(model, "module", model)
