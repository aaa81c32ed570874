"""Where the shared real data lives (../shared/data beside the checkout) and how a test skips without it.

A module of its own, not conftest: tests import these names, and two conftest modules (tests/ and
tests/training/) would otherwise shadow each other when both folders are collected in one run.
"""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TCIA_CT = SHARED_DATA / "ct" / "tcia_lung_pet_ct_dx_A0001"
JPEG2000_CT = SHARED_DATA / "ct" / "jpeg2000_abdomen_series"
MINIMAL_SLICE = SHARED_DATA / "ct" / "minimal_header_slice" / "0.dcm"
NRRD_CT = SHARED_DATA / "ct" / "nrrd_lung1" / "lung1_image.nrrd"
NRRD_LABEL = SHARED_DATA / "ct" / "nrrd_lung1" / "lung1_label.nrrd"
SIIM_DIR = SHARED_DATA / "cxr" / "siim"
CXR_OTHER = SHARED_DATA / "cxr" / "other"


def need(path: Path) -> Path:
    """Skip the test with a clear reason when a piece of shared real data is absent."""
    if not path.exists():
        pytest.skip(f"shared real data not present: {path} (it lives in ../shared/data beside the checkout)")
    return path
