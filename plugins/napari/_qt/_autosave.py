"""When the review widget saves: after an edit (30 s), after a slice change (once it is drawn), on close.

:class:`SessionSaver` writes a snapshot of the session in a ``thread_worker`` (one save at a
time, the last one wins) and hands the result back to the session on the GUI thread; the session
then emits ``events.saved`` or ``events.error``, which the views show.
"""

from __future__ import annotations

import threading

from napari.qt.threading import thread_worker
from qtpy.QtCore import QObject, QTimer

AUTOSAVE_AFTER_EDIT_MS = 30_000
SAVE_WAIT_S = 60.0
#: Saving waits this long after a slice change, so the new slice is drawn first (and a quick
#: run through several slices saves once).
SAVE_AFTER_SLICE_CHANGE_MS = 250


class SessionSaver(QObject):
    """Background saves of one widget's current session (``session_of()`` returns it)."""

    def __init__(self, session_of, parent=None):
        super().__init__(parent)
        self._session_of = session_of
        self.edit_timer = self._timer(AUTOSAVE_AFTER_EDIT_MS)
        self.slice_timer = self._timer(SAVE_AFTER_SLICE_CHANGE_MS)
        self.done = threading.Event()
        self.done.set()  # no save in flight
        self._pending = False
        self._in_flight = (None, None)

    def _timer(self, ms: int) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(ms)
        timer.timeout.connect(self.save_in_background)
        return timer

    def edited(self) -> None:
        """Something changed: save within the edit delay (a running countdown is kept)."""
        if not self.edit_timer.isActive():
            self.edit_timer.start()

    def slice_changed(self) -> None:
        session = self._session_of()
        if session is not None and session.dirty:
            self.slice_timer.start()

    def stop(self) -> None:
        self.edit_timer.stop()
        self.slice_timer.stop()

    @property
    def busy(self) -> bool:
        return self.slice_timer.isActive() or not self.done.is_set()

    def save_now(self) -> bool:
        """Save in this thread (after a save still running in the background)."""
        session = self._session_of()
        if session is None or not session.dirty:
            return True
        self.done.wait(SAVE_WAIT_S)
        return session.save()

    def wait(self) -> None:
        self.done.wait(SAVE_WAIT_S)

    def save_in_background(self) -> None:
        session = self._session_of()
        if session is None or not session.dirty:
            return
        if not self.done.is_set():
            self._pending = True
            return
        snapshot = session.snapshot()
        self.done.clear()
        self._in_flight = (session, snapshot)
        worker = _write_snapshot(session, snapshot, self.done)
        worker.returned.connect(self._on_saved)
        worker.start()

    def _on_saved(self, error) -> None:
        session, snapshot = self._in_flight
        self._in_flight = (None, None)
        if session is None or session is not self._session_of():
            return  # closed meanwhile: closing saved it again
        session.finish_save(snapshot, error)
        if self._pending:
            self._pending = False
            self.save_in_background()


@thread_worker(start_thread=False)
def _write_snapshot(session, snapshot, done: threading.Event):
    try:
        return session.write_snapshot(snapshot)
    except Exception as exc:  # noqa: BLE001 - reported in the widget, never raised in the GUI
        return f"Could not save: unexpected {type(exc).__name__}: {exc}. Your work is kept in memory."
    finally:
        done.set()
