"""Checkpoints: the round trip, and every way a bad file is refused (never unpickled)."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from ptx_annotator.errors import CheckpointError  # noqa: E402
from ptx_annotator.model import (  # noqa: E402
    METADATA_KEY,
    CheckpointMeta,
    build_model,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded resnet34 U-Net (the smallest encoder offered) saved as a 64 px checkpoint."""
    torch.manual_seed(0)
    model = build_model("resnet34").eval()
    meta = CheckpointMeta(encoder="resnet34", input_size=64, threshold=0.4, name="tiny",
                          provenance={"test": "round trip"}, metrics={"dice": 0.5})
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", meta)
    return model, meta, path


def _write_raw(path: Path, metadata: dict | None) -> Path:
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


def test_round_trip_keeps_weights_and_metadata(tiny):
    model, meta, path = tiny
    read = read_checkpoint_meta(path)
    assert (read.encoder, read.input_size, read.threshold, read.name) == ("resnet34", 64, 0.4, "tiny")
    assert read.hu_window == tuple(meta.hu_window) and read.metrics == {"dice": 0.5}
    loaded, loaded_meta = load_checkpoint(path)
    assert loaded_meta.created == meta.created and not loaded.training
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


def test_missing_file_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_missing_metadata_key_refused(tmp_path, tiny):
    payload = tiny[1].to_json()
    del payload["encoder"]
    path = _write_raw(tmp_path / "m.safetensors", {METADATA_KEY: json.dumps(payload)})
    with pytest.raises(CheckpointError, match="lacks encoder"):
        load_checkpoint(path)


def test_weights_without_metadata_refused(tmp_path):
    path = _write_raw(tmp_path / "bare.safetensors", None)
    with pytest.raises(CheckpointError, match="no 'ptx_annotator' metadata"):
        read_checkpoint_meta(path)


def test_metadata_not_json_refused(tmp_path):
    path = _write_raw(tmp_path / "j.safetensors", {METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint_meta(path)


@pytest.mark.parametrize("field,value,message", [
    ("encoder", "resnet9000", "encoder 'resnet9000'"),
    ("architecture", "FPN", "architecture 'FPN'"),
    ("input_size", 100, "multiple of 32"),
    ("threshold", 1.5, "threshold must lie"),
    ("hu_window", [100, -100], "malformed"),
])
def test_wrong_metadata_values_refused(tmp_path, tiny, field, value, message):
    payload = tiny[1].to_json()
    payload[field] = value
    path = _write_raw(tmp_path / "v.safetensors", {METADATA_KEY: json.dumps(payload)})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_weights_refused(tmp_path, tiny):
    data = tiny[2].read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|damaged|corrupt"):
        load_checkpoint(path)


def test_corrupt_header_refused(tmp_path, tiny):
    data = bytearray(tiny[2].read_bytes()[:4096])
    data[8:40] = b"\x00garbage-garbage-garbage-garbage"
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_shape_mismatch_refused(tmp_path, tiny):
    """resnet34 weights under resnet50 metadata: named tensors of the wrong shape / missing."""
    model, meta, _ = tiny
    wrong = CheckpointMeta(**{**meta.__dict__, "encoder": "resnet50"})
    path = save_checkpoint(model, tmp_path / "mismatch.safetensors", wrong)
    with pytest.raises(CheckpointError, match="do not fit a Unet-resnet50") as info:
        load_checkpoint(path)
    assert "wrong shape" in str(info.value) or "missing" in str(info.value)


class _Booby:
    """Unpickling this would create ``marker``: proof that nothing is unpickled if it stays absent."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_file_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled.flag"
    for name in ("model.pt", "model.safetensors"):
        path = tmp_path / name
        torch.save({"state_dict": {"w": torch.zeros(2)}, "trap": _Booby(marker)}, str(path))
        with pytest.raises(CheckpointError, match="never unpickles"):
            load_checkpoint(path)
    assert not marker.exists()
