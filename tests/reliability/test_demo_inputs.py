"""Hostile uploads through the X-ray demo's /predict function (in-process, no server), and a PHI canary.

Each upload is a copy, because the demo deletes every upload once it has read it (checked too).
The live-server versions (gradio_client, 20 concurrent calls, the temp folder after shutdown) are
in tests/gradio/test_demo.py.
"""

import json
import shutil
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from ptx_annotator.plugins.gradio.app import XrayPredictor  # noqa: E402
from tests.conftest import SIIM_DIR, need  # noqa: E402
from tests.reliability.results import EXPECTED, RESULTS  # noqa: E402

NEGATIVE = SIIM_DIR / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
CANARY = "QZXCANARY"


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (no pixel data needed to be refused by size)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


def _siim_with(tmp, **fields):
    ds = pydicom.dcmread(str(need(NEGATIVE)))
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    path = tmp / "upload.dcm"
    ds.save_as(str(path))
    return path


def _make(kind, world, tmp):
    if kind == "text-as-dicom":
        (tmp / "report.dcm").write_text("Findings: no pneumothorax.\n" * 10)
        return tmp / "report.dcm"
    if kind == "truncated-png":
        path = tmp / "cut.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:3000])
        return path
    if kind == "empty":
        (tmp / "empty.png").write_bytes(b"")
        return tmp / "empty.png"
    if kind == "nothing":
        return None
    if kind == "folder":
        (tmp / "folder.png").mkdir()
        return tmp / "folder.png"
    if kind == "ct-dicom":
        return shutil.copy(world.dicom / "slice003.dcm", tmp / "ct.dcm")
    if kind == "ct-png":
        hu = world.volume.hu[6].astype(float)
        path = tmp / "ct.png"
        Image.fromarray((np.clip((hu + 1350) / 1500, 0, 1) * 255).astype(np.uint8)).save(path)  # native 48 px
        return path
    if kind == "huge-png":
        _png_header_only(tmp / "huge.png", 20000, 20000)
        return tmp / "huge.png"
    if kind == "huge-dicom":
        return _siim_with(tmp, Rows=10000, Columns=10000)
    if kind == "mr-dicom":
        return _siim_with(tmp, Modality="MR")
    if kind == "canary":
        return _siim_with(tmp, PatientName=f"{CANARY}^NAME", PatientID=f"{CANARY}-ID", ViewPosition=f"{CANARY}",
                          BodyPartExamined=f"{CANARY} CHEST", InstitutionName=f"{CANARY} HOSPITAL",
                          StudyDescription=f"{CANARY} study", ReferringPhysicianName=f"{CANARY}^DOC")
    raise ValueError(kind)


UPLOADS = [  # (kind, expected: "refused" or "answered", fragment)
    ("text-as-dicom", "refused", "dicom"),
    ("truncated-png", "refused", "truncated or damaged"),
    ("empty", "refused", "is empty"),
    ("nothing", "refused", "no file was uploaded"),
    ("folder", "refused", "not a file"),
    ("ct-dicom", "refused", "not a chest x-ray"),
    ("ct-png", "refused", "looks like an axial ct slice"),
    ("huge-png", "refused", "more pixels than a chest x-ray"),
    ("huge-dicom", "refused", "pixel limit"),
    ("mr-dicom", "refused", "not a chest x-ray"),
    ("canary", "answered", "no model loaded"),
]
EXPECTED.update(f"demo-{kind}" for kind, _, _ in UPLOADS)


@pytest.fixture(scope="module")
def predictor():
    return XrayPredictor(None)


@pytest.mark.parametrize("kind, expected, fragment", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_hostile_upload(kind, expected, fragment, world, tmp_path, predictor):
    path = _make(kind, world, tmp_path)
    try:
        overlay, summary, numbers = predictor(None if path is None else str(path))
        text, refused = summary + json.dumps(numbers), False
    except gr.Error as exc:
        text, refused = str(exc), True
    RESULTS[f"demo-{kind}"] = {"rc": 2 if refused else 0, "expected": 2 if expected == "refused" else 0,
                               "traceback": "Traceback" in text, "fragment": fragment in text.lower(),
                               "store_changed": False, "refused": refused, "line": text[:160]}
    assert refused == (expected == "refused"), text
    assert fragment in text.lower() and "Traceback" not in text
    if kind not in ("nothing", "folder"):
        assert not path.exists()  # the upload is deleted once read, refused or not
    if kind == "canary":
        assert CANARY not in text and numbers["image"]["view_position"] == "other"
        assert numbers["image"]["body_part"] == "other"
        assert not path.exists()
