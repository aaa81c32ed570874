"""Opening the shared 64-slice CT from a PACS: Orthanc on loopback vs the same files on disk.

A throw-away Orthanc with its DICOMweb plugin (the one the tests use) is started on a free
loopback port with authentication, the real TCIA series (../shared/data) is uploaded, and in
this one process, page cache warm for both sides (one untimed local read first):

* ``local``:  ``load_volume`` of the series folder;
* ``first``:  the study URL resolved with an empty cache (QIDO-RS series search, one streamed
  WADO-RS retrieval written to the cache, published atomically) plus ``load_volume`` of it;
  each repeat starts from a new empty cache;
* ``cached``: the same URL again (no network) plus ``load_volume``

(the three interleaved, ``--repeat`` times: best times and the median paired ratio), then push
and read-back: a reader's mask (a box on 4 slices) pushed as a SEG with STOW-RS, retrieved again
with WADO-RS and read onto the CT: voxel-exact or not, and the push time.

Prints each figure and the ratios ``first/local`` (target <= 1.5) and ``cached/local``. Orthanc
runs on the same CPU cores as the client, so its own work counts in ``first``.
Run from the project root: ``.venv/bin/python benchmarks/dicomweb_open.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TCIA = ROOT.parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"
sys.path.insert(0, str(ROOT / "tests" / "pacs"))


def best(function, repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not TCIA.is_dir():
        print(f"shared data absent: {TCIA}", file=sys.stderr)
        return 2
    from orthanc_server import running_orthanc

    from ptx_annotator.io import load_volume
    from ptx_annotator.io.dicomweb import Connection, parse_study_url
    from ptx_annotator.io.dicomweb_cache import open_cached_or_retrieve
    from ptx_annotator.io.seg import read_seg
    from ptx_annotator.pacs import push_annotation, seg_series_uid
    from ptx_annotator.review.states import EDITED
    from ptx_annotator.review.store import AnnotationStore

    import pydicom

    with tempfile.TemporaryDirectory(prefix="ptx-dicomweb-bench-") as work, running_orthanc(Path(work) / "orthanc") as server:
        files = sorted(TCIA.glob("*.dcm"))
        for path in files:
            server.upload(path)
        study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        ref = parse_study_url(server.study_url(study_uid))
        caches = iter(range(10 ** 6))

        def fresh_cache():
            os.environ["PTX_CACHE_DIR"] = str(Path(work) / f"cache{next(caches)}")

        def open_url():
            load_volume(open_cached_or_retrieve(ref, server.auth).folder)

        load_volume(TCIA)  # page cache warm for the local side too
        local, first, cached = [], [], []
        for _ in range(args.repeat):  # interleaved, so a change in machine load hits all three alike
            local.append(best(lambda: load_volume(TCIA), 1))
            first.append(best(open_url, 1, before=fresh_cache))
            cached.append(best(open_url, 1))
        paired = sorted(f / l for f, l in zip(first, local))
        print(f"local folder   {min(local):.3f} s  (load_volume, 64 slices; best of {args.repeat})")
        print(f"first open     {min(first):.3f} s  (QIDO + WADO-RS into the cache + load_volume)")
        print(f"cached reopen  {min(cached):.3f} s  (no network)")
        print(f"ratio first/local {min(first) / min(local):.2f} of the best times, median of the paired runs "
              f"{paired[len(paired) // 2]:.2f} (target <= 1.5); ratio cached/local {min(cached) / min(local):.2f}")

        cached_study = open_cached_or_retrieve(ref, server.auth)
        volume = load_volume(cached_study.folder)
        store = AnnotationStore(Path(work) / "store")
        annotation = store.load_or_empty(volume, "bench")
        annotation.mask[30:34, 200:260, 100:140] = 1
        for z in range(30, 34):
            annotation.review.mark(z, EDITED, by="bench")
        store.save(annotation)
        started = time.perf_counter()
        result = push_annotation(volume, store, "bench", auth=server.auth)
        pushed = time.perf_counter() - started
        store.close()
        connection = Connection(server.url, server.auth)
        back_path = Path(work) / "back.dcm"
        back_path.write_bytes(connection.instance_bytes(study_uid, seg_series_uid(study_uid, "bench"), result.sop_uid))
        back = read_seg(back_path, volume)
        exact = np.array_equal(back.mask, annotation.mask)
        print(f"push (SEG via STOW-RS) {pushed:.3f} s; read back {int(back.mask.sum())} of "
              f"{int(annotation.mask.sum())} voxels, exact: {exact}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
