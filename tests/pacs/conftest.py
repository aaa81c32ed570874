"""A real Orthanc with its DICOMweb plugin for the PACS tests, started once per session.

It listens on a free loopback port with HTTP basic authentication, keeps its database in a
temporary folder, holds the shared 64-slice TCIA chest CT and one chest X-ray study (a study
with no CT), and is stopped at the end. Tests skip with the reason when the ``Orthanc`` binary,
its DICOMweb plugin or ``../shared/data`` is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .orthanc_server import OrthancServer, OrthancUnavailable, running_orthanc

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TCIA_CT = SHARED_DATA / "ct" / "tcia_lung_pet_ct_dx_A0001"
XRAY = SHARED_DATA / "cxr" / "siim" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


@dataclass
class LoadedOrthanc:
    """The session's server and the studies uploaded to it."""

    server: OrthancServer
    ct_study: str
    ct_series: str
    xray_study: str

    def __getattr__(self, name):  # url, auth, upload, ... of the server
        return getattr(self.server, name)

    def study_url(self, study_uid: str | None = None) -> str:
        return self.server.study_url(study_uid or self.ct_study)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    if not TCIA_CT.is_dir():
        pytest.skip(f"shared real data not present: {TCIA_CT} (it lives in ../shared/data beside the checkout)")
    import pydicom

    try:
        with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
            files = sorted(TCIA_CT.glob("*.dcm"))
            for path in files:
                server.upload(path)
            first = pydicom.dcmread(files[0], stop_before_pixels=True)
            xray_study = ""
            if XRAY.is_file():
                server.upload(XRAY)
                xray_study = str(pydicom.dcmread(XRAY, stop_before_pixels=True).StudyInstanceUID)
            yield LoadedOrthanc(server, str(first.StudyInstanceUID), str(first.SeriesInstanceUID), xray_study)
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def workstation(tmp_path, monkeypatch, orthanc):
    """One reader's machine: its own cache and store folders, credentials in the environment."""
    home = tmp_path / "workstation"
    monkeypatch.setenv("PTX_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("PTX_STORE_DIR", str(home / "stores"))
    monkeypatch.setenv("PTX_DICOMWEB_AUTH", orthanc.auth)
    return home
