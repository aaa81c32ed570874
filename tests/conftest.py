"""Shared test set-up: offline switches, the real data under ../shared/data, small helpers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TORCH_NUM_THREADS", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

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


@pytest.fixture
def tcia_dir() -> Path:
    return need(TCIA_CT)


@pytest.fixture(scope="session")
def tcia_volume():
    """The real 64-slice TCIA chest CT, loaded once per test session."""
    from ptx_annotator.io import load_series

    return load_series(need(TCIA_CT))
