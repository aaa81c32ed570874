"""Checks the viewer commands make before Qt starts: is there a display, how many slices are there."""

from __future__ import annotations

import os
import subprocess
import sys

from ptx_annotator.errors import PtxError

_PROBE = "import sys\nfrom qtpy.QtWidgets import QApplication\napp = QApplication(sys.argv[:1])\n"
_HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")
#: Seconds the display probe may take (starting Qt once; generous for slow machines).
PROBE_TIMEOUT_S = 60


def require_display() -> None:
    """Raise :class:`PtxError` when Qt could not open a window here (instead of Qt aborting the process).

    On Linux without DISPLAY / WAYLAND_DISPLAY (and no headless QT_QPA_PLATFORM) this is known at
    once; otherwise Qt is started once in a child process, so an abort there cannot kill this one.
    """
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    hint = ("Run it on a desktop session, over 'ssh -X', or under a virtual display: "
            f"xvfb-run -a {' '.join(['ptx-annotate', *sys.argv[1:]]) if sys.argv[1:] else 'ptx-annotate ...'}")
    if sys.platform.startswith("linux") and platform not in _HEADLESS_PLATFORMS \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise PtxError(f"No display to open napari on (DISPLAY and WAYLAND_DISPLAY are not set). {hint}")
    if not sys.platform.startswith("linux"):
        return
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PtxError(f"Qt did not start within {PROBE_TIMEOUT_S} s on display "
                       f"{os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')}. {hint}") from None
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
        why = lines[-1][:200] if lines else f"exit status {probe.returncode}"
        raise PtxError(f"Qt cannot open the display {os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')!r} "
                       f"({why}). {hint}")


def slice_count(study, series_uid=None) -> int:
    """The number of slices of ``study`` from headers only (no pixel data is read)."""
    lower = str(study).lower()
    if lower.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            return int(nib.load(str(study)).shape[2])
        except Exception as exc:
            raise PtxError(f"Cannot read NIfTI '{study}': {exc}.") from None
    if lower.endswith((".nrrd", ".nhdr")):
        import nrrd

        try:
            return int(nrrd.read_header(str(study))["sizes"][2])
        except Exception as exc:
            raise PtxError(f"Cannot read NRRD '{study}': {exc}.") from None
    from ptx_annotator.io import scan_study

    scan = scan_study(study)
    chosen = [s for s in scan.series if series_uid is None or s.series_uid == series_uid]
    if series_uid is not None and not chosen:
        raise PtxError(f"Series {series_uid} is not in '{study}'; it holds {', '.join(s.series_uid for s in scan.series)}.")
    if len(chosen) > 1:
        raise PtxError(f"'{study}' holds {len(chosen)} series: name one with --series UID.")
    return len(chosen[0].files)
