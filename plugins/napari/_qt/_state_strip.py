"""A strip of one coloured cell per slice showing its review state; a click jumps to the slice."""

from __future__ import annotations

from qtpy.QtCore import QRect, QSize, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from ptx_annotator.review.states import STATE_COLORS


class SliceStateStrip(QWidget):
    """Cells left to right are slices 0..n-1 (inferior to superior for an axial series)."""

    sliceClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._states: list[str] = []
        self._current = 0
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip("Review state per slice (grey unreviewed, amber proposed, green accepted, "
                        "blue edited, red flagged); click to go to a slice.")

    def sizeHint(self) -> QSize:
        return QSize(300, 24)

    @property
    def states(self) -> list[str]:
        return list(self._states)

    @property
    def current(self) -> int:
        return self._current

    def set_states(self, states, current: int | None = None) -> None:
        self._states = list(states)
        if current is not None:
            self._current = int(current)
        self.update()

    def set_current(self, index: int) -> None:
        if index != self._current:
            self._current = int(index)
            self.update()

    def slice_at(self, x: float) -> int | None:
        """The slice under horizontal position ``x`` (pixels), or None when empty."""
        n = len(self._states)
        if n == 0 or self.width() <= 0:
            return None
        return int(min(n - 1, max(0, x * n // max(1, self.width()))))

    def cell_rect(self, index: int) -> QRect:
        n = max(1, len(self._states))
        left = round(index * self.width() / n)
        right = round((index + 1) * self.width() / n)
        return QRect(left, 0, max(1, right - left), self.height())

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        position = event.pos().x() if hasattr(event, "pos") else event.position().x()
        index = self.slice_at(position)
        if index is not None:
            self.sliceClicked.emit(index)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        try:
            for index, state in enumerate(self._states):
                painter.fillRect(self.cell_rect(index), QColor(STATE_COLORS.get(state, "#000000")))
            if self._states:
                painter.setPen(QPen(QColor("#ffffff"), 2))
                painter.drawRect(self.cell_rect(self._current).adjusted(1, 1, -1, -1))
        finally:
            painter.end()
