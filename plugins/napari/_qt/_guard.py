"""Event handlers of the review widget must never show a traceback; this wrapper sees to it."""

from __future__ import annotations

import functools


def never_raises(slot):
    """Wrap a Qt/napari event handler: an error becomes a message in the widget, never a traceback."""

    @functools.wraps(slot)
    def guarded(widget, *args, **kwargs):
        try:
            return slot(widget, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the GUI shows it; the annotation stays in memory
            widget._error(f"{type(exc).__name__} in {slot.__name__.strip('_')}: {exc}. Your annotation is still in memory.")
            return None

    return guarded
