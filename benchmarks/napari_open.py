"""How fast the napari review opens a real 64-slice chest CT and moves between slices.

Run under a display (e.g. ``xvfb-run -a .venv/bin/python benchmarks/napari_open.py [STUDY]``).
Prints the figures of one run; targets from issue 4: open until paintable < 5 s, slice change
including the state-strip update < 50 ms (issue 12: still with the coronal / sagittal views and
the ranking), and accepting all slices at once < 1 s. Runs against older versions of the widget
too (the figures they lack are said so), to compare before and after.

The window gets one size (``--window``, 1280x900) before anything is timed: a slice change here is
mostly the software renderer filling the canvas, so its time follows the window's pixels, and
napari restores each environment's last window size (grown by whatever docks it held), which made
two versions run in two virtualenvs draw windows of different sizes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_STUDY = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default=DEFAULT_STUDY, type=Path)
    parser.add_argument("--plugin-dir", type=Path, help="an older copy of plugins/napari (e.g. from `git archive`) "
                        "to time instead of the installed one, for before/after figures in one sitting")
    parser.add_argument("--window", default="1280x900", metavar="WxH",
                        help="the viewer window's size for every figure (default 1280x900), so that every version "
                        "is timed drawing the same number of pixels; 'natural' keeps the size napari restores")
    args = parser.parse_args(argv)
    study = args.study
    if not study.exists():
        print(f"study not found: {study} (give a DICOM folder as the first argument)")
        return 2
    started = time.perf_counter()
    import napari
    from qtpy.QtWidgets import QApplication

    if args.plugin_dir is not None:
        import importlib

        sys.path.insert(0, str(args.plugin_dir.resolve().parent))
        package = args.plugin_dir.name
        if package == "napari":
            print("error: --plugin-dir names its folder 'napari', which would shadow napari itself; "
                  "copy it to a folder of another name (e.g. napari_before)", file=sys.stderr)
            return 2
        try:  # the widgets live in _qt/ since they were split from the Qt-free reader and layers
            ReviewWidget = importlib.import_module(f"{package}._qt._review_widget").ReviewWidget
        except ModuleNotFoundError:
            ReviewWidget = importlib.import_module(f"{package}._review_widget").ReviewWidget
    else:
        try:
            from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget
        except ImportError:  # an installed version from before the widgets moved into _qt/
            from ptx_annotator.plugins.napari._review_widget import ReviewWidget

    imported = time.perf_counter()
    viewer = napari.Viewer(show=True)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Pneumothorax review", area="right")
    QApplication.processEvents()
    _fix_window(viewer, args.window)  # before opening, so the first paint fills the timed window
    viewer_ready = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        cpu_before_open = time.process_time()
        session = widget.open_study(study, "benchmark", store_dir=store, propose=False)
        QApplication.processEvents()  # first paint of the canvas and the widget
        opened = time.perf_counter()
        open_cpu = time.process_time() - cpu_before_open
        assert widget.mask_layer.editable and widget.mask_layer.mode == "paint"
        n = session.n_slices
        size = _fix_window(viewer, args.window)  # again: the docks may have grown it while opening
        qt_viewer = getattr(viewer.window, "_qt_viewer", None)  # only to print the canvas size
        canvas = qt_viewer.canvas.native if qt_viewer is not None else None
        print(f"study: {study.name}, {n} slices {session.volume.shape[1]}x{session.volume.shape[2]}; window "
              f"{size[0]}x{size[1]}" + (f", axial canvas {canvas.width()}x{canvas.height()}" if canvas else ""))
        print(f"import napari + plugin: {imported - started:.2f} s; viewer + widget: {viewer_ready - imported:.2f} s")
        print(f"open study until paintable (read, store, layers, first paint): {opened - viewer_ready:.2f} s "
              f"(target < 5 s); from launch: {opened - started:.2f} s; CPU time of the process: {open_cpu:.2f} s")

        views = getattr(widget, "views", None)
        if views is not None:  # the new widget segments the thorax once in a worker (volume per side)
            started_measuring = time.perf_counter()
            while views.measuring:
                QApplication.processEvents()
                time.sleep(0.01)
            print(f"thorax segmentation for the volume per side, in a worker after opening: "
                  f"{time.perf_counter() - started_measuring:.2f} s more (slice changes wait for it below)")
        _time_slice_changes(widget, n, edit=False, count=5)  # warm-up
        cpu = []
        clean = _time_slice_changes(widget, n, edit=False, cpu=cpu)
        print(f"slice change incl. state strip and canvas redraw, nothing to save: median "
              f"{statistics.median(clean) * 1000:.1f} ms, max {max(clean) * 1000:.1f} ms over {len(clean)} "
              f"changes (target < 50 ms); CPU time of the process: median {statistics.median(cpu) * 1000:.1f} ms")
        edited = _time_slice_changes(widget, n, edit=True, count=8)
        print(f"slice change after an edit (the autosave follows 250 ms later in a worker thread): median "
              f"{statistics.median(edited) * 1000:.1f} ms, max {max(edited) * 1000:.1f} ms over {len(edited)} changes")
        viewer.dims.events.current_step.disconnect(widget._on_step)
        cpu = []
        bare = _time_slice_changes(widget, n, edit=False, check=False, cpu=cpu)
        print(f"the same slice change in napari alone (widget disconnected): median "
              f"{statistics.median(bare) * 1000:.1f} ms (CPU {statistics.median(cpu) * 1000:.1f} ms); widget share: "
              f"{max(0.0, 1 - statistics.median(bare) / statistics.median(clean)):.0%} of the time")
        viewer.dims.events.current_step.connect(widget._on_step)
        _time_bulk_accept(widget, session)
        widget.close_session()
        from ptx_annotator.io import load_volume

        start = time.perf_counter()
        load_volume(study)
        print(f"of the opening, reading the DICOM series alone (warm file cache): {time.perf_counter() - start:.2f} s")
    viewer.close()
    return 0


def _fix_window(viewer, spec: str) -> tuple[int, int]:
    """Give the window the size ``spec`` ('WxH', or 'natural' to keep it); return its size now."""
    from qtpy.QtWidgets import QApplication

    if spec != "natural":
        width, height = (int(v) for v in spec.lower().split("x"))
        viewer.window.resize(width, height)
        QApplication.processEvents()
    return tuple(viewer.window.geometry()[2:])


def _time_slice_changes(widget, n: int, edit: bool, count: int = 40, check: bool = True,
                        cpu: list | None = None) -> list[float]:
    """Seconds per slice change: dims step, widget handler, then every pending paint (canvas, strip).

    ``cpu`` collects the process's CPU seconds of each change too (all its threads, the software
    renderer's included): a figure that other programs on a busy machine disturb far less.
    """
    from qtpy.QtWidgets import QApplication

    times = []
    for step in range(count):
        target = (int(widget.viewer.dims.current_step[0]) + 7) % n
        if edit:
            widget.mask_layer.paint((widget.session.current_slice, 200 + step, 150), 1)
        start, start_cpu = time.perf_counter(), time.process_time()
        widget.go_to(target)
        QApplication.processEvents()
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
        while edit and getattr(widget, "saver", None) is not None and widget.saver.busy:  # untimed save
            QApplication.processEvents()
            time.sleep(0.01)
        while edit and not hasattr(widget, "saver") and (widget.slice_save_timer.isActive()
                                                         or not widget._save_done.is_set()):  # the old widget
            QApplication.processEvents()
            time.sleep(0.01)
        if check:
            assert widget.strip.current == target == widget.session.current_slice
    return times


def _time_bulk_accept(widget, session) -> None:
    """Seconds to accept every slice of the series in one bulk action, views included (new widget only)."""
    if not hasattr(widget, "accept_range"):
        print("bulk accept: not in this version of the widget")
        return
    import importlib

    import numpy as np
    from qtpy.QtWidgets import QApplication

    from ptx_annotator.proposers.contract import SliceResult

    # the dialogs beside the widget's own module: the installed plugin's, or --plugin-dir's copy
    _dialogs = importlib.import_module(f"{type(widget).__module__.rpartition('.')[0]}._dialogs")

    n = session.n_slices
    session.begin_proposal("benchmark-air", {"rule": "HU < -950 (a stand-in proposal for the timing)"},
                           with_probabilities=False)
    for z in range(n):
        session.add_proposal_slice(SliceResult(z, (np.asarray(session.volume.hu[z]) < -950).astype(np.uint8), None,
                                               z + 1, n))
    session.finish_proposal(True)
    QApplication.processEvents()
    _dialogs.confirm = lambda *args: True  # the confirmation dialog is answered at once
    widget.range_form.first.value, widget.range_form.last.value = 0, n - 1
    proposed = len(session.proposed_slices())
    start = time.perf_counter()
    accepted = widget.accept_range()
    QApplication.processEvents()
    elapsed = time.perf_counter() - start
    states = session.states()
    assert len(accepted) == proposed and states.count("accepted") + states.count("edited") == n
    print(f"accept all {proposed} proposed slices of {n} in one bulk action (state strip, labels, views "
          f"redrawn): {elapsed * 1000:.0f} ms (target < 1 s)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
