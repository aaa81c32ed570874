"""The review widget's views, driven by the session's events (they never refresh each other).

:class:`SessionViews` subscribes to one session's ``events`` and keeps the layers, the state strip,
the labels, the coronal / sagittal views, the threshold slider and the version list in step.
Volumes per side are the session's count (:meth:`ReviewSession.volume_ml`, the one side rule over
the thorax anatomy, as ``quantify`` does); the anatomy is segmented once per series in a worker
thread, and the case-level answer of the proposal (:func:`ptx_annotator.proposers.case.case_answer`)
is computed there too.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QListWidgetItem

from .._layers import update_outline

ROLE_VERSION = Qt.UserRole
#: The thorax segmentation starts this long after a study opens, when its first paint is done.
ANATOMY_AFTER_MS = 150


class SessionViews:
    """Everything the review widget shows about its session."""

    def __init__(self, widget):
        self.widget = widget
        self.session = None
        self._anatomy_due = None  # the session whose anatomy waits for the first paint
        self._workers: list = []
        self._shown_on_canvas = False  # True while the session takes strokes napari has drawn already

    # -- subscribing ---------------------------------------------------------------------------
    def follow(self, session) -> None:
        """Show ``session`` (None: nothing) and subscribe to its events."""
        if self.session is not None:
            events = self.session.events
            for signal, slot in self._slots():
                getattr(events, signal).disconnect(slot)
        for worker in self._workers:  # a measurement still running is for the old session: let it go
            for signal in (worker.returned, worker.errored):
                try:
                    signal.disconnect()
                except (TypeError, RuntimeError):
                    pass
        self._workers = []
        self.session, self._anatomy_due = session, None
        w = self.widget
        if session is None:
            w.ortho.clear()
            w.versions_list.clear()
            return
        for signal, slot in self._slots():
            getattr(session.events, signal).connect(slot)
        n = session.n_slices
        for spin in (w.range_form.first, w.range_form.last):
            spin.max = n - 1
        w.range_form.first.value, w.range_form.last.value = 0, n - 1
        w.ortho.set_arrays(session.volume.hu, session.annotation.mask, session.proposal_mask, session.volume.spacing)
        self.on_states()
        self.on_mask(list(range(n)))
        self.on_proposal([])
        self.on_slice(session.current_slice)
        self.refresh_versions()
        self._measure_anatomy(session)

    def _slots(self):
        return (("states_changed", self.on_states), ("mask_changed", self.on_mask),
                ("proposal_changed", self.on_proposal), ("slice_changed", self.on_slice),
                ("saved", self.on_saved), ("error", self.widget._error))

    @contextmanager
    def drawn_on_canvas(self):
        """Mask changes inside are voxels napari drew itself (a stroke): the canvas shows them already."""
        self._shown_on_canvas = True
        try:
            yield
        finally:
            self._shown_on_canvas = False

    # -- event handlers ------------------------------------------------------------------------
    def on_states(self, indices=None) -> None:
        session, w = self.session, self.widget
        w.strip.set_states(session.states(), session.current_slice)
        self._slice_label()
        if session.dirty:
            w.saver.edited()

    def on_mask(self, indices) -> None:
        session, w = self.session, self.widget
        if w.mask_layer is not None and not self._shown_on_canvas:
            w.mask_layer.refresh()
        w.ortho.redraw()
        self._volume_label()
        if session.dirty:
            w.saver.edited()

    def on_proposal(self, indices) -> None:
        session, w = self.session, self.widget
        if w.overlay_layer is not None:
            update_outline(w.overlay_layer.data, session.proposal_mask, indices or None)
            w.overlay_layer.refresh()
        if not indices or session.current_slice in indices or len(session.proposal_indices) % 8 == 0:
            w.ortho.redraw()
        w.threshold_slider.setEnabled(session.has_probabilities)
        w.threshold_slider.setToolTip("" if session.has_probabilities else
                                      "This proposal has no probabilities (classical or kept): nothing to re-threshold.")

    def on_slice(self, index: int) -> None:
        self.widget.strip.set_current(index)
        self.widget.ortho.set_current(index)
        self._slice_label()

    def on_saved(self, version: int) -> None:
        self.widget._saved(version)
        self.refresh_versions()

    def proposal_finished(self) -> None:
        """Show the proposal's case-level answer (computed in a worker once the anatomy is known)."""
        self.widget.ortho.redraw()
        session = self.session
        if session is None or session.anatomy is None:
            return
        self._run(_case_answer, session, session.proposal_mask.copy(), session.volume,
                  None if session.proposal_probabilities is None else session.proposal_probabilities.copy(),
                  session.anatomy)

    # -- labels --------------------------------------------------------------------------------
    def _slice_label(self) -> None:
        session = self.session
        if session is None:
            return
        counts = session.annotation.review.counts()  # per state; cheap, unlike the voxel provenance
        self.widget.slice_label.setText(
            f"Slice {session.current_slice} (of 0–{session.n_slices - 1}) · {session.state()} · "
            f"{counts['accepted'] + counts['edited']} reviewed, {counts['proposed']} proposed, "
            f"{counts['flagged']} flagged")

    def _volume_label(self) -> None:
        ml = self.session.volume_ml(segment=False)  # the session's count; the anatomy comes from the worker
        if ml["right"] is None:
            text = f"Pneumothorax: total {ml['total']:.1f} mL (sides once the hemithoraces are found…)"
        else:
            text = f"Pneumothorax: right {ml['right']:.1f} mL · left {ml['left']:.1f} mL · total {ml['total']:.1f} mL"
        self.widget.volume_label.setText(text)

    def volume_ml(self) -> dict | None:
        """Right, left and total mL as shown (None until the anatomy is known)."""
        if self.session is None or not self.session.sides_known:
            return None
        return self.session.volume_ml(segment=False)

    def refresh_versions(self) -> None:
        session, w = self.session, self.widget
        w.versions_list.clear()
        if session is None or session.store is None:
            return
        for info in reversed(session.store.list_versions(session.volume.key, session.annotator)):
            item = QListWidgetItem(_version_text(info))
            item.setData(ROLE_VERSION, int(info.id))
            w.versions_list.addItem(item)

    # -- background measurements ---------------------------------------------------------------
    @property
    def measuring(self) -> bool:
        """Whether the anatomy or the case answer is still being computed (or about to be)."""
        return bool(self._workers) or self._anatomy_due is not None

    def _measure_anatomy(self, session) -> None:
        """Segment the thorax in a worker, started once the CT is on screen (not competing with its first paint)."""
        if session.sides_known:
            return
        self._anatomy_due = session
        QTimer.singleShot(ANATOMY_AFTER_MS, lambda: self._start_anatomy(session))

    def _start_anatomy(self, session) -> None:
        if session is not self._anatomy_due or session is not self.session:
            return
        self._anatomy_due = None
        self._run(_segment, session, session.volume)

    def _run(self, function, session, *args) -> None:
        worker = function(*args)
        worker.returned.connect(lambda value, session=session: self._on_measured(session, value))
        worker.errored.connect(lambda exc, session=session: self._on_failed(session, exc))
        self._workers.append(worker)
        worker.finished.connect(lambda worker=worker: worker in self._workers and self._workers.remove(worker))
        worker.start()

    def _on_measured(self, session, value) -> None:
        if session is not self.session:
            return
        kind, payload = value
        if kind == "anatomy":
            session.set_anatomy(payload)  # sides of the volume and the session's tools (grow region)
            self._volume_label()
            if session.proposal_source is not None:
                self.proposal_finished()
        else:
            self.widget.case_label.setText(_case_text(payload))

    def _on_failed(self, session, exc) -> None:
        if session is self.session:
            self.widget.volume_label.setText(f"Pneumothorax: sides not measured ({exc}).")


@thread_worker(start_thread=False, ignore_errors=True)
def _segment(volume):
    from ptx_annotator.anatomy import segment_thorax

    return "anatomy", segment_thorax(volume)


@thread_worker(start_thread=False, ignore_errors=True)
def _case_answer(mask, volume, probabilities, anatomy):
    from ptx_annotator.proposers.case import case_answer

    return "case", case_answer(mask, volume, probabilities, anatomy=anatomy)


def _case_text(answer: dict) -> str:
    if not answer.get("pneumothorax"):
        return f"Proposal: no pneumothorax (confidence {answer.get('confidence', 0):.2f})."
    sides = " and ".join(answer.get("sides") or []) or "side unclear"
    return (f"Proposal: pneumothorax, {sides}, {answer.get('volume_ml', 0):.1f} mL "
            f"(confidence {answer.get('confidence', 0):.2f}).")


def _version_text(info) -> str:
    """One line of the version list: id, time, voxels, how many slices reviewed."""
    states = info.states or {}
    reviewed = int(states.get("accepted", 0)) + int(states.get("edited", 0))
    when = (info.saved_at or "").replace("T", " ")[:19]
    return f"v{info.id} · {when} · {info.n_voxels} voxels · {reviewed} reviewed" + (" · current" if info.committed else "")


def painted_slices(atoms, fallback: int) -> set[int]:
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
