"""Bootstrap: a first checkpoint from simulated pneumothoraces, its threshold chosen on validation."""

from __future__ import annotations

import numpy as np

from ptx_annotator.cli import main
from ptx_annotator.model import load_checkpoint
from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom
from ptx_annotator.training.evaluate import THRESHOLD_GRID, calibrated_threshold, choose_threshold


def test_choose_threshold_finds_the_operating_point():
    rng = np.random.default_rng(0)
    probabilities = rng.random((4, 32, 32)).astype(np.float32)
    truths = (probabilities >= 0.7).astype(np.uint8)
    choice = choose_threshold(probabilities, truths)
    assert choice["threshold"] == 0.7 and choice["dice"] == 1.0
    assert choice["dice_at_0.5"] < 0.8 and choice["grid"] == sorted(set(THRESHOLD_GRID))
    nothing = choose_threshold(probabilities, np.zeros_like(truths))
    assert nothing["threshold"] == 0.5  # no positive pixel: nothing to calibrate on


def test_calibration_falls_back_to_the_starting_threshold_without_positives():
    import torch

    from ptx_annotator.model import build_model

    class Negatives(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return torch.rand(1, 64, 64), torch.zeros(1, 64, 64)

    model = build_model("resnet34").eval()
    assert calibrated_threshold(model, Negatives(), "cpu", 64, fallback=0.8) == (0.8, None)
    assert calibrated_threshold(model, None, "cpu", 64, fallback=0.7) == (0.7, None)


def test_bootstrap_cli_writes_a_checkpoint_with_its_provenance(tmp_path, capsys):
    case = make_chest_phantom(shape=(12, 128, 128), spacing=(5.0, 2.6, 2.6), side="none", seed=1)
    ct, _ = save_phantom(case, tmp_path / "ct")
    out = tmp_path / "first.safetensors"
    rc = main(["bootstrap", ct, "--out", str(out), "--size", "64", "--cases", "3", "--epochs", "2",
               "--device", "cpu", "--seed", "3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "threshold" in captured.err and "chosen on the validation cases" in captured.err
    model, meta = load_checkpoint(out, device="cpu")
    assert meta.input_size == 64 and meta.encoder == "resnet34"
    provenance = meta.provenance
    assert provenance["kind"] == "bootstrap-simulated" and provenance["cases_per_volume"] == 3
    choice = provenance["threshold_choice"]
    assert meta.threshold == choice["threshold"] and meta.threshold in choice["grid"]
    assert choice["dice"] >= choice["dice_at_0.5"]
    assert set(meta.metrics) >= {"dice", "iou", "precision", "recall", "accuracy", "auc"}
    assert meta.metrics["threshold"] == meta.threshold  # the hold-out table is measured at it
    assert (tmp_path / "first-loss.png").stat().st_size > 0


def test_default_plan_spans_the_simulator_with_recorded_seeds():
    from ptx_annotator.synthetic.confounders import CONFOUNDERS
    from ptx_annotator.training.bootstrap import DEFAULT_CASES, SimulatedCase, roles
    from ptx_annotator.training.bootstrap_plan import SEED_FLOOR, plan_cases

    plan = plan_cases(DEFAULT_CASES, seed=0, ct_index=0, native_slice_mm=5.0)
    assert plan == plan_cases(DEFAULT_CASES, seed=0, ct_index=0, native_slice_mm=5.0)  # same seed, same plan
    cases = [SimulatedCase("p", k, spec, 0.0, 0.0, []) for k, spec in enumerate(plan)]
    train = [c.spec for c in cases if roles(cases)[("p", c.case)] == "train"]
    ptx = [p for spec in train for p in spec["pneumothorax"]]
    rims = [p for p in ptx if "rim_mm" in p]
    assert len(rims) >= 3 and all(1.0 <= p["rim_mm"] <= 3.0 for p in rims)
    assert {p["rim_extent"] for p in rims} == {"surface", "apex"}
    negatives = [spec for spec in train if not spec["pneumothorax"]]
    assert len(negatives) >= 3 and all(spec["confounders"] for spec in negatives)
    # the training cases alone hold every confounder kind as a negative (colon gas, chest tube ...)
    assert {c["kind"] for spec in negatives for c in spec["confounders"]} == set(CONFOUNDERS)
    assert any(len(spec["pneumothorax"]) == 2 for spec in train)  # bilateral
    assert any(p.get("fluid_share") for p in ptx) and any(p.get("adhesions") for p in ptx)
    assert any(spec["pneumothorax"] and spec["confounders"] for spec in train)  # beside a confounder
    assert len({p.get("location") for p in ptx}) >= 4
    reacquired = [spec["acquisition"] for spec in plan if spec.get("acquisition")]
    assert len(reacquired) == 8 and all(a.get("slice_mm", 8.0) > 5.0 for a in reacquired)  # never thinner
    seeds = [item["seed"] for spec in plan for key in ("pneumothorax", "confounders") for item in spec[key]]
    seeds += [a["seed"] for a in reacquired]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= SEED_FLOOR  # apart from the suite's seeds (< 100)
    other_ct = plan_cases(DEFAULT_CASES, seed=0, ct_index=1, native_slice_mm=5.0)
    assert other_ct[0]["pneumothorax"][0]["seed"] != plan[0]["pneumothorax"][0]["seed"]


def test_bootstrap_records_every_case_and_keeps_a_cpu_time_budget(tmp_path, monkeypatch):
    """A default-config CPU run: the budget sets max_seconds; a limit mid-epoch still yields a model."""
    import types

    from ptx_annotator.training import trainer
    from ptx_annotator.training.bootstrap import bootstrap
    from ptx_annotator.training.trainer import TrainConfig

    case = make_chest_phantom(shape=(12, 128, 128), spacing=(5.0, 2.6, 2.6), side="none", seed=2)
    ct, _ = save_phantom(case, tmp_path / "ct")
    out = tmp_path / "budget.safetensors"
    config = TrainConfig(device="cpu", input_size=64, epochs=50, batch_size=1, seed=5)
    # the training loop's clock runs 0.4 s per reading, so the 1 s left of the 2 s budget ends during
    # the third step of the first epoch, however fast this machine is (a real clock let a fast
    # machine finish the epoch inside the budget)
    ticks = iter(range(10**6))
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(monotonic=lambda: 0.4 * next(ticks),
                                                               perf_counter=trainer.time.perf_counter))
    outcome = bootstrap([ct], out, cases=3, config=config, budget_seconds=2.0)
    assert outcome.result.timed_out and outcome.result.epochs_run == 1
    assert "partial_steps" in outcome.result.history[-1]  # the steps of the cut epoch were validated
    _, meta = load_checkpoint(out, device="cpu")
    provenance = meta.provenance
    assert 0 < provenance["config"]["max_seconds"] <= 2.0
    records = provenance["cases"]
    assert [r["kind"] for r in records] == ["rim", "small", "negative"]
    assert [r["role"] for r in records] == ["train", "validation", "hold-out"]
    assert records[0]["spec"]["pneumothorax"][0]["seed"] >= provenance["seed_floor"]
    assert records[2]["positive_slices"] == 0 and records[2]["confounder_ml"] > 0  # hard negatives
    assert provenance["plan_summary"]["kinds"] == {"rim": 1, "small": 1, "negative": 1}


def test_combined_proposer_keeps_the_model_to_the_pleural_cavities(tmp_path):
    """Through get_proposer: the model's pixels outside the hemithoraces (and airways) are dropped."""
    from ptx_annotator.anatomy import segment_thorax
    from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint
    from ptx_annotator.proposers import get_proposer, propose_volume
    from ptx_annotator.proposers.combined import CombinedProposer, constrain, pleural_region
    from ptx_annotator.training.trainer import seed_everything

    case = make_chest_phantom(shape=(10, 128, 128), spacing=(5.0, 2.6, 2.6), side="right", fraction=0.3, seed=4)
    seed_everything(0)
    checkpoint = tmp_path / "random.safetensors"
    save_checkpoint(build_model("resnet34"), checkpoint, CheckpointMeta(encoder="resnet34", input_size=64))
    model = get_proposer(checkpoint=checkpoint, device="cpu", precision="fp32")
    probabilities = model.predict_probabilities(case.volume.hu[4:6])
    threshold = float(np.quantile(probabilities, 0.5))  # random weights: about half of every slice is "air"
    options = dict(device="cpu", precision="fp32", drop_outside_air=False, threshold=threshold)
    plain = propose_volume(get_proposer(checkpoint=checkpoint, **options), case.volume)
    combined_proposer = get_proposer(checkpoint=checkpoint, proposer="combined", **options)
    assert isinstance(combined_proposer, CombinedProposer)
    assert combined_proposer.meta.threshold == 0.5 and combined_proposer.postprocess.threshold == threshold
    combined = propose_volume(combined_proposer, case.volume)
    region = pleural_region(segment_thorax(case.volume), case.volume.spacing)
    assert (plain.mask.astype(bool) & ~region).sum() > 1000  # the bare model marks air everywhere
    assert not (combined.mask.astype(bool) & ~region).any()
    assert combined.mask.any() and combined.source.startswith("combined:checkpoint:")
    np.testing.assert_array_equal(combined.mask, constrain(plain.mask, region, combined_proposer, case.volume.spacing))
    assert combined.params["kind"] == "combined" and combined.params["checkpoint"]["input_size"] == 64


def test_thread_choice_is_timed_and_leaves_the_model_as_it_was():
    import torch

    from ptx_annotator.model import build_model
    from ptx_annotator.training.trainer import fastest_cpu_threads

    model = build_model("resnet34")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads_before = torch.get_num_threads()
    chosen, timings = fastest_cpu_threads(model, crop=32, batch_size=2, steps=1, candidates=(1, 2))
    assert chosen in (1, 2) and set(timings) == {1, 2} and timings[chosen] == min(timings.values())
    assert torch.get_num_threads() == threads_before
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm stats too
