"""The controls of the review widget, laid out; the widget wires them to its actions."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy, QSlider,
    QVBoxLayout,
)

from ._propose import CHECKPOINT_ENTRY, CLASSICAL
from ._state_strip import SliceStateStrip


def build_review_controls(widget) -> None:
    """Create the controls as attributes of ``widget`` and connect them to its methods."""
    layout = QVBoxLayout(widget)
    row = QHBoxLayout()
    row.addWidget(QLabel("Annotator"))
    widget.annotator_edit = QLineEdit()
    row.addWidget(widget.annotator_edit)
    widget.open_button = QPushButton("Open study…")
    widget.open_button.clicked.connect(widget._choose_study)
    widget.layer_button = QPushButton("Review CT layer")
    widget.layer_button.setToolTip("Review the selected CT layer opened with this plugin's reader")
    widget.layer_button.clicked.connect(lambda: widget._run_action(widget.review_selected_layer))
    row.addWidget(widget.open_button)
    row.addWidget(widget.layer_button)
    layout.addLayout(row)
    widget.series_combo = QComboBox()
    widget.series_combo.setVisible(False)
    widget.series_combo.activated.connect(lambda i: widget._run_action(widget.switch_series, i))
    layout.addWidget(widget.series_combo)
    widget.strip = SliceStateStrip()
    widget.strip.sliceClicked.connect(widget.go_to)
    layout.addWidget(widget.strip)
    widget.slice_label = _fixed_label("No series open")
    layout.addWidget(widget.slice_label)
    grid = QGridLayout()
    widget.buttons = {}
    for position, (key, text, handler) in enumerate([
        ("accept", "Accept (A)", widget.accept_slice), ("flag", "Flag (F)", widget.flag_slice),
        ("previous", "◀ Previous (P)", widget.previous_needing_review),
        ("next", "Next (N) ▶", widget.next_needing_review),
        ("clear", "Clear slice", widget.clear_slice), ("copy", "Copy proposal", widget.copy_proposal),
    ]):
        button = QPushButton(text)
        button.clicked.connect(lambda _=False, h=handler: widget._run_action(h))
        grid.addWidget(button, position // 2, position % 2)
        widget.buttons[key] = button
    layout.addLayout(grid)
    widget.window_check = QCheckBox("Mediastinal window (W)")
    widget.window_check.toggled.connect(widget._apply_window)
    layout.addWidget(widget.window_check)
    row = QHBoxLayout()
    widget.proposer_combo = QComboBox()
    widget.proposer_combo.addItem(CLASSICAL)
    widget.proposer_combo.addItem(CHECKPOINT_ENTRY)
    widget.proposer_combo.activated.connect(widget._on_proposer_picked)
    widget.propose_button = QPushButton("Propose")
    widget.propose_button.clicked.connect(lambda: widget._run_action(widget.toggle_proposal))
    row.addWidget(widget.proposer_combo, 1)
    row.addWidget(widget.propose_button)
    layout.addLayout(row)
    row = QHBoxLayout()
    widget.threshold_label = QLabel("Threshold 0.50")
    widget.threshold_slider = QSlider(Qt.Horizontal)
    widget.threshold_slider.setRange(5, 95)
    widget.threshold_slider.setValue(50)
    widget.threshold_slider.valueChanged.connect(lambda v: widget._run_action(widget.set_threshold, v / 100.0))
    row.addWidget(widget.threshold_label)
    row.addWidget(widget.threshold_slider, 1)
    layout.addLayout(row)
    widget.volume_label = _fixed_label("Pneumothorax: –")
    widget.volume_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    layout.addWidget(widget.volume_label)
    widget.status_label = QLabel("")
    widget.status_label.setWordWrap(True)
    layout.addWidget(widget.status_label)
    layout.addStretch(1)


def _fixed_label(text: str) -> QLabel:
    """A label whose changing text never resizes the dock (a relayout would redraw the canvas)."""
    label = QLabel(text)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    label.setMinimumWidth(50)
    return label
