"""Small helpers of the PACS tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptx_annotator.cli import main


def run_cli(argv, capsys):
    """Run ``ptx-annotate`` in this process: (status, stdout, stderr)."""
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def reader_mask(shape, first_slice: int, n_slices: int, shift: int = 0) -> np.ndarray:
    """A box-shaped 'pneumothorax' on a few slices, as a reader might paint it."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[first_slice:first_slice + n_slices, 200 + shift:260 + shift, 100:140] = 1
    return mask


def environment_for(home: Path, auth: str) -> dict:
    """The environment of a separate process acting as another workstation."""
    return {**os.environ, "PTX_CACHE_DIR": str(home / "cache"), "PTX_STORE_DIR": str(home / "stores"),
            "PTX_DICOMWEB_AUTH": auth}
