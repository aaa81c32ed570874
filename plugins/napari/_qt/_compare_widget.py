"""The Compare dock widget: two readers' masks -> disagreement layer and a per-slice Dice table.

A thin Qt shell over :func:`compare_sources` (plain Python, tested without a viewer), which wraps
:func:`ptx_annotator.compare.compare_masks`. Readers come from three places:

* Labels layers in the viewer (3D, same shape; spacing from the layer's ``scale``);
* annotators in the annotation store of the study in the viewer, found through a layer's metadata
  (``ptx_store_root``, which the review widget sets, ``--store`` included, else the store-root
  rule of :func:`ptx_annotator.review.store.store_root_for` on ``ptx_source``, which finds the
  study's store above a series sub-folder; with ``ptx_series_key``; spacing from ``ptx_spacing``
  or the layer's scale);
* mask files picked with "Add mask file…" (NIfTI, NRRD or DICOM SEG, read by the one mask reader).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView, QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ptx_annotator.compare import DISAGREEMENT_COLORS, Comparison, compare_masks, slice_table
from ptx_annotator.errors import PtxError

DISAGREEMENT_LAYER = "disagreement (A vs B)"
TABLE_COLUMNS = ("slice", "Dice", "voxels A", "voxels B", "disputed")


@dataclass
class ReaderSource:
    """One reader's mask: where it comes from and how to load it."""

    kind: str  # "layer", "store" or "file"
    name: str
    layer: object = None
    store_root: str | None = None
    series_key: str | None = None
    path: str | None = None
    spacing: tuple | None = None
    affine: object = None

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.name}"

    def load(self) -> np.ndarray:
        if self.kind == "layer":
            return np.asarray(self.layer.data)
        if self.kind == "store":
            from ptx_annotator.review.store import AnnotationStore

            annotation = AnnotationStore(self.store_root).load(self.series_key, self.name)
            if annotation is None:
                raise PtxError(f"Annotator '{self.name}' has no saved mask in '{self.store_root}' any more.")
            self.affine = annotation.affine
            return annotation.mask
        from ptx_annotator.io.masks import read_mask  # the one mask reader: NIfTI, NRRD, DICOM SEG
        from ptx_annotator.io.volume_files import spacing_from_affine

        read = read_mask(self.path)
        self.affine = read.affine
        self.spacing = spacing_from_affine(self.affine)
        return read.mask


def viewer_sources(viewer) -> list[ReaderSource]:
    """Every reader the viewer offers: its 3D Labels layers and the annotators of its study's store."""
    from napari.layers import Labels

    sources = []
    for layer in viewer.layers:
        if isinstance(layer, Labels) and np.ndim(layer.data) == 3 and layer.name != DISAGREEMENT_LAYER:
            sources.append(ReaderSource("layer", layer.name, layer=layer, spacing=tuple(float(s) for s in layer.scale)))
    seen = set()
    for layer in viewer.layers:
        meta = getattr(layer, "metadata", {}) or {}
        root = _store_root(meta)
        key = meta.get("ptx_series_key")
        if root is None or not key or (root, key) in seen:
            continue
        seen.add((root, key))
        from ptx_annotator.review.store import AnnotationStore

        spacing = tuple(float(s) for s in meta.get("ptx_spacing", layer.scale))
        for name in AnnotationStore(root).annotators(key):
            sources.append(ReaderSource("store", name, store_root=root, series_key=key, spacing=spacing,
                                        affine=np.asarray(meta["ptx_affine"]) if "ptx_affine" in meta else None))
    return sources


def _store_root(meta: dict) -> str | None:
    """The layer's study store (:func:`._layers.store_root_of`, the one rule), if it exists."""
    from .._layers import store_root_of

    if not meta.get("ptx_series_key"):
        return None
    root = store_root_of(meta)
    return os.fspath(root) if root is not None and root.is_dir() else None


def compare_sources(reader_a: ReaderSource, reader_b: ReaderSource) -> Comparison:
    """Load two readers and compare them; the plain function behind the widget."""
    if reader_a.label == reader_b.label:
        raise PtxError(f"Reader A and reader B are both '{reader_a.label}': choose two different masks.")
    masks = {reader_a.name: reader_a.load()}
    name_b = reader_b.name if reader_b.name != reader_a.name else f"{reader_b.name} ({reader_b.kind})"
    masks[name_b] = reader_b.load()
    spacing = reader_a.spacing or reader_b.spacing or (1.0, 1.0, 1.0)
    affines = None
    if reader_a.affine is not None and reader_b.affine is not None:
        affines = {reader_a.name: np.asarray(reader_a.affine), name_b: np.asarray(reader_b.affine)}
    return compare_masks(masks, spacing, affines=affines)


class CompareWidget(QWidget):
    """Choose readers A and B, compute, see where they disagree; a table row click jumps to its slice."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.sources: list[ReaderSource] = []
        self.extra_files: list[ReaderSource] = []
        self.comparison: Comparison | None = None
        self.disagreement_layer = None
        self._build_ui()
        self.viewer.layers.events.inserted.connect(lambda event: self.refresh_sources())
        self.viewer.layers.events.removed.connect(lambda event: self.refresh_sources())
        self.refresh_sources()

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        grid = QGridLayout()
        self.combo_a, self.combo_b = QComboBox(), QComboBox()
        grid.addWidget(QLabel("Reader A"), 0, 0)
        grid.addWidget(self.combo_a, 0, 1)
        grid.addWidget(QLabel("Reader B"), 1, 0)
        grid.addWidget(self.combo_b, 1, 1)
        layout.addLayout(grid)
        row = QHBoxLayout()
        self.file_button = QPushButton("Add mask file…")
        self.file_button.clicked.connect(self._choose_file)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh_sources)
        self.compute_button = QPushButton("Compare")
        self.compute_button.clicked.connect(self.compute)
        for button in (self.file_button, self.refresh_button, self.compute_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.summary_label = QLabel("Choose two readers and press Compare.")
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.cellClicked.connect(lambda row, column: self.go_to_row(row))
        layout.addWidget(self.table)

    # -- readers -------------------------------------------------------------------------------
    def refresh_sources(self) -> None:
        try:
            self.sources = viewer_sources(self.viewer) + self.extra_files
        except PtxError as exc:
            self.sources = list(self.extra_files)
            self._show_error(exc)
        for combo, default in ((self.combo_a, 0), (self.combo_b, 1)):
            previous = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([source.label for source in self.sources])
            index = combo.findText(previous)
            combo.setCurrentIndex(index if index >= 0 else min(default, combo.count() - 1))
            combo.blockSignals(False)

    def add_mask_file(self, path) -> None:
        name = Path(path).name.removesuffix(".gz").removesuffix(".nii").removesuffix(".nrrd")
        self.extra_files.append(ReaderSource("file", name, path=os.fspath(path)))
        self.refresh_sources()

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Mask file", "",
                                              "Masks (*.nii *.nii.gz *.nrrd *.nhdr *.dcm);;All files (*)")
        if path:
            self.add_mask_file(path)

    # -- compute and show ----------------------------------------------------------------------
    def compute(self) -> Comparison | None:
        """Compare the chosen readers, show the disagreement layer and fill the table."""
        index_a, index_b = self.combo_a.currentIndex(), self.combo_b.currentIndex()
        if index_a < 0 or index_b < 0:
            self._show_error("No readers to compare: open two Labels layers, a study with saved masks, or add mask files.")
            return None
        try:
            comparison = compare_sources(self.sources[index_a], self.sources[index_b])
        except (PtxError, ValueError, OSError) as exc:
            self._show_error(exc)
            return None
        self.comparison = comparison
        self._show_layer(comparison)
        self._fill_table(comparison)
        s = comparison.summary
        self.summary_label.setStyleSheet("")
        self.summary_label.setText(
            f"{s['reader_a']} vs {s['reader_b']}: Dice {s['dice']:.3f}, HD95 {s['hd95_mm']:.1f} mm, "
            f"ASSD {s['assd_mm']:.2f} mm, volumes {s['volume_a_ml']:.1f} / {s['volume_b_ml']:.1f} mL, "
            f"{s['slices_disagreeing']} slices disputed. Layer: orange only A, blue only B, green both.")
        return comparison

    def _show_layer(self, comparison: Comparison) -> None:
        from napari.utils import DirectLabelColormap

        colormap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), **DISAGREEMENT_COLORS})
        if self.disagreement_layer is not None and self.disagreement_layer in self.viewer.layers:
            self.disagreement_layer.data = comparison.disagreement
            self.disagreement_layer.scale = comparison.spacing
        else:
            self.disagreement_layer = self.viewer.add_labels(
                comparison.disagreement, name=DISAGREEMENT_LAYER, scale=comparison.spacing, opacity=0.6)
        self.disagreement_layer.colormap = colormap
        self.disagreement_layer.editable = False

    def _fill_table(self, comparison: Comparison) -> None:
        rows = slice_table(comparison.per_slice)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            values = (row["slice"], f"{row['dice']:.3f}", row["voxels_a"], row["voxels_b"], row["disagreement_voxels"])
            for column, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setData(Qt.UserRole, int(row["slice"]))
                self.table.setItem(i, column, item)

    def go_to_row(self, row: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.viewer.dims.set_current_step(0, int(item.data(Qt.UserRole)))

    def _show_error(self, exc) -> None:
        self.summary_label.setStyleSheet("color: #e66101")
        self.summary_label.setText(str(exc))
