"""The Fine-tune dock widget: one button trains on the reviewed slices of the study on screen.

A thin Qt shell over :mod:`ptx_annotator.training.interactive`. The study is found through the
CT layer's metadata (``ptx_series_key``, ``ptx_source``; the store by ``ptx_store_root``, set by
the review widget, else the one store-root rule); the open review session through the viewer's
:class:`._owner.ReviewOwner`. The settings are a magicgui form. Training runs in a ``thread_worker``; its progress reaches the main thread through a
queued Qt signal, and the loss plot, the progress bar and every layer are only touched there. At the end the widget shows the old
and the new model's hold-out Dice; if the new model became active, it proposes again the slices
nobody has reviewed (an open review session first, then every other annotator in the store).
"""

from __future__ import annotations

from qtpy.QtCore import QObject, QPointF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import (
    QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from ptx_annotator.errors import PtxError

from ._owner import owner_of

PLOT_COLORS = {"train_loss": "#1f77b4", "val_loss": "#ff7f0e"}


class LossPlot(QWidget):
    """A small painted plot of training and validation loss per epoch."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.history: list[dict] = []
        self.setMinimumHeight(110)

    def set_history(self, history: list[dict]) -> None:
        self.history = [dict(row) for row in history]
        self.update()

    def paintEvent(self, event):  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#202124"))
        values = [row[key] for row in self.history for key in PLOT_COLORS if row.get(key) is not None]
        if len(self.history) < 1 or not values:
            painter.setPen(QColor("#aaaaaa"))
            painter.drawText(self.rect(), Qt.AlignCenter, "loss per epoch")
            return
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        margin, width, height = 8, self.width() - 16, self.height() - 16
        n = max(len(self.history) - 1, 1)
        for key, color in PLOT_COLORS.items():
            points = [QPointF(margin + width * i / n, margin + height * (1 - (row[key] - low) / span))
                      for i, row in enumerate(self.history) if row.get(key) is not None]
            painter.setPen(QPen(QColor(color), 2))
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            for p in points:
                painter.drawEllipse(p, 2, 2)
        painter.setPen(QColor("#dddddd"))
        painter.drawText(margin, margin + 10, f"{high:.3f}")
        painter.drawText(margin, self.height() - margin, f"{low:.3f}   blue: training, orange: validation")


class _Relay(QObject):
    """Carries progress from the worker thread to the main thread (a queued signal)."""

    progressed = Signal(object)


class FineTuneWidget(QWidget):
    """Train on the reviewed slices of the CT on screen; show old vs new hold-out Dice."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.owner = owner_of(napari_viewer)
        self.worker = None
        self.outcome = None
        self.reproposed: dict = {}
        self._cancel = False
        self._relay = _Relay(self)
        self._relay.progressed.connect(self._on_progress)
        self._build_ui()

    # -- UI --------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        from magicgui.widgets import ComboBox, Container, SpinBox

        layout = QVBoxLayout(self)
        self.form = Container(widgets=[
            SpinBox(name="epochs", label="max epochs", value=30, min=1, max=500),
            SpinBox(name="size", label="input size (new model, 0 = auto: 512 GPU / 256 CPU)", value=0,
                    min=0, max=1024, step=32),
            ComboBox(name="encoder", label="encoder (new model)", choices=["resnet50", "resnet34"], value="resnet50"),
        ])
        layout.addWidget(self.form.native)
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Fine-tune on reviewed slices")
        self.train_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        layout.addWidget(self.progress)
        self.plot = LossPlot()
        layout.addWidget(self.plot)
        self.status = QLabel("Review some slices (accept or edit), then fine-tune.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # -- finding the study -------------------------------------------------------------------
    def ct_layer(self):
        """The selected CT layer of this plugin, else the first one."""
        candidates = [layer for layer in self.viewer.layers if "ptx_series_key" in (layer.metadata or {})]
        active = self.viewer.layers.selection.active
        if active in candidates:
            return active
        if not candidates:
            raise PtxError("No CT opened with the ptx-annotator reader is in the viewer: open a study first (File > Open).")
        return candidates[0]

    def review_session(self, series_key: str):
        """The open ReviewSession of this series, from the viewer's one owner (None if none)."""
        return self.owner.session_for(series_key)

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        """Collect the study from the viewer and train in a thread worker."""
        from napari.qt.threading import thread_worker

        from .._layers import store_root_of, volume_from_layer

        try:
            layer = self.ct_layer()
            volume = volume_from_layer(layer)
            store_root = store_root_of(layer.metadata)
            if volume is None or store_root is None:
                raise PtxError("The CT layer carries no study location (ptx_source / ptx_store_root); reopen the study.")
        except PtxError as exc:
            self._say(str(exc))
            return
        session = self.review_session(volume.key)
        if session is not None and session.store is not None and not self.owner.save_now():
            self._say(session.last_save_error or "Could not save the open review; training was not started.")
            return
        self._cancel = False
        self.outcome, self.reproposed = None, {}
        self.plot.set_history([])
        worker = thread_worker(self._work, start_thread=False, ignore_errors=True)(
            volume, store_root, self.config(), self.form.encoder.value)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._say("Training…")
        worker.start()

    def config(self):
        from ptx_annotator.training.trainer import TrainConfig

        return TrainConfig(epochs=int(self.form.epochs.value), input_size=int(self.form.size.value) or None)

    def _work(self, volume, store_root, config, encoder):
        """Run in the worker thread; progress goes through the relay signal. Returns what ``_on_done`` shows."""
        from ptx_annotator.training.interactive import finetune_series, reproposal_results

        emit = self._relay.progressed.emit
        outcome = finetune_series(volume, store_root, config=config, encoder=encoder, progress=emit, should_cancel=lambda: self._cancel)
        proposal = None
        registration = outcome.registration
        if registration is not None and registration.activated and not self._cancel:
            source, params, results = reproposal_results(volume, registration.path, should_cancel=lambda: self._cancel)
            collected = []
            for result in results:
                collected.append(result)
                emit(("propose", result.done, result.total))
            proposal = (source, params, collected, len(collected) == volume.shape[0])
        return outcome, volume, store_root, proposal

    def cancel(self) -> None:
        self._cancel = True
        self._say("Cancelling after the current step; the best model so far is kept.")

    # -- main-thread callbacks ------------------------------------------------------------------
    def _on_progress(self, item) -> None:
        if isinstance(item, tuple) and item[0] == "propose":
            _, done, total = item
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self._say(f"Proposing unreviewed slices with the new model: {done}/{total}")
            return
        event = item
        self.progress.setRange(0, max(event.steps, 1))
        self.progress.setValue(event.step)
        if event.kind == "epoch":
            self.plot.set_history(event.history)
            dice = "n/a" if event.val_dice is None else f"{event.val_dice:.3f}"
            self._say(f"epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f}, validation Dice {dice}")

    def _on_done(self, value) -> None:
        outcome, volume, store_root, proposal = value
        self.outcome = outcome
        self.plot.set_history(outcome.result.history)
        lines = [self.summary(outcome)]
        if proposal is not None:
            lines.append(self._apply_proposal(volume, store_root, proposal))
        self._say("\n".join(lines))

    def _apply_proposal(self, volume, store_root, proposal) -> str:
        from ptx_annotator.training.interactive import apply_reproposal, repropose_store

        source, params, results, completed = proposal
        session = self.review_session(volume.key)
        skip = []
        if session is not None:  # its views follow the session's events
            changed = apply_reproposal(session, source, params, results, completed)
            self.reproposed[session.annotator] = len(changed)
            skip.append(session.annotator)
        self.reproposed.update(repropose_store(volume, store_root, source, params, results, skip, completed))
        parts = [f"{name}: {n} slices" if isinstance(n, int) else f"{name}: {n}" for name, n in self.reproposed.items()]
        return "Re-proposed unreviewed slices - " + ("; ".join(parts) or "no annotators")

    @staticmethod
    def summary(outcome) -> str:
        new = outcome.new_metrics.get("dice") if outcome.new_metrics else None
        old = outcome.old_metrics.get("dice") if outcome.old_metrics else None
        text = (f"Hold-out Dice: new {_fmt(new)}, old {_fmt(old)}"
                + (f" ({outcome.old_version})" if outcome.old_version else " (no active model before)"))
        return f"{text}.\n{outcome.message}"

    def _on_error(self, exc) -> None:
        self._say(str(exc) if isinstance(exc, PtxError) else f"Training failed: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.worker = None

    def _say(self, text: str) -> None:
        self.status.setText(text)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
