"""Coronal and sagittal views beside the axial canvas: two small pictures, redrawn from the arrays.

:func:`ortho_rgb` (plain numpy, tested without Qt) renders one plane through the volume with the
reader's mask filled and the proposal outlined, in the colours of the axial view; superior is up.
:class:`OrthoViews` shows the coronal and sagittal planes with a line at the axial slice on
screen; a click on either picks that slice (and the other view's plane). Moving between axial
slices only moves the line on a kept picture, so a slice change stays cheap; the pictures are
drawn again when the mask or the proposal changes.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QVBoxLayout, QWidget

from .._layers import MASK_RGBA, PROPOSAL_RGBA, outline

CORONAL, SAGITTAL = 1, 2  # the array axis each view holds fixed
#: Opacity of the reader's mask fill in the small views (as on the axial canvas).
MASK_OPACITY = 0.45
CURSOR_RGB = (255, 255, 255)


def ortho_rgb(hu, mask, proposal, axis: int, index: int, window) -> np.ndarray:
    """RGB uint8 picture of the plane ``index`` along ``axis`` (1 coronal, 2 sagittal); rows = z, superior up."""
    take = (slice(None), int(index), slice(None)) if axis == CORONAL else (slice(None), slice(None), int(index))
    low, high = window
    grey = np.clip((np.asarray(hu[take], dtype=np.float32) - low) / (high - low), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    filled = np.asarray(mask[take]) > 0
    rgb[filled] = (1 - MASK_OPACITY) * rgb[filled] + MASK_OPACITY * np.asarray(MASK_RGBA[:3]) * 255
    rgb[outline(proposal[take])] = np.asarray(PROPOSAL_RGBA[:3]) * 255
    return np.ascontiguousarray(rgb[::-1].astype(np.uint8))


class _Plane(QLabel):
    clicked = Signal(float, float)  # fractions across (0..1) and down (0..1) the picture

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignCenter)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.setMinimumSize(120, 90)

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        pixmap = self.pixmap()
        if pixmap is None or pixmap.isNull():
            return
        point = event.pos() if hasattr(event, "pos") else event.position().toPoint()
        left = (self.width() - pixmap.width()) / 2
        top = (self.height() - pixmap.height()) / 2
        fx, fy = (point.x() - left) / max(pixmap.width(), 1), (point.y() - top) / max(pixmap.height(), 1)
        if 0 <= fx <= 1 and 0 <= fy <= 1:
            self.clicked.emit(fx, fy)


class OrthoViews(QWidget):
    """Coronal and sagittal planes of the session's volume, mask and proposal."""

    sliceClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.hu = self.mask = self.proposal = None
        self.spacing = (1.0, 1.0, 1.0)
        self.window = (-1350.0, 150.0)
        self.current_z = 0
        self._pictures: dict[int, np.ndarray] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.planes, self.sliders = {}, {}
        for axis, title in ((CORONAL, "coronal"), (SAGITTAL, "sagittal")):
            row = QHBoxLayout()
            row.addWidget(QLabel(title))
            slider = QSlider(Qt.Horizontal)
            slider.valueChanged.connect(lambda _value, axis=axis: self.redraw(axis))
            row.addWidget(slider, 1)
            layout.addLayout(row)
            plane = _Plane()
            plane.clicked.connect(lambda fx, fy, axis=axis: self._on_click(axis, fx, fy))
            layout.addWidget(plane, 1)
            self.planes[axis], self.sliders[axis] = plane, slider

    def set_arrays(self, hu, mask, proposal, spacing) -> None:
        """Show these arrays (shared, not copied); the planes start through the middle."""
        self.hu, self.mask, self.proposal = hu, mask, proposal
        self.spacing = tuple(float(s) for s in spacing)
        for axis, slider in self.sliders.items():
            slider.blockSignals(True)
            slider.setRange(0, hu.shape[axis] - 1)
            slider.setValue(hu.shape[axis] // 2)
            slider.blockSignals(False)
        self.redraw()

    def clear(self) -> None:
        self.hu = self.mask = self.proposal = None
        self._pictures.clear()
        for plane in self.planes.values():
            plane.clear()

    def position(self, axis: int) -> int:
        return int(self.sliders[axis].value())

    def set_window(self, window) -> None:
        self.window = tuple(float(v) for v in window)
        self.redraw()

    def set_current(self, z: int) -> None:
        """Move the line to axial slice ``z`` (the pictures are kept)."""
        self.current_z = int(z)
        for axis in self._pictures:
            self._show(axis)

    def redraw(self, axis: int | None = None) -> None:
        """Draw the planes again from the arrays (after the mask or the proposal changed)."""
        if self.hu is None:
            return
        for a in (CORONAL, SAGITTAL) if axis is None else (axis,):
            self._pictures[a] = ortho_rgb(self.hu, self.mask, self.proposal, a, self.position(a), self.window)
            self._show(a)

    def picture(self, axis: int) -> np.ndarray:
        """The plane as shown, with the line at the current slice (RGB, superior up)."""
        picture = self._pictures[axis].copy()
        row = picture.shape[0] - 1 - int(np.clip(self.current_z, 0, picture.shape[0] - 1))
        picture[row, :] = CURSOR_RGB
        return picture

    def _show(self, axis: int) -> None:
        picture = self.picture(axis)
        h, w, _ = picture.shape
        image = QImage(picture.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        plane = self.planes[axis]
        across = self.spacing[2] if axis == CORONAL else self.spacing[1]
        scale = min(plane.width() / (w * across), plane.height() / (h * self.spacing[0]))
        size = (max(1, int(w * across * scale)), max(1, int(h * self.spacing[0] * scale)))
        plane.setPixmap(QPixmap.fromImage(image).scaled(*size, Qt.IgnoreAspectRatio, Qt.FastTransformation))

    def _on_click(self, axis: int, fx: float, fy: float) -> None:
        n_z = self.hu.shape[0]
        z = int(np.clip(round((1 - fy) * (n_z - 1)), 0, n_z - 1))
        other = SAGITTAL if axis == CORONAL else CORONAL
        across = self.hu.shape[2 if axis == CORONAL else 1]
        self.sliders[other].setValue(int(np.clip(round(fx * (across - 1)), 0, across - 1)))
        self.sliceClicked.emit(z)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        for axis in self._pictures:
            self._show(axis)
