"""How well the X-ray demo's "looks like an axial CT slice" check separates the shared data.

Prints the frame-dark share (ptx_annotator.xray.io.frame_dark_share) of every shared chest X-ray
and of CT slices rendered as pictures (6 slices per series, lung / soft-tissue / full windows,
native size and resized to 384 and 1024 px), and the share of CT renderings the threshold
CT_FRAME_DARK_SHARE refuses.  Run: .venv/bin/python benchmarks/ct_slice_check.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from ptx_annotator.io import load_volume
from ptx_annotator.xray.io import CT_FRAME_DARK_SHARE, frame_dark_share, load_xray, xray_from_array

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WINDOWS = ((-1350, 150), (-160, 240), (-1024, 3071))


def main() -> None:
    xrays = sorted((DATA / "cxr").glob("*/*.dcm")) + sorted((DATA / "cxr").glob("*/*.png"))
    shares = [frame_dark_share(load_xray(p).unit()) for p in xrays]
    print(f"chest X-rays: {len(shares)}, frame-dark share {min(shares):.3f}..{max(shares):.3f}")
    cts = [p for p in sorted((DATA / "ct").iterdir()) if p.is_dir() and not p.name.endswith("_boxes") and p.name != "more"]
    cts += [p for p in sorted((DATA / "ct" / "more").iterdir()) if p.is_dir()] if (DATA / "ct" / "more").is_dir() else []
    values = []
    for folder in cts:
        target = next(folder.glob("*image*.nrrd"), folder)
        try:
            volume = load_volume(target, allow_non_ct=True)
        except Exception as exc:  # a folder that is not a CT series (printed, not counted)
            print(f"  skipped {folder.name}: {exc}")
            continue
        for z in np.linspace(0, volume.shape[0] - 1, 6).astype(int):
            for low, high in WINDOWS:
                grey = (np.clip((volume.hu[z].astype(float) - low) / (high - low), 0, 1) * 255).astype(np.uint8)
                for size in (None, (384, 384), (1024, 1024)):
                    picture = Image.fromarray(grey) if size is None else Image.fromarray(grey).resize(size)
                    values.append(frame_dark_share(xray_from_array(np.asarray(picture)).unit()))
    values = np.array(values)
    print(f"CT renderings: {values.size}, refused at >= {CT_FRAME_DARK_SHARE}: {np.mean(values >= CT_FRAME_DARK_SHARE):.1%}; "
          f"X-rays refused: {sum(s >= CT_FRAME_DARK_SHARE for s in shares)} of {len(shares)}")


if __name__ == "__main__":
    main()
