"""Start a throw-away Orthanc with its DICOMweb plugin on a free loopback port (tests, benchmark).

Plain Python (no pytest), so ``benchmarks/dicomweb_open.py`` uses the same server as the tests:
HTTP basic authentication on, remote access off, the DICOM port off, storage in a given folder.
"""

from __future__ import annotations

import glob
import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*", "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*")
USER, PASSWORD = "reader", "pneumo-test-secret"
#: Seconds Orthanc may take to open its database and plugins on a loaded machine.
START_TIMEOUT_S = 60


class OrthancUnavailable(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed (the reason says which)."""


@dataclass
class OrthancServer:
    url: str  # the DICOMweb root
    rest: str  # Orthanc's own REST root (uploads only)
    auth: str
    process: subprocess.Popen

    def study_url(self, study_uid: str) -> str:
        return f"{self.url}/studies/{study_uid}"

    def upload(self, path) -> None:
        import requests

        answer = requests.post(f"{self.rest}/instances", data=Path(path).read_bytes(), auth=(USER, PASSWORD),
                               timeout=60)
        answer.raise_for_status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dicomweb_plugin() -> str | None:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@contextmanager
def running_orthanc(folder: Path):
    """Yield an :class:`OrthancServer` keeping its database in ``folder``; stopped on exit."""
    import requests

    binary, plugin = shutil.which("Orthanc"), dicomweb_plugin()
    if binary is None:
        raise OrthancUnavailable("the Orthanc binary is not installed (apt-get install orthanc orthanc-dicomweb)")
    if plugin is None:
        raise OrthancUnavailable("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"Name": "ptx-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "Plugins": [plugin],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "StorageCompression": False}
    (folder / "orthanc.json").write_text(json.dumps(config))
    rest = f"http://127.0.0.1:{port}"
    with open(folder / "orthanc.log", "wb") as log:
        process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=folder)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"Orthanc stopped while starting: see {folder / 'orthanc.log'}")
                try:
                    if requests.get(f"{rest}/system", auth=(USER, PASSWORD), timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S} s: see {folder / 'orthanc.log'}")
                time.sleep(0.2)
            yield OrthancServer(f"{rest}/dicom-web", rest, f"{USER}:{PASSWORD}", process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
