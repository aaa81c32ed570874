"""The review dock widget: a thin Qt shell over :class:`ptx_annotator.review.session.ReviewSession`.

Every button and key (see :mod:`._shortcuts`) calls one session method through
:meth:`ReviewWidget._run_action`, which turns failures into a message, never a traceback. The
views (layers, state strip, labels, coronal / sagittal views, version list) never refresh each
other: they subscribe to the session's events. Proposals run in :class:`._propose.ProposalController`,
saves in :class:`._autosave.SessionSaver`; the session is published to the viewer's one
:class:`._owner.ReviewOwner`, where the other widgets find it.
"""

from __future__ import annotations

import os
import time

from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QApplication, QFileDialog, QWidget

from ptx_annotator.errors import PtxError
from ptx_annotator.review.session import ReviewSession

from . import _dialogs
from ._autosave import SessionSaver
from ._guard import never_raises
from .._layers import WINDOWS, add_review_layers, set_window, volume_from_layer
from ._ortho import OrthoViews
from ._owner import owner_of
from ._propose import ProposalController
from ._push import PushControl
from ._review_ui import CHECKPOINT_ENTRY, build_review_controls
from ._review_views import ROLE_VERSION, SessionViews, painted_slices
from ._settings import remember_annotator, remembered_annotator
from ._shortcuts import SHORTCUTS
from ._study_picker import StudyPicker


class ReviewWidget(QWidget):
    """Review one series: state strip, bulk review, tools, proposals, versions, autosave."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.owner = owner_of(napari_viewer)
        self.owner.review_widget = self  # where the PACS worklist opens its studies
        self.session: ReviewSession | None = None
        self.image_layer = self.overlay_layer = self.mask_layer = None
        self.proposals = ProposalController()
        self.proposals.started.connect(lambda source: self._status(f"Proposing with {source}…"))
        self.proposals.failed.connect(self._error)
        self.proposals.finished.connect(self._on_proposal_finished)
        self.proposals.ended.connect(lambda: self.propose_button.setText("Propose"))
        self.saver = SessionSaver(lambda: self.session, self)
        build_review_controls(self)
        self.picker = StudyPicker(self.series_combo)
        self.push_control = PushControl(self)
        self.layout().addWidget(self.push_control)
        self.ortho = OrthoViews()
        self.ortho.sliceClicked.connect(self.go_to)
        self.views = SessionViews(self)
        window = getattr(self.viewer, "window", None)
        if window is not None and hasattr(window, "add_dock_widget"):
            window.add_dock_widget(self.ortho, name="Coronal / sagittal", area="left")
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._bind_keys(self.viewer)
        self._watched_window = None
        if QApplication.instance() is not None:
            QApplication.instance().aboutToQuit.connect(self.close_session)
        self.annotator_edit.setText(remembered_annotator() or "")

    def _bind_keys(self, provider) -> None:
        for key, _, method in SHORTCUTS:
            provider.bind_key(key, lambda _=None, m=method: self._run_action(getattr(self, m)), overwrite=True)

    # -- opening -------------------------------------------------------------------------------
    def open_study(self, path, annotator: str | None = None, store_dir=None, series_uid: str | None = None,
                   propose: bool = False, read_only: bool = False) -> ReviewSession:
        """Open ``path`` (DICOM study folder, NIfTI or NRRD) for ``annotator``.

        With several series the picker offers them all; ``series_uid`` picks one, else the CT
        series with the most images comes first.
        """
        annotator = annotator or self.annotator_edit.text().strip()
        if not annotator:
            raise PtxError("Type your annotator name first (it names your mask in the store).")
        index = self.picker.open(path, annotator, store_dir, read_only, series_uid)
        self.switch_series(index, propose=propose)
        return self.session

    def switch_series(self, index: int, propose: bool = False) -> None:
        """Load series ``index`` of the open study (saving the one on screen first)."""
        volume, store, study = self.picker.load(index), self.picker.store(), self.picker.study
        self.attach(volume, store, study.annotator, read_only=study.read_only)
        if propose and self.proposals.kept_proposal_matches(self.session):
            self._status(f"Proposal by {self.session.proposal_source} restored from the store; Propose makes it again.")
        elif propose:  # the study stays open when the proposer cannot run
            self._run_action(self.start_proposal)

    def review_selected_layer(self) -> None:
        """Review the selected CT layer (else the top one) opened with this plugin's reader or sample data.

        Where the annotations go is asked first (the study's own ``.ptx`` folder, another folder,
        or memory only), unless the layer already names its store.
        """
        from ptx_annotator.review.store import AnnotationStore, store_root_for

        active = self.viewer.layers.selection.active
        candidates = [active] + [layer for layer in reversed(self.viewer.layers) if layer is not active]
        layer, volume = next(((c, v) for c in candidates if c is not None and (v := volume_from_layer(c)) is not None),
                             (None, None))
        if volume is None:
            raise PtxError("Select a CT layer opened with the ptx-annotator reader (File > Open) first.")
        annotator = self.annotator_edit.text().strip()
        if not annotator:
            raise PtxError("Type your annotator name first (it names your mask in the store).")
        root = (layer.metadata or {}).get("ptx_store_root")
        if root is None and os.path.exists(volume.source):
            root = _dialogs.choose_store(self, os.fspath(store_root_for(volume.source)))
        store = AnnotationStore.for_study(volume.source, root) if root else None
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
            remember_annotator(session.annotator)
        self.annotator_edit.setText(session.annotator)
        # layers first, session second: adding layers moves the dims, which must not move the session
        self.image_layer, self.overlay_layer, self.mask_layer = add_review_layers(
            self.viewer, volume, session.annotation.mask, session.proposal_mask, session.annotator, image_layer)
        if store is not None and not read_only:
            self.image_layer.metadata["ptx_store_root"] = os.fspath(store.root)  # the Compare / Fine-tune widgets' store
        self.mask_layer.events.paint.connect(self._on_paint)
        self.mask_layer.mouse_drag_callbacks.append(self._on_canvas_click)
        self._bind_keys(self.mask_layer)
        self._apply_window(self.window_check.isChecked())
        self.viewer.dims.set_current_step(0, session.current_slice)
        self.viewer.reset_view()
        self.session = session
        self.views.follow(session)
        self.owner.set_session(session, self.image_layer, self)
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

    def selected_range(self) -> tuple[int, int]:
        first, last = int(self.range_form.first.value), int(self.range_form.last.value)
        return min(first, last), max(first, last)

    def accept_slice(self) -> None:
        self._need_session().accept()

    def accept_range(self) -> list[int]:
        """Accept every proposed slice of the range, after saying how many and which are empty."""
        session = self._need_session()
        first, last = self.selected_range()
        chosen = [z for z in session.proposed_slices() if first <= z <= last]
        if not chosen:
            self._status(f"No proposed slice between {first} and {last}.")
            return []
        empty = [z for z in session.empty_proposed_slices() if first <= z <= last]
        text = (f"Accept {len(chosen)} proposed slices ({first}–{last}) as shown? {len(empty)} of them are empty"
                + (f": {_dialogs.compact(empty)}." if empty else "."))
        if not _dialogs.confirm(self, "Accept range", text):
            return []
        accepted = session.accept_slices(chosen)
        self._status(f"Accepted {len(accepted)} slices ({len(empty)} empty); Ctrl+Z undoes it.")
        return accepted

    def accept_empty(self) -> list[int]:
        """Accept the empty proposed slices in one go, after saying how many."""
        session = self._need_session()
        empty = session.empty_proposed_slices()
        if not empty:
            self._status("No empty proposed slice is left.")
            return []
        if not _dialogs.confirm(self, "Accept empty slices", f"Accept {len(empty)} empty proposed slices "
                                                              f"({_dialogs.compact(empty)}) as 'no pneumothorax'?"):
            return []
        accepted = session.accept_empty_proposed()
        self._status(f"Accepted {len(accepted)} empty slices; Ctrl+Z undoes it.")
        return accepted

    def flag_slice(self) -> None:
        self._need_session().flag()

    def clear_slice(self) -> None:
        self._need_session().clear()

    def fill_between(self) -> list[int]:
        first, last = self.selected_range()
        filled = self._need_session().fill_between(first, last)
        self._status(f"Filled {len(filled)} slices between {first} and {last}." if filled else
                     f"Nothing to fill between {first} and {last} (draw the end slices first).")
        return filled

    def copy_proposal_range(self) -> list[int]:
        first, last = self.selected_range()
        copied = self._need_session().copy_proposal(first, last)
        self._status(f"Copied the proposal into slices {first}–{last}.")
        return copied

    def undo(self) -> None:
        if not self._need_session().undo():
            self._status("Nothing to undo.")

    def redo(self) -> None:
        if not self._need_session().redo():
            self._status("Nothing to redo.")

    def toggle_hu_brush(self) -> None:
        self.hu_check.setChecked(not self.hu_check.isChecked())

    def toggle_grow(self) -> None:
        self.grow_check.setChecked(not self.grow_check.isChecked())

    def toggle_help(self) -> None:
        self.help_panel.setVisible(not self.help_panel.isVisible())

    def next_needing_review(self) -> None:
        self._move(1, ranked=True)

    def previous_needing_review(self) -> None:
        self._move(-1, ranked=True)

    def next_in_slice_order(self) -> None:
        self._move(1, ranked=False)

    def previous_in_slice_order(self) -> None:
        self._move(-1, ranked=False)

    def _move(self, step: int, ranked: bool) -> None:
        session = self._need_session()
        target = session.next_slice(direction=step, ranked=ranked)
        if target is None:
            self._status("No other slice needs review." if ranked else
                         f"No slice {'after' if step > 0 else 'before'} this one needs review.")
            return
        self.go_to(target)

    @never_raises
    def go_to(self, index: int) -> None:
        """Show slice ``index`` (the dims change moves the session)."""
        self.viewer.dims.set_current_step(0, int(index))

    def toggle_window(self) -> None:
        self.window_check.setChecked(not self.window_check.isChecked())

    def _apply_window(self, mediastinal: bool) -> None:
        name = "mediastinal" if mediastinal else "lung"
        if self.image_layer is not None:
            set_window(self.image_layer, name)
        self.ortho.set_window(WINDOWS[name])

    def set_threshold(self, threshold: float) -> None:
        """Re-threshold the proposal (only proposers with probabilities; reviewed slices never change)."""
        self.threshold_label.setText(f"Threshold {threshold:.2f}")
        session = self.session
        if session is not None and session.has_probabilities:
            session.set_threshold(threshold)

    # -- versions ------------------------------------------------------------------------------
    def restore_selected_version(self) -> None:
        item = self.versions_list.currentItem()
        if item is None:
            raise PtxError("Select a version in the list first.")
        self.restore_version(int(item.data(ROLE_VERSION)))

    def restore_version(self, version_id: int) -> int:
        """Make kept version ``version_id`` current (saved as a new version) and show it."""
        session = self._need_session()
        store = session.store
        if store is None:
            raise PtxError("This series is not saved anywhere, so it has no versions.")
        volume, annotator, image = session.volume, session.annotator, self.image_layer
        if not self.close_session():
            raise PtxError("The open work could not be saved, so no version was restored.")
        try:
            new_id = store.restore_version(volume.key, annotator, int(version_id))
        finally:
            self.attach(volume, store, annotator, image_layer=image)
        self._status(f"Version {version_id} restored (saved as version {new_id}).")
        return new_id

    # -- proposals -----------------------------------------------------------------------------
    @never_raises
    def _on_proposer_picked(self, index: int) -> None:
        if self.proposer_combo.itemText(index) == CHECKPOINT_ENTRY:
            path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "Checkpoints (*.safetensors)")
            if path:
                self.set_checkpoint(path)
                return
            self.proposer_combo.setCurrentIndex(0)
        self.proposals.set_checkpoint(self.proposer_combo.currentData())

    def set_checkpoint(self, path: str) -> None:
        """Offer ``path`` in the proposer picker and select it."""
        self.proposer_combo.insertItem(1, os.path.basename(os.fspath(path)), os.fspath(path))
        self.proposer_combo.setCurrentIndex(1)
        self.proposals.set_checkpoint(path)

    def toggle_proposal(self) -> None:
        if self.proposals.running:
            self.proposals.cancel()
            self._status("Cancelling the proposal…")
        else:
            self.start_proposal()

    def start_proposal(self):
        run = self.proposals.start(self._need_session())
        self.propose_button.setText("Cancel")
        self._status("Loading the proposer…")
        return run

    def stop_proposal(self) -> None:
        self.proposals.stop()

    def _on_proposal_finished(self, completed: bool, slices: int) -> None:
        if self.session is not None:
            self._status(f"Proposal {'complete' if completed else 'cancelled'}: {slices} of "
                         f"{self.session.n_slices} slices.")
            self.views.proposal_finished()

    # -- viewer events -------------------------------------------------------------------------
    @never_raises
    def _on_step(self, event=None) -> None:
        if self.session is None:
            return
        index = int(self.viewer.dims.current_step[0])
        if index != self.session.current_slice:
            self.session.go_to(index, autosave=False)
            self.saver.slice_changed()  # saved off the GUI thread once the new slice is drawn

    @never_raises
    def _on_paint(self, event) -> None:
        if self.session is None:
            return
        painted = painted_slices(event.value, self.session.current_slice)
        # a single paint() call reports before it writes the voxels: take the stroke once it has
        QTimer.singleShot(0, lambda session=self.session: self._take_stroke(session, painted))

    @never_raises
    def _take_stroke(self, session, painted) -> None:
        if session is not self.session:
            return
        if self.hu_check.isChecked():
            for z in sorted(painted):
                session.limit_stroke_to_hu(index=z)
        else:
            with self.views.drawn_on_canvas():  # napari's own drawing: nothing to refresh
                session.mark_edited(painted)

    def _on_canvas_click(self, layer, event):
        """With "grow region" on, a click grows the pleural air from the voxel under the mouse."""
        if not self.grow_check.isChecked() or self.session is None:
            return
        voxel = [int(round(v)) for v in layer.world_to_data(event.position)]
        self._run_action(self._grow_from, voxel)

    def _grow_from(self, voxel) -> list[int]:
        changed = self._need_session().grow_region(tuple(voxel))
        self.grow_check.setChecked(False)
        self._status(f"Grew the air region from {tuple(voxel)} over {len(changed)} slices; Ctrl+Z undoes it.")
        return changed

    def _on_grow_toggled(self, on: bool) -> None:
        if self.mask_layer is not None:
            self.mask_layer.mode = "pan_zoom" if on else "paint"

    # -- saving and closing --------------------------------------------------------------------
    def autosave(self) -> bool:
        """Save now, in this thread (after any save still running in the background)."""
        return self.saver.save_now()

    def close_session(self) -> bool:
        """Stop any proposal, save and release the session (closing the viewer calls this)."""
        self.stop_proposal()
        session, self.session = self.session, None
        if session is None:
            return True
        self.saver.stop()
        self.saver.wait()
        ok = session.close()
        if not ok:
            self.session = session  # keep the work reachable
            self._error(session.last_save_error or "Saving failed; your work is kept in memory.")
            return False
        self.views.follow(None)
        self.owner.set_session(None)
        return True

    def event(self, event) -> bool:
        """Once docked, watch the main window: closing it saves (or is refused when saving fails)."""
        if event.type() in (QEvent.ParentChange, QEvent.Show):
            top = self.window()
            if top is not self and id(top) != self._watched_window:
                top.installEventFilter(self)
                self._watched_window = id(top)
        return super().event(event)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Close and not self.close_session() and event.spontaneous():
            event.ignore()  # the save failed: keep the window (and the work) open, the message shows why
            return True
        return False

    # -- messages ------------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _saved(self, version: int) -> None:
        self._status(f"Saved version {version} at {time.strftime('%H:%M:%S')}.")

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_error

        self.status_label.setStyleSheet("color: #e5534b;")
        self.status_label.setText(text)
        try:
            show_error(text)
        except Exception:  # noqa: BLE001 - a notification must never break the widget
            pass
