"""The controls of the review widget, laid out; the widget wires them to its actions."""

from __future__ import annotations

from magicgui.widgets import Container, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton, QSizePolicy,
    QSlider, QVBoxLayout,
)

from ._shortcuts import help_text
from ._state_strip import SliceStateStrip

CLASSICAL_ENTRY = "classical"
CHECKPOINT_ENTRY = "model checkpoint…"

#: (key in widget.buttons, text, widget method)
BUTTONS = (
    ("accept", "Accept (A)", "accept_slice"), ("flag", "Flag (F)", "flag_slice"),
    ("previous", "◀ Most needed (P)", "previous_needing_review"), ("next", "Most needed (N) ▶", "next_needing_review"),
    ("accept_range", "Accept range… (⇧A)", "accept_range"), ("accept_empty", "Accept empty… (⇧E)", "accept_empty"),
    ("fill", "Fill between (I)", "fill_between"), ("copy", "Copy proposal (C)", "copy_proposal_range"),
    ("clear", "Clear slice", "clear_slice"), ("undo", "Undo (Ctrl+Z)", "undo"),
)


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
    # the range the bulk actions and tools work on: a form, so magicgui
    widget.range_form = Container(widgets=[SpinBox(name="first", label="From slice", min=0, max=0),
                                           SpinBox(name="last", label="to", min=0, max=0)],
                                  layout="horizontal", labels=True)
    layout.addWidget(widget.range_form.native)
    grid = QGridLayout()
    widget.buttons = {}
    for position, (key, text, method) in enumerate(BUTTONS):
        button = QPushButton(text)
        button.clicked.connect(lambda _=False, m=method: widget._run_action(getattr(widget, m)))
        grid.addWidget(button, position // 2, position % 2)
        widget.buttons[key] = button
    layout.addLayout(grid)
    row = QHBoxLayout()
    widget.hu_check = QCheckBox("HU-limited brush (U)")
    widget.hu_check.setToolTip("Painting keeps only air voxels (pleural air HU range)")
    widget.grow_check = QCheckBox("Grow region on click (G)")
    widget.grow_check.setToolTip("A click on the CT grows the connected pleural air in 3D from there")
    widget.grow_check.toggled.connect(widget._on_grow_toggled)
    widget.window_check = QCheckBox("Mediastinal (W)")
    widget.window_check.toggled.connect(widget._apply_window)
    for check in (widget.hu_check, widget.grow_check, widget.window_check):
        row.addWidget(check)
    layout.addLayout(row)
    row = QHBoxLayout()
    widget.proposer_combo = QComboBox()
    widget.proposer_combo.addItem(CLASSICAL_ENTRY)
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
    widget.threshold_slider.setEnabled(False)
    widget.threshold_slider.valueChanged.connect(lambda v: widget._run_action(widget.set_threshold, v / 100.0))
    row.addWidget(widget.threshold_label)
    row.addWidget(widget.threshold_slider, 1)
    layout.addLayout(row)
    widget.case_label = _fixed_label("")
    widget.case_label.setWordWrap(True)
    layout.addWidget(widget.case_label)
    widget.volume_label = _fixed_label("Pneumothorax: –")
    widget.volume_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    layout.addWidget(widget.volume_label)
    widget.status_label = QLabel("")
    widget.status_label.setWordWrap(True)
    layout.addWidget(widget.status_label)
    row = QHBoxLayout()
    row.addWidget(QLabel("Versions"))
    widget.restore_button = QPushButton("Restore selected")
    widget.restore_button.clicked.connect(lambda: widget._run_action(widget.restore_selected_version))
    widget.help_button = QPushButton("Shortcuts (F1)")
    widget.help_button.clicked.connect(widget.toggle_help)
    row.addWidget(widget.restore_button)
    row.addWidget(widget.help_button)
    layout.addLayout(row)
    widget.versions_list = QListWidget()
    widget.versions_list.setMaximumHeight(90)
    layout.addWidget(widget.versions_list)
    widget.help_panel = QLabel(help_text())
    widget.help_panel.setWordWrap(True)
    widget.help_panel.setVisible(False)
    layout.addWidget(widget.help_panel)
    layout.addStretch(1)


def _fixed_label(text: str) -> QLabel:
    """A label whose changing text never resizes the dock (a relayout would redraw the canvas)."""
    label = QLabel(text)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    label.setMinimumWidth(50)
    return label
