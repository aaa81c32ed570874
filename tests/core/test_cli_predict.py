"""`ptx-annotate predict` on the real TCIA series folder and on a NIfTI made from it."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ptx_annotator.cli import main  # noqa: E402
from ptx_annotator.proposers.inference import ModelProposer  # noqa: E402
from ptx_annotator.io import load_mask_nifti, load_volume  # noqa: E402
from ptx_annotator.io.volume_files import nifti_affine_from_lps  # noqa: E402
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit  # noqa: E402
from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint  # noqa: E402
from ptx_annotator.proposers.contract import propose_volume  # noqa: E402
from ptx_annotator.review.states import ACCEPTED, EDITED, PROPOSED, UNREVIEWED  # noqa: E402
from ptx_annotator.review.store import AnnotationStore  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tcia_volume, tmp_path_factory):
    """A seeded resnet34 U-Net at 64 px; the head's bias is shifted so that about the top 5 % of a
    middle slice's pixels pass 0.5 (a sparse, non-empty mask rather than noise around 0.5)."""
    torch.manual_seed(0)
    model = build_model("resnet34").eval()
    x = torch.from_numpy(hu_to_unit(tcia_volume.hu[32, ::8, ::8], LUNG_WINDOW_HU))[None, None]
    with torch.no_grad():
        logits = model(x)
        model.segmentation_head[0].bias -= torch.quantile(logits.flatten(), 0.95)
    meta = CheckpointMeta(encoder="resnet34", input_size=64, threshold=0.5, name="tiny-cli")
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny-cli.safetensors", meta)


@pytest.fixture(scope="module")
def ct_nifti(tcia_volume, tmp_path_factory):
    """The middle 12 slices of the TCIA series written as an int16 NIfTI in the CT's geometry."""
    import nibabel as nib

    affine = tcia_volume.affine.copy()
    affine[:3, 3] = tcia_volume.affine[:3, :3] @ np.array([26.0, 0.0, 0.0]) + tcia_volume.affine[:3, 3]
    path = tmp_path_factory.mktemp("nifti") / "ct.nii.gz"
    data = np.asarray(tcia_volume.hu[26:38], dtype=np.int16).transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(data, nifti_affine_from_lps(affine)), str(path))
    return path


def _expected_mask(checkpoint, volume):
    proposer = ModelProposer.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    proposal = propose_volume(proposer, volume, keep_probabilities=False)
    return proposer.postprocess_volume(proposal.mask, volume.spacing), proposer.source_id


def test_predict_series_folder_into_store_and_nifti(tcia_dir, tcia_volume, checkpoint, tmp_path, capsys):
    store_dir, out = tmp_path / "store", tmp_path / "pred.nii.gz"
    # a person already accepted slice 30 (with a hand-drawn square) and edited slice 31 (empty)
    store = AnnotationStore(store_dir)
    annotation = store.load_or_empty(tcia_volume, "dr_a")
    annotation.mask[30, 200:220, 100:120] = 1
    annotation.review.mark(30, ACCEPTED, "dr_a")
    annotation.review.mark(31, EDITED, "dr_a")
    store.save(annotation)
    store.close()

    rc = main(["predict", str(tcia_dir), "--checkpoint", str(checkpoint), "--annotator", "dr_a",
               "--store", str(store_dir), "--out", str(out), "--device", "cpu", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "64 slices in" in captured.out and "slices/s" in captured.out and "mL" in captured.out

    expected, source = _expected_mask(checkpoint, tcia_volume)
    assert 0 < expected.sum() < expected.size // 4
    written, affine = load_mask_nifti(out)
    assert np.array_equal(written, expected)
    np.testing.assert_allclose(affine, tcia_volume.affine, atol=1e-4)
    millilitres = float(captured.out.split("predicted volume ")[1].split(" mL")[0])
    assert millilitres == pytest.approx(expected.sum() * tcia_volume.voxel_volume_ml, abs=0.01)

    stored = AnnotationStore(store_dir).load(tcia_volume.key, "dr_a", tcia_volume)
    states = stored.review.states()
    assert states[30] == ACCEPTED and states[31] == EDITED
    assert stored.mask[30].sum() == 400 and stored.mask[30, 210, 110] == 1 and stored.mask[31].sum() == 0
    others = [i for i in range(64) if i not in (30, 31)]
    assert all(states[i] == PROPOSED and stored.review[i].source == source for i in others)
    assert np.array_equal(stored.mask[others], expected[others])
    assert stored.proposals[source]["params"]["checkpoint"]["name"] == "tiny-cli"
    assert stored.proposals[source]["params"]["postprocess"]["threshold"] == 0.5


def test_predict_nifti_file_out_only_and_default_annotator(ct_nifti, checkpoint, tmp_path, capsys):
    volume = load_volume(ct_nifti)
    out, store_dir = tmp_path / "nifti-pred.nii.gz", tmp_path / "store"
    rc = main(["predict", str(ct_nifti), "--checkpoint", str(checkpoint), "--out", str(out),
               "--store", str(store_dir), "--precision", "fp32", "--threshold", "0.45"])
    assert rc == 0, capsys.readouterr().err
    written, affine = load_mask_nifti(out)
    assert written.shape == volume.shape == (12, 512, 512)
    np.testing.assert_allclose(affine, volume.affine, atol=1e-4)
    assert not store_dir.exists()  # --out alone: nothing stored

    rc = main(["predict", str(ct_nifti), "--checkpoint", str(checkpoint), "--store", str(store_dir),
               "--precision", "fp32", "--threshold", "0.45"])
    assert rc == 0, capsys.readouterr().err
    store = AnnotationStore(store_dir)
    assert store.annotators(volume.key) == ["model"]
    stored = store.load(volume.key, "model", volume)
    assert np.array_equal(stored.mask, written)
    assert np.array_equal(store.load_proposal(volume, "model"), written)  # the overlay napari shows
    assert set(stored.review.states()) == {PROPOSED}
    record = next(iter(stored.proposals.values()))
    assert json.loads(json.dumps(record))["params"]["postprocess"]["threshold"] == 0.45
    assert record["params"]["postprocess"]["drop_outside_air"] is True
    assert UNREVIEWED not in stored.review.states()

    kept = tmp_path / "kept.nii.gz"
    rc = main(["predict", str(ct_nifti), "--checkpoint", str(checkpoint), "--out", str(kept),
               "--precision", "fp32", "--threshold", "0.45", "--keep-outside-air"])
    assert rc == 0, capsys.readouterr().err
    with_outside, _ = load_mask_nifti(kept)
    assert np.all(with_outside >= written)  # the rule only ever removes
    from ptx_annotator.proposers.postprocess import inside_patient

    outside = ~np.stack([inside_patient(hu) for hu in volume.hu])
    assert not written[outside].any()


@pytest.mark.parametrize("extra,message", [
    (["--threshold", "0.3"], "--threshold applies to a model checkpoint"),
    (["--checkpoint", "missing.safetensors"], "does not exist"),
    (["--out", "mask.nrrd"], "must end in .nii.gz"),
    (["--keep-outside-air"], "--keep-outside-air applies to a model checkpoint"),
    (["--proposer", "combined"], "--proposer combined runs a U-Net: give its --checkpoint"),
    (["--proposer", "classical", "--checkpoint", "m.safetensors"], "--proposer classical uses no checkpoint"),
])
def test_predict_refusals_are_one_line(tcia_dir, tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["predict", str(tcia_dir), "--store", str(tmp_path / "s"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_predict_fp16_on_cpu_refused(tcia_dir, checkpoint, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; fp16 would run on it")
    rc = main(["predict", str(tcia_dir), "--checkpoint", str(checkpoint), "--store", str(tmp_path),
               "--device", "cpu", "--precision", "fp16"])
    assert rc == 2 and "fp16 is not supported on the CPU" in capsys.readouterr().err


def test_predict_classical_default(ct_nifti, tmp_path, capsys):
    pytest.importorskip("ptx_annotator.proposers.classical")
    out = tmp_path / "classical.nii.gz"
    rc = main(["predict", str(ct_nifti), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    written, _ = load_mask_nifti(out)
    assert written.shape == (12, 512, 512) and "classical" in captured.out


def test_predict_combined_keeps_the_model_mask_to_the_pleural_cavities(ct_nifti, checkpoint, tmp_path, capsys):
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.proposers.combined import pleural_region

    volume = load_volume(ct_nifti)
    masks = {}
    for kind in ("model", "combined"):
        out = tmp_path / f"{kind}.nii.gz"
        rc = main(["predict", str(ct_nifti), "--checkpoint", str(checkpoint), "--proposer", kind, "--out", str(out),
                   "--precision", "fp32", "--json"])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        masks[kind] = load_mask_nifti(out)[0] > 0
        assert json.loads(captured.out)["volume_ml"] == pytest.approx(
            masks[kind].sum() * volume.voxel_volume_ml, abs=0.01)  # reported to 0.01 mL
    region = pleural_region(segment_thorax(volume), volume.spacing)
    assert masks["model"].any() and not masks["combined"][~region].any()
    assert (masks["model"] & ~region).any()  # the tiny model marks outside the cavities: combined drops it
    assert not (masks["combined"] & ~masks["model"]).any()


@pytest.fixture(scope="module")
def simulated_right(tcia_volume):
    from ptx_annotator.synthetic.pneumothorax import simulate_pneumothorax

    return simulate_pneumothorax(tcia_volume, side="right", fraction=0.1, seed=1)


def test_predict_json_gives_the_case_level_answer(simulated_right, tcia_volume, tmp_path, capsys):
    from ptx_annotator.io.ct_writer import write_ct_nifti

    ct = write_ct_nifti(tcia_volume, simulated_right.volume.hu, tmp_path / "ptx.nii.gz")
    rc = main(["predict", str(ct), "--json", "--out", str(tmp_path / "mask.nii.gz")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    answer = json.loads(captured.out)  # standard output is the JSON object alone
    assert answer["pneumothorax"] is True and answer["sides"][0] == "right"
    assert answer["volume_right_ml"] > 0.9 * answer["volume_ml"]  # the side simulated carries the air
    assert answer["sides"] == [side for side in ("right", "left") if answer[f"volume_{side}_ml"] >= 0.1]
    assert abs(answer["volume_ml"] - simulated_right.volume_ml) < 0.2 * simulated_right.volume_ml
    assert answer["volume_ml"] == pytest.approx(answer["volume_right_ml"] + answer["volume_left_ml"], abs=0.02)
    assert 0.5 < answer["confidence"] <= 1.0 and answer["case"]["confidence"] == answer["confidence"]
    assert "slices in" in captured.err  # the human lines moved to standard error


def test_case_answer_sides_and_model_confidence(simulated_right, tcia_volume):
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.proposers.case import case_answer

    anatomy = segment_thorax(tcia_volume)
    truth = simulated_right.mask.astype(bool)
    from ptx_annotator.anatomy import left_coordinate

    left_mm = np.broadcast_to(left_coordinate(tcia_volume.affine, truth.shape), truth.shape)
    lateral = np.percentile(left_mm[anatomy.lung_left], 90)
    mirrored = anatomy.lung_left & (left_mm > lateral)  # a left "pneumothorax": the left lung's lateral tenth
    both = truth | mirrored
    probabilities = np.where(truth, 0.8, np.where(mirrored, 0.6, 0.05)).astype(np.float32)
    answer = case_answer(both, simulated_right.volume, probabilities=probabilities, anatomy=anatomy)
    assert answer["pneumothorax"] and answer["sides"] == ["right", "left"]
    assert answer["volume_right_ml"] == pytest.approx(simulated_right.volume_ml, rel=0.02)
    assert answer["confidence"] == pytest.approx(0.8, abs=0.01)  # the largest component is the right one

    empty = case_answer(np.zeros_like(truth), tcia_volume, probabilities=np.full(truth.shape, 0.3, np.float32),
                        anatomy=anatomy)
    assert empty["pneumothorax"] is False and empty["sides"] == [] and empty["volume_ml"] == 0.0
    assert empty["confidence"] == pytest.approx(0.7)
