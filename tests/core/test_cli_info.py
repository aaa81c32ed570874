"""`ptx-annotate info`: the listing on real data, and bad input as one readable line."""

import json
import shutil
import subprocess
import sys

import pydicom
import pytest
from pydicom.uid import RLELossless

from shared_data import NRRD_CT, TCIA_CT, need
from ptx_annotator.cli import main


def test_info_json_on_tcia(capsys):
    rc = main(["info", str(need(TCIA_CT)), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    (series,) = report["series"]
    assert series["n_slices"] == 64 and series["shape"] == [64, 512, 512]
    assert series["spacing_mm"] == pytest.approx([5.0, 0.8418, 0.8418], abs=1e-3)
    assert (series["hu_min"], series["hu_max"]) == (-1024, 2976)
    assert series["modality"] == "CT" and series["orientation"] == "LPS"
    assert series["series_uid"].startswith("1.") and series["warnings"] == []
    assert "Explicit VR Little Endian" in series["transfer_syntax"] or "Implicit" in series["transfer_syntax"]


def test_info_text_on_nrrd(capsys):
    assert main(["info", str(need(NRRD_CT))]) == 0
    out = capsys.readouterr().out
    assert "48 slices" in out and "512x512 px" in out


def test_info_lists_every_series_with_warnings(tmp_path, capsys):
    src = need(TCIA_CT)
    for name in ("1-01.dcm", "1-02.dcm", "1-05.dcm"):
        shutil.copyfile(src / name, tmp_path / name)
    (tmp_path / "sub").mkdir()
    ds = pydicom.dcmread(src / "1-10.dcm")
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "PT"
    ds.save_as(tmp_path / "sub" / "pet")
    assert main(["info", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_n = sorted(report["series"], key=lambda s: s["n_slices"])
    assert [s["n_slices"] for s in by_n] == [1, 3]
    assert any("single slice" in w for w in by_n[0]["warnings"])
    assert any("not CT" in w for w in by_n[0]["warnings"])
    assert any("Missing slices" in w for w in by_n[1]["warnings"])


def test_rle_compressed_series_reads_like_the_original(tmp_path, tcia_volume):
    src = need(TCIA_CT)
    for path in sorted(src.glob("*.dcm"))[:4]:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(tmp_path / path.name)
    from ptx_annotator.io import load_series

    vol = load_series(tmp_path)
    assert "RLE" in vol.transfer_syntax
    z_first = (vol.affine @ [0, 0, 0, 1])[2]
    z_all = [(tcia_volume.affine @ [k, 0, 0, 1])[2] for k in range(64)]
    index = min(range(64), key=lambda k: abs(z_all[k] - z_first))
    assert abs(z_all[index] - z_first) < 1e-3
    assert (vol.hu[0] == tcia_volume.hu[index]).all()


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "is empty"),
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "x.txt").write_text("hi") and p, "No DICOM image series"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, make, message):
    target = make(tmp_path)
    rc = main(["info", str(target)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_console_script_runs_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ptx_annotator", "info", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "is empty" in proc.stderr
