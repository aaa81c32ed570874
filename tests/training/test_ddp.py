"""`ptx-annotate train` under torchrun: 2 CPU processes, gloo, DistributedDataParallel."""

import json
import os
import subprocess
import sys

import pytest


def test_two_process_ddp_trains_and_only_rank0_writes(tiny_pairs, tmp_path):
    images, masks = tiny_pairs
    registry, out = tmp_path / "models", tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "ptx_annotator", "train", "--images", *map(str, images), "--masks", *map(str, masks),
               "--registry", str(registry), "--out", str(out), "--fresh", "--epochs", "1", "--size", "64",
               "--encoder", "resnet34", "--device", "cpu", "--batch-size", "4", "--threads", "1"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun did not finish: {exc.stderr}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("v0001:") == 1  # rank 1 trains but prints and writes nothing
    assert "DistributedDataParallel over 2 processes" in done.stdout
    payload = json.loads((registry / "registry.json").read_text())
    assert [v["version"] for v in payload["versions"]] == ["v0001"]
    assert payload["versions"][0]["world_size"] == 2 and payload["active"] == "v0001"
    assert out.is_file() and not list(tmp_path.glob("**/.tmp-*"))
