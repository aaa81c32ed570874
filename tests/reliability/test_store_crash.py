"""The store under kill -9, a second writer and a full disk.

* 30 writer processes are killed with SIGKILL at random moments while they save in a loop; after
  each kill the store must load, hold a version that was written, and have its mask and review in
  step (the mask's voxel count and slice 0's state both encode the same save number).
* A second writer (another process) is refused by name and pid, and nothing it tried lands.
* A write that fails with ENOSPC (patched: no small loop device or tmpfs is assumed to be
  mountable here) is reported in one line with what to do, and the store is left as it was.
"""

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ptx_annotator.cli import main
from ptx_annotator.review.store import AnnotationStore
from tests.reliability.crash_writer import small_volume, state_of, voxels
from tests.reliability.results import EXPECTED, RESULTS
from tests.reliability.world import store_snapshot

KILLS = 30
EXPECTED.update({"kill-9-loop", "second-writer-process", "full-disk-mask", "full-disk-review"})


def _check_in_step(store_root, volume):
    annotation = AnnotationStore(store_root).load(volume.key, "carol", volume)
    if annotation is None:
        return None
    k = annotation.extra["k"]
    assert int(annotation.mask.sum()) == voxels(k), "mask and review out of step"
    assert annotation.review[0].state == state_of(k), "mask and review out of step"
    return k


def test_kill_9_during_saves_never_loses_or_mixes_a_version(tmp_path):
    volume = small_volume()
    store_root, log = tmp_path / "store", tmp_path / "saved.log"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-m", "tests.reliability.crash_writer", str(store_root), str(log)]
    rng = random.Random(13)
    loaded, previous, inside = [], 0, 0
    for _ in range(KILLS):
        writer = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        time.sleep(rng.uniform(0.0, 0.25))  # somewhere inside one of the saves
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        lines = log.read_text().split("\n") if log.exists() else []
        done = [int(line.split()[1]) for line in lines if line.startswith("done")]
        started = [int(line.split()[1]) for line in lines if line.startswith("start")]
        inside += bool(lines) and [line for line in lines if line][-1].startswith("start")  # killed inside a save
        k = _check_in_step(store_root, volume)
        if k is not None:
            # the version found was written (a save was started for it) and nothing finished was lost:
            # it is the last finished save or a later one whose writer was killed after its commit point
            assert k in started and k >= max(previous, done[-1] if done else 0), (k, done[-2:], started[-2:])
            previous = k
        else:
            assert not done, "a finished save was lost"
        loaded.append(k)
    store = AnnotationStore(store_root)
    store.lock(volume.key, "carol")  # a new writer opens after the last kill: leftovers are cleaned
    folder = store.folder(volume.key, "carol")
    assert not list(folder.rglob(".tmp-*"))
    assert os.path.samefile(folder / "mask.nii.gz", folder / _committed_mask(folder))
    store.close()
    RESULTS["kill-9-loop"] = {"rc": 0, "expected": 0, "traceback": False, "fragment": True, "store_changed": False,
                              "refused": False, "line": f"{KILLS} kills, {inside} inside a save, loaded {loaded}"}
    print(f"kill -9 loop: {KILLS} kills, {inside} landed inside a save; versions loaded after each: {loaded}")
    assert inside >= KILLS // 2 and sum(k is not None for k in loaded) >= KILLS // 2  # kills hit saves past the first


def _committed_mask(folder):
    import json

    return json.loads((folder / "review.json").read_text())["mask_file"]


def test_a_second_writer_process_is_refused_by_pid(tmp_path, capsys, world):
    from tests.reliability.world import fresh_store

    store_root = fresh_store(tmp_path / "store", world.volume)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from ptx_annotator.review.store import AnnotationStore
        store = AnnotationStore({str(store_root)!r})
        store.lock({world.volume.key!r}, "alice")
        print("holding", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        before = store_snapshot(store_root)
        rc = main(["import", str(world.ct), str(world.root / "mask_ok.nii.gz"), "--annotator", "alice", "--replace",
                   "--store", str(store_root)])
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2 and f"process {holder.pid}" in err and "open for writing by another session" in err
    assert store_snapshot(store_root) == before
    RESULTS["second-writer-process"] = {"rc": rc, "expected": 2, "traceback": "Traceback" in err, "fragment": True,
                                        "store_changed": False, "refused": True, "line": err.strip()[:160]}


@pytest.mark.parametrize("where", ["mask", "review"])
def test_a_full_disk_is_reported_and_changes_nothing(where, tmp_path, capsys, monkeypatch, world):
    import ptx_annotator.review.store as store_module
    from tests.reliability.world import fresh_store

    store_root = fresh_store(tmp_path / "store", world.volume)
    before = store_snapshot(store_root)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(store_root / "x"))

    if where == "mask":
        monkeypatch.setattr(store_module, "save_mask_nifti", no_space)
    else:
        monkeypatch.setattr(store_module, "write_json_atomic", no_space)
    rc = main(["import", str(world.ct), str(world.root / "mask_label256.nii.gz"), "--annotator", "alice", "--replace",
               "--store", str(store_root)])
    err = capsys.readouterr().err
    assert rc == 2 and "no space left on the disk" in err.lower() and "free some space" in err
    after = store_snapshot(store_root)
    assert {k: v for k, v in after.items() if "/versions/" not in k or k in before} == before  # committed state kept
    loaded = AnnotationStore(store_root).load(world.volume.key, "alice", world.volume)
    assert loaded.version == 1 and int(loaded.mask.sum()) == 36
    assert not list(store_root.rglob(".tmp-*"))
    RESULTS[f"full-disk-{where}"] = {"rc": rc, "expected": 2, "traceback": "Traceback" in err, "fragment": True,
                                     "store_changed": False, "refused": True, "line": err.strip()[:160]}
