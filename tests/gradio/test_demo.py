"""The Gradio X-ray demo on a live local server, driven with gradio_client."""

import json
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint  # noqa: E402
from ptx_annotator.plugins.gradio.app import build_demo, close_demo, launch_demo  # noqa: E402
from ptx_annotator.xray.preprocess import XrayPreprocessing  # noqa: E402
from tests.conftest import CXR_OTHER, SIIM_DIR, need  # noqa: E402

POSITIVE = SIIM_DIR / "1.2.276.0.7230010.3.1.4.8323329.301.1517875162.280319.dcm"
NEGATIVE = SIIM_DIR / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
MONOCHROME1_CR = CXR_OTHER / "pydicom_data_RG1_UNCI_CR_chest.dcm"
NIH_PNG = CXR_OTHER / "00000001_000.png"
#: The tiny model outputs this probability everywhere, so every expected number is exact.
CONSTANT_PROBABILITY = 0.8
UPLOAD_LIMIT = "8mb"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 64 px resnet34 U-Net whose head ignores the image and outputs probability 0.8."""
    torch.manual_seed(0)
    model = build_model("resnet34")
    head = model.segmentation_head[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(float(np.log(CONSTANT_PROBABILITY / (1 - CONSTANT_PROBABILITY))))
    meta = CheckpointMeta(encoder="resnet34", input_size=64, hu_window=None, threshold=0.5, modality="XR",
                          preprocessing=XrayPreprocessing(size=64).to_json(), name="tiny-constant")
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", meta)


def _serve(demo):
    urls = launch_demo(demo, host="127.0.0.1", port=_free_port(), max_file_size=UPLOAD_LIMIT, quiet=True)
    return urls


@pytest.fixture(scope="module")
def client(checkpoint):
    demo = build_demo(checkpoint)
    urls = _serve(demo)
    yield gradio_client.Client(urls["local_url"], verbose=False)
    close_demo(demo)


AUTH = ("reader", "s3cret-pass")


@pytest.fixture(scope="module")
def served_without_model():
    """The demo with no checkpoint, behind a user name and password."""
    demo = build_demo(None)
    urls = launch_demo(demo, host="127.0.0.1", port=_free_port(), auth=AUTH, quiet=True)
    yield urls["local_url"]
    close_demo(demo)


@pytest.fixture(scope="module")
def client_without_model(served_without_model):
    return gradio_client.Client(served_without_model, auth=AUTH, verbose=False)


def _predict(client, path, threshold=0.5):
    return client.predict(gradio_client.handle_file(str(path)), threshold, api_name="/predict")


def _identifiers(path):
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    return [str(ds.PatientName), str(ds.PatientID)]


def _assert_no_identifiers(outputs, identifiers):
    overlay, summary, numbers = outputs
    text = summary + json.dumps(numbers) + json.dumps(overlay)
    files = [overlay["image"]] + [a["image"] for a in overlay["annotations"]]
    blobs = b"".join(Path(f).read_bytes() for f in files)
    for identifier in identifiers:
        assert identifier not in text
        assert identifier.encode() not in blobs


def test_predict_is_a_named_endpoint(client):
    assert "/predict" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]


@pytest.mark.parametrize("path", [POSITIVE, NEGATIVE])
def test_siim_dicom_prediction(client, path):
    outputs = _predict(client, need(path))
    overlay, summary, numbers = outputs
    assert numbers["pneumothorax"] is True  # 0.8 >= top threshold 0.75 everywhere
    assert numbers["area_px"] == 1024 * 1024
    assert numbers["area_cm2"] == pytest.approx(1024 * 1024 * numbers["spacing_mm"][0] * numbers["spacing_mm"][1] / 100, abs=0.01)
    assert numbers["rule"] in summary and "YES" in summary and "cm²" in summary
    assert numbers["image"]["modality"] == "CR"
    picture = np.asarray(Image.open(overlay["image"]))
    assert picture.shape[:2] == (1024, 1024)
    assert overlay["annotations"][0]["label"] == "pneumothorax"
    mask = np.asarray(Image.open(overlay["annotations"][0]["image"]))
    assert mask.shape[:2] == (1024, 1024) and mask.max() > 0
    _assert_no_identifiers(outputs, _identifiers(path))


def test_threshold_slider_changes_the_mask_not_the_verdict(client):
    numbers = _predict(client, need(POSITIVE), threshold=0.9)[2]
    assert numbers["pneumothorax"] is True and numbers["area_px"] == 0 and numbers["threshold"] == 0.9


def test_nih_png_has_no_cm2(client):
    overlay, summary, numbers = _predict(client, need(NIH_PNG))
    assert numbers["image_shape"] == [512, 512]
    assert numbers["area_px"] == 512 * 512 and numbers["area_cm2"] is None
    assert "no cm²" in summary


def test_monochrome1_cr_with_invalid_spacing(client):
    outputs = _predict(client, need(MONOCHROME1_CR))
    overlay, summary, numbers = outputs
    assert numbers["image_shape"] == [1955, 1841] and numbers["spacing_mm"] is None
    assert numbers["image"]["photometric"] == "MONOCHROME1"
    assert max(np.asarray(Image.open(overlay["image"])).shape[:2]) == 1024  # shown downscaled
    _assert_no_identifiers(outputs, _identifiers(MONOCHROME1_CR))


def test_bad_files_give_readable_errors(client, tmp_path):
    text = tmp_path / "report.dcm"
    text.write_text("Findings: no pneumothorax.\n" * 10)
    with pytest.raises(Exception, match="no DICOM image"):
        _predict(client, text)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(need(NIH_PNG).read_bytes()[:5000])
    with pytest.raises(Exception, match="truncated or damaged"):
        _predict(client, truncated)
    too_big = tmp_path / "big.dcm"
    too_big.write_bytes(b"\0" * 9_000_000)
    with pytest.raises(Exception, match="maximum file size") as info:
        _predict(client, too_big)
    assert "Traceback" not in str(info.value)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(Exception, match="is empty"):
        _predict(client, empty)
    assert _predict(client, need(NIH_PNG))[2]["area_px"] == 512 * 512  # still serving


def test_without_a_checkpoint_it_starts_and_explains(client_without_model):
    overlay, summary, numbers = _predict(client_without_model, need(NEGATIVE))
    assert "ptx-annotate train-xray" in summary and "--checkpoint" in summary
    assert numbers["model"] is None and numbers["pneumothorax"] is None
    assert np.asarray(Image.open(overlay["image"])).shape[:2] == (1024, 1024)
    assert overlay["annotations"] == []


def test_without_a_checkpoint_one_message_and_no_dead_controls():
    demo = build_demo(None)
    shown = [block for block in demo.blocks.values() if getattr(block, "visible", True) is not False]
    texts = [str(getattr(block, "value", "")) for block in shown if isinstance(block, gr.Markdown)]
    assert sum("ptx-annotate train-xray" in text for text in texts) == 1  # said once, not twice
    assert not any(isinstance(block, (gr.Slider, gr.Button)) for block in shown)  # nothing to threshold or click


def test_auth_is_required_when_set(served_without_model):
    with pytest.raises(Exception):
        gradio_client.Client(served_without_model, auth=("reader", "wrong"), verbose=False)


def test_cli_share_offline_keeps_serving(checkpoint, monkeypatch, capsys):
    from ptx_annotator.cli import main

    served = {}

    def fake_block(self):
        served["url"] = self.local_url
        served["share_url"] = self.share_url

    monkeypatch.setattr(gr.Blocks, "block_thread", fake_block)
    rc = main(["xray-demo", "--checkpoint", str(checkpoint), "--share", "--port", str(_free_port())])
    out = capsys.readouterr().out
    assert rc == 0 and served["url"].startswith("http://127.0.0.1:")
    if served["share_url"]:  # a machine with internet got its link
        assert f"Public link: {served['share_url']}" in out
    else:
        assert "public share link could not be created" in out and served["url"] in out


def test_cli_rejects_bad_auth_and_ct_checkpoints(tmp_path, capsys):
    from ptx_annotator.cli import main

    assert main(["xray-demo", "--auth", "nopassword"]) == 2
    assert "USER:PASS" in capsys.readouterr().err
    ct = save_checkpoint(build_model("resnet34"), tmp_path / "ct.safetensors", CheckpointMeta(encoder="resnet34", input_size=64))
    assert main(["xray-demo", "--checkpoint", str(ct)]) == 2
    assert "not a chest X-ray model" in capsys.readouterr().err


def _canary_dicom(tmp_path, source, modality=None, **fields):
    ds = pydicom.dcmread(str(source))
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    if modality:
        ds.Modality = modality
    path = tmp_path / "canary.dcm"
    ds.save_as(str(path))
    return path


CANARY = "ZQXCANARY"


def test_phi_canary_never_leaves_and_no_upload_stays(checkpoint, tmp_path, monkeypatch):
    uploads = tmp_path / "gradio-tmp"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    demo = build_demo(checkpoint)
    urls = _serve(demo)
    try:
        client = gradio_client.Client(urls["local_url"], verbose=False)
        path = _canary_dicom(tmp_path, need(NEGATIVE), PatientName=f"{CANARY}^NAME", PatientID=f"{CANARY}-ID",
                             ViewPosition=f"PA {CANARY} note", BodyPartExamined=f"{CANARY} chest",
                             InstitutionName=f"{CANARY} hospital")
        outputs = _predict(client, path)
        _assert_no_identifiers(outputs, [CANARY])
        assert outputs[2]["image"]["view_position"] == "other" and outputs[2]["image"]["body_part"] == "other"
        left = [p for p in uploads.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
        assert left == []  # the upload was deleted right after the prediction
        assert _predict(client, need(POSITIVE))[2]["image"]["view_position"] == "PA"  # a defined term is shown
    finally:
        close_demo(demo)
    assert not [p for p in uploads.rglob("*.dcm")]  # nothing uploaded stays after shutdown


def test_a_ct_slice_is_refused(client, tmp_path):
    from tests.conftest import TCIA_CT

    ct_file = sorted(need(TCIA_CT).glob("*.dcm"))[30]
    with pytest.raises(Exception, match="not a chest X-ray"):
        _predict(client, ct_file)  # DICOM Modality CT
    ds = pydicom.dcmread(str(ct_file))
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    png = tmp_path / "ct_slice.png"
    Image.fromarray((np.clip((hu + 1350) / 1500, 0, 1) * 255).astype(np.uint8)).save(png)
    with pytest.raises(Exception, match="looks like an axial CT slice"):
        _predict(client, png)  # no header: refused by how it looks


def test_twenty_concurrent_calls_are_all_answered(client):
    from concurrent.futures import ThreadPoolExecutor

    path = gradio_client.handle_file(str(need(NIH_PNG)))
    jobs = [client.submit(path, 0.5, api_name="/predict") for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda job: job.result(timeout=300), jobs))
    assert len(answers) == 20 and all(a[2]["area_px"] == 512 * 512 for a in answers)


def test_huge_png_is_called_too_large_not_truncated(tmp_path):
    from ptx_annotator.xray.io import XrayImageError, load_xray

    path = tmp_path / "huge.png"
    Image.new("L", (20000, 20000)).save(path, optimize=False)
    with pytest.raises(XrayImageError, match="more pixels than a chest X-ray|pixel limit"):
        load_xray(path)
