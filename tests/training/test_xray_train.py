"""train-xray end to end on the shared SIIM files (tiny), and its data pipeline."""

import json

import numpy as np
import pytest

from ptx_annotator.cli import main
from ptx_annotator.errors import PtxError
from ptx_annotator.model import load_checkpoint, read_checkpoint_meta
from ptx_annotator.training.xray import XrayMaskDataset, in_validation, select_images
from ptx_annotator.xray.io import load_xray
from ptx_annotator.xray.predict import predict_xray
from ptx_annotator.xray.preprocess import XrayPreprocessing
from ptx_annotator.xray.rle import read_rle_table
from tests.conftest import CXR_OTHER, SIIM_DIR, need

RLE_TABLE = SIIM_DIR / "siim-pneumothorax-train-rle.csv.gz"
POSITIVE_ID = "1.2.276.0.7230010.3.1.4.8323329.301.1517875162.280319"
NEGATIVE_ID = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"


@pytest.fixture(scope="module")
def table():
    return read_rle_table(need(RLE_TABLE))


@pytest.fixture
def siim_images(tmp_path):
    """The two shared SIIM DICOMs (one renamed, found by SOPInstanceUID) plus an NIH PNG not in the table."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / f"{POSITIVE_ID}.dcm").symlink_to(need(SIIM_DIR / f"{POSITIVE_ID}.dcm"))
    (folder / "sub" / "renamed.dcm").symlink_to(need(SIIM_DIR / f"{NEGATIVE_ID}.dcm"))
    (folder / "00000001_000.png").symlink_to(need(CXR_OTHER / "00000001_000.png"))
    return folder


def test_selection_undersamples_negatives_and_matches_by_uid(siim_images, table):
    both = select_images(siim_images, table, negative_ratio=1.0)
    assert {it.image_id for it in both.train} == {POSITIVE_ID, NEGATIVE_ID}
    assert both.positives == 1 and both.negatives_used == 1 and both.not_in_table == ["00000001_000.png"]
    assert both.validation_is_training  # 2 images: too few to hold any out, and it says so
    only_positive = select_images(siim_images, table, negative_ratio=0.0)
    assert [it.image_id for it in only_positive.train] == [POSITIVE_ID] and only_positive.negatives_available == 1


def test_validation_split_is_stable_per_image_id():
    ids = [f"1.2.3.{n}" for n in range(2000)]
    held = [i for i in ids if in_validation(i, seed=0, fraction=0.1)]
    assert held == [i for i in ids if in_validation(i, seed=0, fraction=0.1)]
    assert 150 < len(held) < 250
    assert held != [i for i in ids if in_validation(i, seed=1, fraction=0.1)]


def test_dataset_items_follow_the_trainer_contract(siim_images, table):
    selection = select_images(siim_images, table, negative_ratio=1.0)
    dataset = XrayMaskDataset(selection.train, XrayPreprocessing(size=128))
    by_id = {it.image_id: i for i, it in enumerate(dataset.items)}
    image, mask = dataset[by_id[POSITIVE_ID]]
    assert image.shape == mask.shape == (1, 128, 128)
    assert str(image.dtype) == str(mask.dtype) == "torch.float32"
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    expected = 10133 * (128 / 1024) ** 2
    assert abs(float(mask.sum()) - expected) < 0.15 * expected
    ys, xs = np.nonzero(mask[0].numpy())
    assert xs.max() < 64 and ys.mean() < 128 / 3  # right apical = upper left of the image
    assert float(dataset[by_id[NEGATIVE_ID]][1].sum()) == 0.0


def test_no_matching_images_is_a_clear_error(tmp_path, table):
    (tmp_path / "x.png").symlink_to(need(CXR_OTHER / "00000001_000.png"))
    with pytest.raises(PtxError, match="RLE table"):
        select_images(tmp_path, table)


def test_train_xray_cli_end_to_end(siim_images, tmp_path, capsys):
    out = tmp_path / "xray.safetensors"
    registry = tmp_path / "models"
    rc = main(["train-xray", "--images", str(siim_images), "--rle", str(need(RLE_TABLE)), "--size", "256",
               "--patches", "64", "--epochs", "1", "--batch-size", "2", "--encoder", "resnet34",
               "--out", str(out), "--registry", str(registry), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["epochs_run"] == 1 and summary["checkpoint"] == str(out)
    assert summary["data"]["positives"] == 1 and summary["data"]["negatives_used"] == 1
    meta = read_checkpoint_meta(out)
    assert meta.modality == "XR" and meta.hu_window is None and meta.input_size == 256
    assert meta.preprocessing["kind"] == "xray-clahe" and meta.preprocessing["size"] == 256
    assert meta.provenance["patches"] == 64 and meta.provenance["train_config"]["loss"] == "focal_dice"
    assert 0.0 <= meta.metrics["dice"] <= 1.0 and meta.metrics["n_images"] == 2
    index = json.loads((registry / "registry.json").read_text())
    assert index["active"] == "v0001" and index["versions"][0]["modality"] == "XR"
    model, meta = load_checkpoint(out)
    result = predict_xray(load_xray(SIIM_DIR / f"{POSITIVE_ID}.dcm"), model, meta)
    assert result["mask"].shape == (1024, 1024) and 0.0 <= result["max_probability"] <= 1.0


def test_train_xray_cli_refuses_bad_options(siim_images, capsys):
    assert main(["train-xray", "--images", str(siim_images), "--rle", str(need(RLE_TABLE)), "--size", "300"]) == 2
    assert "256 or 512" in capsys.readouterr().err
    assert main(["train-xray", "--images", str(siim_images), "--rle", str(need(RLE_TABLE)), "--patches", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
