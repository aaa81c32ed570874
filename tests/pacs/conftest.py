"""A real Orthanc with its DICOMweb plugin for the PACS tests, started once per session.

It listens on a free loopback port with HTTP basic authentication, keeps its database in a
temporary folder, holds the shared 64-slice TCIA chest CT and one chest X-ray study (a study
with no CT), and is stopped at the end. Tests skip with the reason when the ``Orthanc`` binary,
its DICOMweb plugin or ``../shared/data`` is absent.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TCIA_CT = SHARED_DATA / "ct" / "tcia_lung_pet_ct_dx_A0001"
JPEG2000_CT = SHARED_DATA / "ct" / "jpeg2000_abdomen_series"
XRAY = SHARED_DATA / "cxr" / "siim" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*", "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*")
USER, PASSWORD = "reader", "pneumo-test-secret"
#: Seconds Orthanc may take to open its database and plugins on a loaded machine.
START_TIMEOUT_S = 60


@dataclass
class OrthancServer:
    url: str  # the DICOMweb root
    rest: str  # Orthanc's own REST root (uploads only)
    auth: str
    ct_study: str
    ct_series: str
    xray_study: str
    process: subprocess.Popen

    def study_url(self, study_uid: str | None = None) -> str:
        return f"{self.url}/studies/{study_uid or self.ct_study}"

    def upload(self, path) -> None:
        import requests

        answer = requests.post(f"{self.rest}/instances", data=Path(path).read_bytes(), auth=(USER, PASSWORD), timeout=60)
        answer.raise_for_status()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _plugin() -> str | None:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> OrthancServer:
    binary, plugin = shutil.which("Orthanc"), _plugin()
    if binary is None:
        pytest.skip("the Orthanc binary is not installed (apt-get install orthanc orthanc-dicomweb)")
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    if not TCIA_CT.is_dir():
        pytest.skip(f"shared real data not present: {TCIA_CT} (it lives in ../shared/data beside the checkout)")
    import requests

    folder = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {"Name": "ptx-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "Plugins": [plugin],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "StorageCompression": False}
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                               cwd=folder)
    rest = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"Orthanc stopped while starting: see {folder / 'orthanc.log'}")
            try:
                if requests.get(f"{rest}/system", auth=(USER, PASSWORD), timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not answer within {START_TIMEOUT_S} s: see {folder / 'orthanc.log'}")
            time.sleep(0.2)
        import pydicom

        server = OrthancServer(f"{rest}/dicom-web", rest, f"{USER}:{PASSWORD}", "", "", "", process)
        files = sorted(TCIA_CT.glob("*.dcm"))
        for path in files:
            server.upload(path)
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        server.ct_study, server.ct_series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        if XRAY.is_file():
            server.upload(XRAY)
            server.xray_study = str(pydicom.dcmread(XRAY, stop_before_pixels=True).StudyInstanceUID)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def workstation(tmp_path, monkeypatch, orthanc):
    """One reader's machine: its own cache and store folders, credentials in the environment."""
    home = tmp_path / "workstation"
    monkeypatch.setenv("PTX_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("PTX_STORE_DIR", str(home / "stores"))
    monkeypatch.setenv("PTX_DICOMWEB_AUTH", orthanc.auth)
    return home

