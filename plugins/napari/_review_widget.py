"""The review dock widget: a thin Qt shell over :class:`ptx_annotator.review.session.ReviewSession`.

Keys (viewer-wide and on the mask layer): A accept, N / P next / previous slice needing review,
F flag, W lung / mediastinal window. Every action goes through :meth:`ReviewWidget._run_action`,
which turns failures into a message in the widget and a napari notification, never a traceback.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QApplication, QFileDialog, QWidget

from ptx_annotator.errors import PtxError
from ptx_annotator.review.session import ReviewSession

from ._layers import add_review_layers, set_window, volume_from_layer
from ._propose import ProposalMixin
from ._guard import never_raises
from ._review_ui import build_review_controls
from ._settings import remember_annotator, remembered_annotator

AUTOSAVE_AFTER_EDIT_MS = 30_000
SAVE_WAIT_S = 60.0
#: Saving waits this long after a slice change, so the new slice is drawn first (and a quick
#: run through several slices saves once).
SAVE_AFTER_SLICE_CHANGE_MS = 250


class ReviewWidget(ProposalMixin, QWidget):
    """Review one series: state strip, accept / flag / clear / copy, proposals, volumes, autosave."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: ReviewSession | None = None
        self.image_layer = self.overlay_layer = self.mask_layer = None
        self.proposal_run: ProposalRun | None = None
        self._progress = None
        self._series: list = []
        self._study: dict = {}
        self.checkpoint: str | None = None
        self._build_ui()
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_AFTER_EDIT_MS)
        self.autosave_timer.timeout.connect(self.save_in_background)
        self.slice_save_timer = QTimer(self)
        self.slice_save_timer.setSingleShot(True)
        self.slice_save_timer.setInterval(SAVE_AFTER_SLICE_CHANGE_MS)
        self.slice_save_timer.timeout.connect(self.save_in_background)
        self._save_done = threading.Event()
        self._save_done.set()  # no save in flight
        self._save_pending = False
        self._save_in_flight = (None, None)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._bind_keys(self.viewer)
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if window is not None:
            window.installEventFilter(self)
        if QApplication.instance() is not None:
            QApplication.instance().aboutToQuit.connect(self.close_session)
        self.annotator_edit.setText(remembered_annotator() or "")

    # -- UI ------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        build_review_controls(self)

    def _bind_keys(self, provider) -> None:
        for key, handler in (("a", self.accept_slice), ("n", self.next_needing_review),
                             ("p", self.previous_needing_review), ("f", self.flag_slice),
                             ("w", self.toggle_window)):
            provider.bind_key(key, lambda _=None, h=handler: self._run_action(h), overwrite=True)

    # -- opening -------------------------------------------------------------------------------
    def open_study(self, path, annotator: str | None = None, store_dir=None, series_uid: str | None = None,
                   propose: bool = False, read_only: bool = False) -> ReviewSession:
        """Open ``path`` (DICOM study folder, NIfTI or NRRD) for ``annotator``; picks a series."""
        from ptx_annotator.io import scan_study
        from ptx_annotator.io.volume_files import VOLUME_SUFFIXES

        annotator = annotator or self.annotator_edit.text().strip()
        if not annotator:
            raise PtxError("Type your annotator name first (it names your mask in the store).")
        self._study = {"path": os.fspath(path), "annotator": annotator, "store_dir": store_dir, "read_only": read_only}
        self._series = []
        if not str(path).lower().endswith(VOLUME_SUFFIXES):
            self._series = [s for s in scan_study(path).series]
        self.series_combo.clear()
        for series in self._series:
            self.series_combo.addItem(f"{series.description or 'series'} · {len(series.files)} images · "
                                      f"{series.modality} · …{series.series_uid[-12:]}")
        self.series_combo.setVisible(len(self._series) > 1)
        index = 0
        if series_uid is not None:
            uids = [s.series_uid for s in self._series]
            if series_uid not in uids:
                raise PtxError(f"Series {series_uid} is not in '{path}'; it holds: {', '.join(uids) or 'none'}.")
            index = uids.index(series_uid)
        elif self._series:
            sizes = [len(s.files) if s.modality.upper() in ("CT", "") else 0 for s in self._series]
            index = int(np.argmax(sizes))
        self.series_combo.setCurrentIndex(index)
        self.switch_series(index, propose=propose)
        return self.session

    def switch_series(self, index: int, propose: bool = False) -> None:
        """Load series ``index`` of the open study (saving the one on screen first)."""
        from ptx_annotator.io import load_volume, read_series_files
        from ptx_annotator.review.store import AnnotationStore

        path, annotator = self._study["path"], self._study["annotator"]
        volume = read_series_files(self._series[index].files) if self._series else load_volume(path)
        read_only = self._study["read_only"]
        try:
            store = AnnotationStore.for_study(path, self._study["store_dir"])
        except PtxError:
            if not read_only:
                raise
            store = None  # a read-only look at a read-only study: nothing to load or save
        self.attach(volume, store, annotator, read_only=read_only)
        if propose and self.kept_proposal_matches():
            self._status(f"Proposal by {self.session.proposal_source} restored from the store; Propose makes it again.")
        elif propose:  # the study stays open when the proposer cannot run
            self._run_action(self.start_proposal)

    def review_selected_layer(self) -> None:
        """Review the selected CT layer (else the top one) opened with this plugin's reader or sample data."""
        from ptx_annotator.review.store import AnnotationStore

        active = self.viewer.layers.selection.active
        candidates = [active] + [layer for layer in reversed(self.viewer.layers) if layer is not active]
        layer, volume = next(((c, v) for c in candidates if c is not None and (v := volume_from_layer(c)) is not None),
                             (None, None))
        if volume is None:
            raise PtxError("Select a CT layer opened with the ptx-annotator reader (File > Open) first.")
        annotator = self.annotator_edit.text().strip()
        if not annotator:
            raise PtxError("Type your annotator name first (it names your mask in the store).")
        store = AnnotationStore.for_study(volume.source) if os.path.exists(volume.source) else None
        self.attach(volume, store, annotator, image_layer=layer)

    def attach(self, volume, store, annotator: str, read_only: bool = False, image_layer=None) -> ReviewSession:
        """Show ``volume`` with the annotator's mask and start reviewing it."""
        if not self.close_session():
            raise PtxError("The open series could not be saved; fix that (see above) before opening another.")
        self._remove_layers(keep=image_layer)
        if read_only:
            annotation = store.load(volume.key, annotator, volume) if store is not None else None
            session = ReviewSession(volume, annotation, None) if annotation else ReviewSession.open(volume, None, annotator)
        else:
            session = ReviewSession.open(volume, store, annotator)
        if not read_only:
            remember_annotator(session.annotator)
        self.annotator_edit.setText(session.annotator)
        # layers first, session second: adding layers moves the dims, which must not move the session
        self.image_layer, self.overlay_layer, self.mask_layer = add_review_layers(
            self.viewer, volume, session.annotation.mask, session.proposal_mask, session.annotator, image_layer)
        self.mask_layer.events.paint.connect(self._on_paint)
        _report_undo_as_paint(self.mask_layer)
        self._bind_keys(self.mask_layer)
        self._apply_window(self.window_check.isChecked())
        self.viewer.dims.set_current_step(0, session.current_slice)
        self.viewer.reset_view()
        self.session = session
        self._refresh(volumes=True)
        where = f"saving to {session.store.root}" if session.store is not None else (
            "read-only view" if read_only else "kept in memory only (not saved)")
        self._status(f"{volume.description or volume.key}: {volume.shape[0]} slices; {where}.")
        return session

    def _remove_layers(self, keep=None) -> None:
        for layer in (self.mask_layer, self.overlay_layer, self.image_layer):
            if layer is not None and layer is not keep and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image_layer = self.overlay_layer = self.mask_layer = None

    def _choose_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a study folder")
        if folder:
            self._run_action(self.open_study, folder, propose=True)

    # -- actions -------------------------------------------------------------------------------
    def _run_action(self, action, *args, **kwargs):
        """Run one user action; errors become a message (widget + notification), work stays."""
        try:
            return action(*args, **kwargs)
        except PtxError as exc:
            self._error(str(exc))
        except Exception as exc:  # last resort: never a traceback in the GUI
            self._error(f"Unexpected {type(exc).__name__}: {exc}. Your annotation is still in memory.")
        return None

    def _need_session(self) -> ReviewSession:
        if self.session is None:
            raise PtxError("Open a study first (Open study… or `ptx-annotate STUDY`).")
        return self.session

    def accept_slice(self) -> None:
        self._need_session().accept()
        self._refresh(mask=True)

    def flag_slice(self) -> None:
        self._need_session().flag()
        self._refresh()

    def clear_slice(self) -> None:
        self._need_session().clear()
        self._refresh(mask=True)

    def copy_proposal(self) -> None:
        self._need_session().copy_proposal()
        self._refresh(mask=True)

    def next_needing_review(self) -> None:
        self._move_to_needing_review(1)

    def previous_needing_review(self) -> None:
        self._move_to_needing_review(-1)

    def _move_to_needing_review(self, step: int) -> None:
        session = self._need_session()
        target = session.annotation.review.next_needing_review(session.current_slice, step)
        if target is None:
            self._status(f"No slice {'after' if step > 0 else 'before'} this one needs review.")
            return
        self.go_to(target)

    @never_raises
    def go_to(self, index: int) -> None:
        """Show slice ``index`` (the dims change saves and updates the strip)."""
        self.viewer.dims.set_current_step(0, int(index))

    def toggle_window(self) -> None:
        self.window_check.setChecked(not self.window_check.isChecked())

    def _apply_window(self, mediastinal: bool) -> None:
        if self.image_layer is not None:
            set_window(self.image_layer, "mediastinal" if mediastinal else "lung")

    def set_threshold(self, threshold: float) -> None:
        self.threshold_label.setText(f"Threshold {threshold:.2f}")
        if self.session is not None and self.session.set_threshold(threshold):
            self._refresh(mask=True, overlay=True)

    # -- events --------------------------------------------------------------------------------
    @never_raises
    def _on_step(self, event=None) -> None:
        if self.session is None:
            return
        index = int(self.viewer.dims.current_step[0])
        if index == self.session.current_slice:
            return
        self.session.go_to(index, autosave=False)
        if self.session.dirty:  # autosave on every slice change: off the GUI thread, once the slice is drawn
            self.slice_save_timer.start()
        self.strip.set_current(index)
        self._update_slice_label()

    @never_raises
    def _on_paint(self, event) -> None:
        if self.session is None:
            return
        painted = _painted_slices(event.value, self.session.current_slice)
        self.session.mark_edited(painted)
        self._refresh(volumes=True)
        # a single paint() call reports before it writes the voxels: count again once it has
        QTimer.singleShot(0, lambda: self._recount(painted))
        if not self.autosave_timer.isActive():
            self.autosave_timer.start()

    @never_raises
    def _recount(self, indices) -> None:
        if self.session is not None:
            self.session.refresh_counts(indices)
            self._refresh(volumes=True)

    def autosave(self) -> bool:
        """Save now, in this thread (after any save still running in the background)."""
        if self.session is None or not self.session.dirty:
            return True
        self._save_done.wait(SAVE_WAIT_S)
        return self._report_save(self.session.save())

    @never_raises
    def save_in_background(self) -> None:
        """Save a snapshot of the session in a worker thread; one save at a time, the last one wins."""
        session = self.session
        if session is None or not session.dirty:
            return
        if not self._save_done.is_set():
            self._save_pending = True
            return
        snapshot = session.snapshot()
        self._save_done.clear()
        self._save_in_flight = (session, snapshot)
        worker = _write_snapshot(session, snapshot, self._save_done)
        worker.returned.connect(self._on_background_saved)  # a bound slot: dropped if the widget is gone
        worker.start()

    @never_raises
    def _on_background_saved(self, error) -> None:
        session, snapshot = self._save_in_flight
        self._save_in_flight = (None, None)
        if session is None or session is not self.session:
            return  # closed meanwhile: closing saved it again
        self._report_save(session.finish_save(snapshot, error))
        if self._save_pending:
            self._save_pending = False
            self.save_in_background()

    def _report_save(self, ok: bool) -> bool:
        if self.session is None:
            return ok
        if ok:
            self._status(f"Saved version {self.session.annotation.version} at {time.strftime('%H:%M:%S')}.")
        else:
            self._error(self.session.last_save_error or "Saving failed; your work is kept in memory.")
        return ok

    def close_session(self) -> bool:
        """Stop any proposal, save and release the session (closing the viewer calls this)."""
        self.stop_proposal()
        session, self.session = self.session, None
        if session is None:
            return True
        self.autosave_timer.stop()
        self.slice_save_timer.stop()
        self._save_done.wait(SAVE_WAIT_S)
        ok = session.close()
        if not ok:
            self.session = session  # keep the work reachable
            self._error(session.last_save_error or "Saving failed; your work is kept in memory.")
        return ok

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Close and not self.close_session() and event.spontaneous():
            event.ignore()  # the save failed: keep the window (and the work) open, the message shows why
            return True
        return False

    # -- display -------------------------------------------------------------------------------
    def _refresh(self, mask: bool = False, overlay: bool = False, volumes: bool = False) -> None:
        session = self.session
        if session is None:
            return
        if mask and self.mask_layer is not None:
            self.mask_layer.refresh()
        if overlay and self.overlay_layer is not None:
            self.overlay_layer.refresh()
        if mask or volumes:
            ml = session.volume_ml()
            self.volume_label.setText(f"Pneumothorax: right {ml['right']:.1f} mL · left {ml['left']:.1f} mL · "
                                      f"total {ml['total']:.1f} mL")
        self.strip.set_states(session.states(), session.current_slice)
        self._update_slice_label()
        if session.dirty and not self.autosave_timer.isActive():
            self.autosave_timer.start()

    def _update_slice_label(self) -> None:
        session = self.session
        counts = session.annotation.review.counts()
        self.slice_label.setText(f"Slice {session.current_slice} (of 0–{session.n_slices - 1}) · {session.state()} · "
                                 f"{counts['accepted'] + counts['edited']} reviewed, {counts['flagged']} flagged")

    def _status(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_error

        self.status_label.setStyleSheet("color: #e5534b;")
        self.status_label.setText(text)
        try:
            show_error(text)
        except Exception:  # noqa: BLE001 - a notification must never break the widget
            pass


@thread_worker(start_thread=False)
def _write_snapshot(session, snapshot, done: threading.Event):
    try:
        return session.write_snapshot(snapshot)
    except Exception as exc:  # noqa: BLE001 - reported in the widget, never raised in the GUI
        return f"Could not save: unexpected {type(exc).__name__}: {exc}. Your work is kept in memory."
    finally:
        done.set()


def _report_undo_as_paint(layer) -> None:
    """Make the layer's undo and redo emit its paint event (napari writes them silently).

    Without it an undone stroke would change the mask without marking the slice edited, counting
    the volume again or scheduling the autosave, so the undo could be lost on close.
    """
    for name, queue in (("undo", "_undo_history"), ("redo", "_redo_history")):
        original = getattr(layer, name)

        def replay(original=original, queue=queue) -> None:
            pending = getattr(layer, queue, None)
            item = list(pending[-1]) if pending else None
            original()
            if item is not None:
                layer.events.paint(value=item)

        setattr(layer, name, replay)


def _painted_slices(atoms, fallback: int) -> set[int]:
    """The z indices touched by a Labels paint event (its value is a list of paint atoms)."""
    slices: set[int] = set()
    for atom in atoms or []:
        key = atom[0] if isinstance(atom, tuple) else getattr(atom, "slice_key", None)
        first = key[0] if isinstance(key, tuple) and key else None
        if isinstance(first, (int, np.integer)):
            slices.add(int(first))
        elif isinstance(first, slice):
            slices.update(range(*first.indices(first.stop or fallback + 1)))
        elif first is not None:
            slices.update(int(i) for i in np.unique(np.asarray(first)))
    return slices or {fallback}
