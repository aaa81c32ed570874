"""Shared test set-up: offline switches, the real data under ../shared/data, small helpers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TORCH_NUM_THREADS", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from shared_data import SHARED_DATA, TCIA_CT, JPEG2000_CT, MINIMAL_SLICE, NRRD_CT, NRRD_LABEL, SIIM_DIR, CXR_OTHER, need  # noqa: E402,F401 (re-exported for fixtures)


@pytest.fixture
def tcia_dir() -> Path:
    return need(TCIA_CT)


@pytest.fixture(scope="session")
def tcia_volume():
    """The real 64-slice TCIA chest CT, loaded once per test session."""
    from ptx_annotator.io import load_series

    return load_series(need(TCIA_CT))
