"""DICOMweb studies as a STUDY argument, against a real Orthanc: open, cache, predict, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ._helpers import run_cli
from ptx_annotator.io import load_volume
from ptx_annotator.io.dicomweb import default_store_dir, parse_study_url
from ptx_annotator.io.dicomweb_cache import cached_ct, study_folder

TCIA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_info_retrieves_caches_by_sop_uid_and_matches_the_local_files(orthanc, workstation, capsys):
    status, out, err = run_cli(["info", orthanc.study_url(), "--json"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert [s["series_uid"] for s in report["series"]] == [orthanc.ct_series]
    assert report["series"][0]["n_slices"] == 64 and report["notes"] == []
    folder = cached_ct(parse_study_url(orthanc.study_url()))
    assert folder is not None and folder.name == orthanc.ct_series
    import pydicom

    names = sorted(p.stem for p in folder.glob("*.dcm"))
    assert names == sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in TCIA.glob("*.dcm"))
    remote, local = load_volume(folder), load_volume(TCIA)
    assert remote.key == local.key and np.array_equal(remote.hu, local.hu)
    assert np.allclose(remote.affine, local.affine)
    assert "retrieved" in err and orthanc.auth.split(":")[1] not in out + err


def test_reopening_a_cached_study_needs_no_network(orthanc, workstation, capsys, monkeypatch):
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("the cached study must open without any request")

    monkeypatch.setattr(requests.Session, "send", no_network)
    status, out, err = run_cli(["info", orthanc.study_url(), "--json"], capsys)
    assert status == 0, err
    assert json.loads(out)["series"][0]["n_slices"] == 64 and "retrieved" not in err


def test_predict_on_a_url_writes_the_store_in_the_user_folder(orthanc, workstation, capsys):
    status, out, err = run_cli(["predict", orthanc.study_url(), "--annotator", "model"], capsys)
    assert status == 0, err
    store = default_store_dir(orthanc.url)
    assert str(store).startswith(str(workstation)) and str(store) in out
    review = json.loads((store / orthanc.ct_series / "model" / "review.json").read_text())
    assert [s["state"] for s in review["slices"]] == ["proposed"] * 64
    assert (store / orthanc.ct_series / "model" / "proposal.nii.gz").is_file()
    cache = study_folder(parse_study_url(orthanc.study_url()))
    assert not list(cache.rglob(".ptx")), "the store must never be put into the cache"
    assert orthanc.auth not in (store / orthanc.ct_series / "model" / "review.json").read_text()


def one_error_line(err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_server_down_names_server_and_study_and_caches_nothing(orthanc, workstation, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/dicom-web/studies/{orthanc.ct_study}"
    status, out, err = run_cli(["info", url], capsys)
    assert status == 2
    one_error_line(err, f"127.0.0.1:{port}", orthanc.ct_study, "cannot reach")
    assert files_under(workstation) == []


def test_wrong_password_is_one_line_and_never_echoes_the_password(orthanc, workstation, capsys, monkeypatch):
    monkeypatch.setenv("PTX_DICOMWEB_AUTH", "reader:not-the-password")
    status, out, err = run_cli(["info", orthanc.study_url()], capsys)
    assert status == 2
    line = one_error_line(err, orthanc.url, orthanc.ct_study, "401")
    assert "not-the-password" not in line
    assert files_under(workstation) == []


def test_bearer_token_is_sent_as_authorization_header(orthanc, workstation, capsys, monkeypatch):
    monkeypatch.setenv("PTX_DICOMWEB_AUTH", "Bearer some-token")
    status, out, err = run_cli(["info", orthanc.study_url()], capsys)
    assert status == 2  # Orthanc knows only basic users: the token is refused, not ignored
    assert "some-token" not in err
    one_error_line(err, "credentials")


def test_tls_failure_is_one_line(orthanc, workstation, capsys):
    url = orthanc.study_url().replace("http://", "https://")  # Orthanc speaks plain HTTP on this port
    status, out, err = run_cli(["info", url], capsys)
    assert status == 2
    one_error_line(err, "TLS", orthanc.ct_study)
    assert files_under(workstation) == []


def test_unknown_study_uid(orthanc, workstation, capsys):
    status, out, err = run_cli(["info", orthanc.study_url("1.2.3.4.5.6.7.8.9")], capsys)
    assert status == 2
    one_error_line(err, orthanc.url, "1.2.3.4.5.6.7.8.9")
    assert files_under(workstation) == []


def test_study_without_ct(orthanc, workstation, capsys):
    if not orthanc.xray_study:
        pytest.skip("the shared chest X-ray is absent")
    status, out, err = run_cli(["info", orthanc.study_url(orthanc.xray_study)], capsys)
    assert status == 2
    one_error_line(err, orthanc.xray_study, "no CT series", "CR")
    assert files_under(workstation) == []


def test_interrupted_retrieval_leaves_nothing_half_cached(orthanc, workstation, capsys, monkeypatch):
    import requests

    real = requests.Response.iter_content

    def cut_off(self, chunk_size=1, decode_unicode=False):
        sent = 0
        for chunk in real(self, chunk_size=chunk_size, decode_unicode=decode_unicode):
            sent += len(chunk)
            if sent > 8_000_000:  # about a quarter of the 33 MB series
                raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
            yield chunk

    monkeypatch.setattr(requests.Response, "iter_content", cut_off)
    status, out, err = run_cli(["info", orthanc.study_url()], capsys)
    assert status == 2
    one_error_line(err, orthanc.url, orthanc.ct_study)
    assert [p for p in files_under(workstation) if p.suffix == ".dcm"] == []
    assert cached_ct(parse_study_url(orthanc.study_url())) is None
    monkeypatch.setattr(requests.Response, "iter_content", real)
    status, out, err = run_cli(["info", orthanc.study_url(), "--json"], capsys)
    assert status == 0 and json.loads(out)["series"][0]["n_slices"] == 64


def test_a_study_url_needs_studies_in_it(workstation, capsys):
    status, out, err = run_cli(["info", "http://127.0.0.1:1/dicom-web"], capsys)
    assert status == 2
    one_error_line(err, "not a DICOMweb study URL")


def test_every_study_argument_resolves_through_the_one_rule(orthanc, workstation, capsys, tmp_path):
    from ptx_annotator.cli import build_parser
    from ptx_annotator.commands._common import resolve_study_sources

    url = orthanc.study_url()
    folder = None
    for argv in (["train", url, "--annotator", "ann"], ["bootstrap", url, url, "--out", str(tmp_path / "m.st")],
                 ["quantify", url, "--annotator", "ann"], ["report", url, "--out", str(tmp_path / "r")],
                 ["export", url, "--annotator", "ann", "--out", str(tmp_path / "e.dcm")],
                 ["compare", url, "--annotators", "a", "b", "--out", str(tmp_path / "c")], ["models", url]):
        args = resolve_study_sources(build_parser().parse_args(argv))
        studies = args.studies if hasattr(args, "studies") else [getattr(args, "study", None) or args.path]
        assert all(not s.startswith("http") for s in studies), argv
        folder = folder or cached_ct(parse_study_url(url))
        expected = str(default_store_dir(orthanc.url)) if argv[0] == "models" else str(folder)
        assert set(studies) == {expected}, argv
        if hasattr(args, "store"):
            assert args.store == str(default_store_dir(orthanc.url)), argv


def test_mixing_a_url_and_a_local_folder_needs_one_store(orthanc, workstation, capsys):
    status, out, err = run_cli(["train", orthanc.study_url(), str(TCIA), "--annotator", "ann"], capsys)
    assert status == 2
    one_error_line(err, "--store DIR")


def test_open_a_study_url_in_napari(orthanc, workstation, capsys, tmp_path, monkeypatch):
    pytest.importorskip("napari")
    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    shot = tmp_path / "shot.png"
    status, out, err = run_cli([orthanc.study_url(), "--annotator", "ivy", "--no-propose", "--screenshot", str(shot)],
                               capsys)
    assert status == 0, err
    assert shot.stat().st_size > 10_000 and "screenshot written" in out
    assert not list(study_folder(parse_study_url(orthanc.study_url())).rglob(".ptx")), "no store in the cache"


def test_a_cached_file_cut_short_makes_the_series_incomplete_and_it_is_retrieved_again(orthanc, workstation, capsys):
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0
    folder = cached_ct(parse_study_url(orthanc.study_url()))
    victim = sorted(folder.glob("*.dcm"))[10]
    victim.write_bytes(victim.read_bytes()[:1000])  # what a crash before the data reached the disk leaves
    assert cached_ct(parse_study_url(orthanc.study_url())) is None
    status, out, err = run_cli(["info", orthanc.study_url(), "--json"], capsys)
    assert status == 0 and "retrieved" in err
    assert json.loads(out)["series"][0]["n_slices"] == 64 and json.loads(out)["series"][0]["warnings"] == []
