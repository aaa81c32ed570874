"""Every hostile input of cases.py through the real command line, in-process.

Each row must end with its expected exit status and a message holding its fragment, never a
traceback; a refused command must leave the store byte for byte as it was (nothing lost or
silently changed). test_zz_figures prints the figures the reliability issue asks for.
"""

import json
import os
import shutil

import pytest

from ptx_annotator.cli import main
from ptx_annotator.review.store import AnnotationStore
from tests.reliability.cases import CASES, SPOILS
from tests.reliability.results import EXPECTED, RESULTS
from tests.reliability.world import fresh_store, spoil_review, store_snapshot

EXPECTED.update(c.id for c in CASES)


def run_cli(argv, capsys):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse refusals
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


def _strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case, world, tmp_path, capsys, monkeypatch):
    out_dir, store_root, holder = tmp_path / "out", tmp_path / "store", None
    out_dir.mkdir()
    setup = case.setup or ""
    if setup in ("store", "locked", "outfile+store") or setup.startswith("spoil:"):
        fresh_store(store_root, world.volume)
        if setup.startswith("spoil:"):
            spoil_review(store_root, world.volume, SPOILS[setup.split(":", 1)[1]])
        if setup == "locked":
            holder = AnnotationStore(store_root)
            holder.lock(world.volume.key, "alice")
    if setup in ("outfile", "outfile+store"):
        (out_dir / "taken").write_text("already here\n")
    if setup == "nodisplay":
        for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
            monkeypatch.delenv(name, raising=False)
    before = store_snapshot(store_root) if store_root.exists() else None
    values = {"w": str(world.root), "ct": str(world.ct), "dicom": str(world.dicom), "o": str(out_dir),
              "s": str(store_root)}
    argv = [word.format(**values) for word in case.argv]
    try:
        rc, out, err = run_cli(argv, capsys)
    finally:
        if holder is not None:
            holder.close()
    text = (out + err).lower()
    after = store_snapshot(store_root) if store_root.exists() else None
    changed = before is not None and case.exit != 0 and after != before
    RESULTS[case.id] = {"rc": rc, "expected": case.exit, "traceback": "traceback" in text,
                        "fragment": case.fragment.lower() in text, "store_changed": changed,
                        "refused": rc != 0, "line": (err.strip().splitlines() or [""])[-1][:160]}
    assert "traceback" not in text, out + err
    assert rc == case.exit, f"exit {rc}, expected {case.exit}: {out + err}"
    assert case.fragment.lower() in text, out + err
    assert not changed, "a refused command changed the store"
    if case.json_out:
        _strict_json(out)
    if rc != 0:
        assert err.strip().startswith(("ptx-annotate: error:", "usage:")), err
