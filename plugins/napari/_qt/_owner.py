"""The one owner of a viewer's review session: every widget finds the session here.

The review widget opens and closes sessions and tells the owner; the Fine-tune and Compare
widgets ask the owner of their viewer (:func:`owner_of`) instead of searching the dock widgets,
and the PACS worklist opens its studies in the viewer's review widget (``review_widget``).
The owner is a plain evented object (psygnal): ``session_changed`` fires with the new session
(or None) so views can subscribe and unsubscribe.
"""

from __future__ import annotations

import weakref

from psygnal import Signal

_OWNERS: "weakref.WeakKeyDictionary[object, ReviewOwner]" = weakref.WeakKeyDictionary()


class ReviewOwner:
    """Holds the review session of one viewer and the CT layer it is shown on."""

    session_changed = Signal(object)

    def __init__(self) -> None:
        self.session = None
        self.image_layer = None
        self.saver = None  # the object that can save the session now (the review widget)
        self._review_widget = None  # weak reference to the viewer's review widget

    @property
    def review_widget(self):
        """The viewer's review widget (the newest one made), or None."""
        widget = self._review_widget() if self._review_widget is not None else None
        try:
            widget is not None and widget.objectName()  # a Qt object deleted underneath raises here
        except RuntimeError:
            widget = None
        return widget

    @review_widget.setter
    def review_widget(self, widget) -> None:
        self._review_widget = None if widget is None else weakref.ref(widget)

    def set_session(self, session, image_layer=None, saver=None) -> None:
        self.session, self.image_layer, self.saver = session, image_layer, saver
        self.session_changed.emit(session)

    def session_for(self, series_key: str):
        """The open session of ``series_key``, or None."""
        session = self.session
        if session is not None and getattr(session.volume, "key", None) == series_key:
            return session
        return None

    def save_now(self) -> bool:
        """Save the open session (through its widget, which waits for a background save)."""
        if self.session is None:
            return True
        if self.saver is not None:
            return self.saver.autosave()
        return self.session.save()


def owner_of(viewer) -> ReviewOwner:
    """The one :class:`ReviewOwner` of ``viewer`` (made on first use)."""
    owner = _OWNERS.get(viewer)
    if owner is None:
        owner = _OWNERS[viewer] = ReviewOwner()
    return owner
