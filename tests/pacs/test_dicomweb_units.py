"""DICOMweb URL, credential and multipart rules that need no server."""

from __future__ import annotations

import os

import pytest

from ptx_annotator.io.dicomweb import (
    DicomWebError,
    auth_headers,
    cache_root,
    default_store_dir,
    parse_server_url,
    parse_study_url,
    split_multipart,
)


def test_study_url_parts():
    ref = parse_study_url("https://pacs.example.org:8443/orthanc/dicom-web/studies/1.2.3.4/")
    assert (ref.server, ref.study_uid, ref.series_uid) == ("https://pacs.example.org:8443/orthanc/dicom-web", "1.2.3.4",
                                                          None)
    assert parse_study_url(ref.url) == ref
    assert parse_study_url("http://h/dicom-web/studies/1.2/series/3.4").series_uid == "3.4"
    assert parse_server_url("http://h:1/dicom-web/studies/1.2") == "http://h:1/dicom-web"
    with pytest.raises(DicomWebError, match="not a DICOMweb study URL"):
        parse_study_url("http://h/dicom-web")
    for parse in (parse_study_url, parse_server_url):
        with pytest.raises(DicomWebError, match="carries credentials") as caught:
            parse("https://ann:s3cret@pacs:443/dicom-web/studies/1.2")
        assert "s3cret" not in str(caught.value) and "pacs:443" in str(caught.value)


def test_credentials_basic_bearer_and_bad(monkeypatch):
    monkeypatch.setenv("PTX_DICOMWEB_AUTH", "ann:pa:ss")
    assert auth_headers() == (("ann", "pa:ss"), {})
    assert auth_headers("Bearer abc.def") == (None, {"Authorization": "Bearer abc.def"})
    monkeypatch.delenv("PTX_DICOMWEB_AUTH")
    assert auth_headers() == (None, {})
    with pytest.raises(DicomWebError) as caught:
        auth_headers("no-colon-secret")
    assert "no-colon-secret" not in str(caught.value)


def test_cache_and_store_live_in_user_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("PTX_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("PTX_STORE_DIR", str(tmp_path / "s"))
    assert cache_root() == tmp_path / "c" / "dicomweb"
    one, other = default_store_dir("http://a:1/dicom-web"), default_store_dir("http://a:2/dicom-web")
    assert one.parent == tmp_path / "s" and one != other
    monkeypatch.delenv("PTX_CACHE_DIR")
    assert str(cache_root()).startswith(os.path.expanduser("~"))


def message(parts, boundary="b0undary"):
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts)
    return body + b"--" + boundary.encode() + b"--\r\n", f'multipart/related; type="application/dicom"; boundary={boundary}'


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_multipart_parts_survive_any_chunking(chunk):
    parts = [b"", b"\r\n--b0undar", os.urandom(5000), b"DICM" * 300]
    data, content_type = message(parts)
    assert list(split_multipart(content_type, (data[i:i + chunk] for i in range(0, len(data), chunk)))) == parts


def test_multipart_cut_off_is_an_error():
    data, content_type = message([b"x" * 1000, b"y" * 1000])
    with pytest.raises(ValueError, match="interrupted"):
        list(split_multipart(content_type, [data[:1500]]))
    with pytest.raises(ValueError, match="multipart/related"):
        list(split_multipart("application/json", [data]))
