"""The inference engine on small real CT slices: same numbers as a direct model call, order, cancel."""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ptx_annotator.proposers.inference as inference  # noqa: E402
from ptx_annotator.errors import CheckpointError, PtxError  # noqa: E402
from ptx_annotator.proposers.inference import ModelProposer, volume_probabilities  # noqa: E402
from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint  # noqa: E402
from ptx_annotator.proposers.postprocess import postprocess_slice  # noqa: E402
from ptx_annotator.preprocessing import hu_to_unit  # noqa: E402
from ptx_annotator.proposers import get_proposer, propose_volume, slice_order  # noqa: E402
from ptx_annotator.volume import Volume  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded resnet34 U-Net saved as a 64 px checkpoint, and the model itself."""
    torch.manual_seed(0)
    model = build_model("resnet34").eval()
    meta = CheckpointMeta(encoder="resnet34", input_size=64, threshold=0.5, name="tiny")
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", meta)
    return model, meta, path


@pytest.fixture(scope="module")
def proposer(tiny):
    """The checkpoint as an fp32 CPU proposer, shared by the tests that only read it."""
    return get_proposer(checkpoint=tiny[2], device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def small_ct(tcia_volume):
    """Eight real TCIA slices through the lungs, every 8th pixel: 8 x 64 x 64."""
    hu = np.ascontiguousarray(tcia_volume.hu[28:36, ::8, ::8])
    spacing = (tcia_volume.spacing[0], tcia_volume.spacing[1] * 8, tcia_volume.spacing[2] * 8)
    return Volume(hu=hu, spacing=spacing, affine=np.eye(4), series_uid="small", source="test")


def _direct(model, hu, window, size=None):
    x = torch.from_numpy(hu_to_unit(hu, window))[:, None]
    with torch.inference_mode():
        if size is None:
            return torch.sigmoid(model(x))[:, 0].numpy()
        small = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        logits = torch.nn.functional.interpolate(model(small), size=hu.shape[-2:], mode="bilinear",
                                                 align_corners=False)
        return torch.sigmoid(logits)[:, 0].numpy()


# The eager model itself differs by up to ~1.5e-5 in probability between a batch of 1 and a batch of
# 8 (float32 reduction order), and channels_last / BatchNorm folding are of the same order; 5e-5 is
# that float noise, while any preprocessing or orientation error moves probabilities by >1e-2.
FLOAT_NOISE = 5e-5


def test_fp32_engine_matches_direct_model_call(tiny, small_ct):
    model, meta, path = tiny
    proposer = ModelProposer.from_checkpoint(path, device="cpu", precision="fp32")
    probabilities = volume_probabilities(proposer, small_ct, first_slice=3)
    expected = _direct(model, small_ct.hu, meta.hu_window)
    assert probabilities.shape == small_ct.shape and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, atol=FLOAT_NOISE, rtol=0)
    assert probabilities.std() > 1e-3  # a real, varying output, not a constant
    decided = np.abs(expected - 0.5) > FLOAT_NOISE
    assert np.array_equal((probabilities >= 0.5)[decided], (expected >= 0.5)[decided])
    unfused = ModelProposer.from_checkpoint(path, device="cpu", precision="fp32", fuse_batchnorm=False)
    np.testing.assert_allclose(volume_probabilities(unfused, small_ct), expected, atol=FLOAT_NOISE, rtol=0)


def test_slices_of_another_size_are_resized_in_and_out(tiny, tcia_volume):
    model, meta, path = tiny
    hu = np.ascontiguousarray(tcia_volume.hu[30:32, ::4, ::4])  # 128 x 128 into a 64 px model
    volume = Volume(hu=hu, spacing=(5.0, 3.4, 3.4), affine=np.eye(4), series_uid="mid", source="test")
    proposer = ModelProposer.from_checkpoint(path, device="cpu", precision="fp32")
    probabilities = volume_probabilities(proposer, volume)
    assert probabilities.shape == (2, 128, 128)
    np.testing.assert_allclose(probabilities, _direct(model, hu, meta.hu_window, size=64), atol=FLOAT_NOISE, rtol=0)


def test_masks_are_the_postprocessed_probabilities(tiny, small_ct):
    proposer = ModelProposer.from_checkpoint(tiny[2], device="cpu", precision="fp32", threshold=0.45,
                                             min_component_mm2=30)
    results = list(proposer.iter_slices(small_ct))
    assert sum(int(r.mask.sum()) for r in results) > 0
    for result in results:
        expected = postprocess_slice(result.probability, small_ct.spacing[1:], threshold=0.45, min_component_mm2=30,
                                     hu=small_ct.hu[result.index])
        assert np.array_equal(result.mask, expected) and result.mask.dtype == np.uint8


def test_priority_slice_first_then_outwards_each_once(proposer, small_ct, monkeypatch):
    monkeypatch.setattr(proposer, "batch_size", 3)
    results = list(proposer.iter_slices(small_ct, first_slice=5))
    assert [r.index for r in results] == slice_order(8, 5)
    assert results[0].index == 5 and [r.done for r in results] == list(range(1, 9))
    assert all(r.total == 8 for r in results)


def test_cancellation_stops_between_slices(proposer, small_ct, monkeypatch):
    monkeypatch.setattr(proposer, "batch_size", 1)
    calls = []
    hook = proposer.model.register_forward_hook(lambda *args: calls.append(1))
    seen = []

    def should_cancel():
        return len(seen) >= 3

    proposal = propose_volume(proposer, small_ct, first_slice=0, should_cancel=should_cancel,
                              on_progress=lambda r: seen.append(r.index))
    hook.remove()
    assert seen == [0, 1, 2] and len(calls) == 3
    assert not proposal.completed and proposal.slices_done == [0, 1, 2]
    assert proposal.mask[3:].sum() == 0


def test_source_id_and_describe(tiny, proposer, small_ct):
    path = tiny[2]
    assert isinstance(proposer, ModelProposer)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert proposer.source_id == f"checkpoint:tiny@{sha[:8]}"
    info = json.loads(json.dumps(proposer.describe()))
    assert info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["checkpoint"]["encoder"] == "resnet34" and info["checkpoint"]["sha256"] == sha
    assert info["postprocess"]["threshold"] == 0.5
    proposal = propose_volume(proposer, small_ct)
    assert proposal.source == proposer.source_id and proposal.record()["params"]["device"] == "cpu"


def test_refused_device_and_precision(tiny):
    with pytest.raises(PtxError, match="fp16 is not supported on the CPU"):
        ModelProposer.from_checkpoint(tiny[2], device="cpu", precision="fp16")
    with pytest.raises(PtxError, match="not one of"):
        ModelProposer.from_checkpoint(tiny[2], device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PtxError, match="no CUDA GPU"):
            ModelProposer.from_checkpoint(tiny[2], device="cuda")
    with pytest.raises(CheckpointError, match="not a CT model"):
        ModelProposer(tiny[0], replace(tiny[1], modality="XR"), device="cpu")


def test_auto_precision_on_cpu(tiny, small_ct, monkeypatch):
    proposer = ModelProposer(tiny[0], tiny[1], device="cpu")
    if not inference.cpu_supports_bf16():
        assert proposer.precision == "fp32" and "no native bf16" in proposer.precision_reason
    # the bf16 self-check runs once, on the first slice, and decides by mask agreement
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: True)
    for minimum, expected in ((0.0, "bf16"), (1.01, "fp32")):
        monkeypatch.setattr(inference, "BF16_MIN_AGREEMENT", minimum)
        proposer = ModelProposer(tiny[0], tiny[1], device="cpu")
        first = proposer.predict_probabilities(small_ct.hu[:1])
        assert proposer.precision == expected and 0.9 < proposer.bf16_agreement <= 1.0
        np.testing.assert_allclose(first, _direct(tiny[0], small_ct.hu[:1], tiny[1].hu_window), atol=FLOAT_NOISE)
        assert not proposer._bf16_check_pending
