"""The writer the kill -9 loop starts and kills: saves one annotator's work in a loop, forever.

Each save number k is written into the mask (``voxels(k)`` voxels set) and into slice 0's review
state (accepted when k is odd, else flagged), so a loaded version whose mask and review disagree
is caught. ``start k`` / ``done k`` lines in the log say which saves were begun and finished.
Kept import-light (numpy and the store only) so 30 starts stay quick.
"""

import sys

import numpy as np

SHAPE = (6, 32, 40)


def small_volume():
    from ptx_annotator.volume import Volume

    return Volume(hu=np.full(SHAPE, -1000, np.int16), spacing=(2.5, 0.7, 0.7), affine=np.diag([2.5, 0.7, 0.7, 1.0]),
                  series_uid="1.2.3.9")


def voxels(k: int) -> int:
    return 1 + k % 500


def state_of(k: int) -> str:
    return "accepted" if k % 2 else "flagged"


def main(store_root: str, log_path: str) -> None:
    import nibabel  # noqa: F401  (imported now, so the kills land in saves, not in a first import)

    from ptx_annotator.review.store import AnnotationStore

    volume = small_volume()
    store = AnnotationStore(store_root)
    annotation = store.load_or_empty(volume, "carol")
    store.lock(volume.key, "carol")
    k = int(annotation.extra.get("k", 0))
    print("ready", flush=True)
    while True:
        k += 1
        annotation.mask[:] = 0
        annotation.mask.reshape(-1)[: voxels(k)] = 1
        annotation.review.mark(0, state_of(k), by="carol")
        annotation.extra = {"k": k}
        with open(log_path, "a") as log:
            log.write(f"start {k}\n")
        store.save(annotation, coalesce_key=k % 3)
        with open(log_path, "a") as log:
            log.write(f"done {k}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
