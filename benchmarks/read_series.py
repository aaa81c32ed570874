"""Reading a 200-slice 512x512 CT series to HU: ptx_annotator.io.load_series vs pydicom alone.

The series is made from the real TCIA slices (../shared/data), re-stacked to 200 positions in a
temporary folder (pixel data and headers real, positions and UIDs new). Both readers run in this
one process on the same files, best of ``--repeat`` after one warm-up (page cache warm).

Prints the seconds of each and, last, ``ratio R`` (load_series time / pydicom-only time).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from ptx_annotator.io import load_series

TCIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"


def make_series(out: Path, n_slices: int) -> list[Path]:
    sources = sorted(TCIA.glob("*.dcm"))
    series_uid = pydicom.uid.generate_uid()
    files = []
    for k in range(n_slices):
        ds = pydicom.dcmread(sources[k % len(sources)])
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], -400.0 + 2.5 * k]
        ds.InstanceNumber = k + 1
        path = out / f"slice{k:04d}.dcm"
        ds.save_as(path)
        files.append(path)
    return files


def pydicom_only(files: list[Path]) -> np.ndarray:
    """The floor: read each file, apply the modality LUT, stack in file order (no sorting, no checks)."""
    from pydicom.pixels import apply_modality_lut

    return np.stack([apply_modality_lut((ds := pydicom.dcmread(f)).pixel_array, ds) for f in files])


def best_of(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not TCIA.is_dir():
        raise SystemExit(f"needs the shared TCIA series at {TCIA}")
    tmp = Path(tempfile.mkdtemp(prefix="ptx-bench-"))
    try:
        files = make_series(tmp, args.slices)
        volume = load_series(tmp)
        assert volume.shape == (args.slices, 512, 512), volume.shape
        ours = best_of(lambda: load_series(tmp), args.repeat)
        floor = best_of(lambda: pydicom_only(files), args.repeat)
        print(f"load_series: {args.slices} slices 512x512 to HU in {ours:.3f} s")
        print(f"pydicom alone (read + modality LUT + stack): {floor:.3f} s")
        print(f"ratio {ours / floor:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
