"""The PACS worklist dock widget: the CT studies of a DICOMweb server, one click opens one.

A thin Qt shell over :func:`ptx_annotator.pacs.worklist` (the same rows as ``ptx-annotate
worklist``, patient-free) and :func:`ptx_annotator.pacs.open_study_url` (cache, user store, the
readers' SEGs pulled). Listing and retrieving run in ``thread_worker``; the review widget this
dock opens studies in is its own (created on the first open), never found by scanning docks.
Credentials come from ``$PTX_DICOMWEB_AUTH`` (or the password field, kept only in memory).
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from ptx_annotator.errors import PtxError

COLUMNS = ("", "study", "description", "slices", "proposal / SEG", "readers")
SERVER_SETTING = "pacs_server"


def worklist_rows(server: str, auth: str | None = None) -> list[dict]:
    """The rows the widget shows (plain Python: tests and the widget call the same function)."""
    from ptx_annotator.io.dicomweb import parse_server_url
    from ptx_annotator.pacs import worklist

    return worklist(parse_server_url(server), auth=auth)


def row_cells(row: dict) -> list[str]:
    """The text of each column but the first (the Open button) for one worklist row."""
    from ptx_annotator.pacs import reader_progress

    study = f"accession {row['accession']}" if row["accession"] else f"date {row['date'] or '?'}"
    flags = " / ".join(word for word, on in (("proposal", row["proposal"]), ("SEG", row["seg"])) if on) or "—"
    readers = "; ".join(f"{name}: {reader_progress(entry)}" for name, entry in sorted(row["readers"].items()))
    return [study, row["description"], str(row["slices"]), flags, readers]


class WorklistWidget(QWidget):
    """List a DICOMweb server's CT studies; the Open button of a row opens it for review."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from ._settings import load_settings

        self.viewer = napari_viewer
        self.rows: list[dict] = []
        self.review_widget = None
        self.server_edit = QLineEdit(str(load_settings().get(SERVER_SETTING) or ""))
        self.server_edit.setPlaceholderText("http://HOST:PORT/dicom-web")
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.Password)
        self.password_edit.setPlaceholderText("USER:PASSWORD (default: $PTX_DICOMWEB_AUTH)")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.server_edit, 1)
        top.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.password_edit)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)

    def _auth(self) -> str | None:
        return self.password_edit.text().strip() or None

    # -- listing ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the server's studies in a worker thread."""
        from napari.qt.threading import create_worker

        server = self.server_edit.text().strip()
        self.status.setText(f"Listing the CT studies of {server}…")
        self.refresh_button.setEnabled(False)
        worker = create_worker(worklist_rows, server, self._auth(), _ignore_errors=True)  # errors: status line
        worker.returned.connect(self.show_rows)
        worker.errored.connect(self._error)
        worker.finished.connect(lambda: self.refresh_button.setEnabled(True))
        self._start(worker)

    def show_rows(self, rows: list[dict]) -> None:
        """Fill the table (main thread) and remember the server for next time."""
        from ._settings import load_settings, settings_path

        self.rows = list(rows)
        self.table.setRowCount(len(self.rows))
        for index, row in enumerate(self.rows):
            button = QPushButton("Open")
            button.clicked.connect(lambda _=False, i=index: self.open_row(i))
            self.table.setCellWidget(index, 0, button)
            for column, text in enumerate(row_cells(row), 1):
                self.table.setItem(index, column, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(self.rows)} CT studies")
        settings = load_settings()
        if settings.get(SERVER_SETTING) != self.server_edit.text().strip():
            from ptx_annotator.atomic import write_json_atomic

            settings[SERVER_SETTING] = self.server_edit.text().strip()
            try:
                write_json_atomic(settings_path(), settings)
            except OSError:
                pass  # remembering the server is a convenience

    # -- opening ---------------------------------------------------------------------------------
    def open_row(self, index: int) -> None:
        """Retrieve (or take from the cache) row ``index``'s study in a worker, then open it."""
        from napari.qt.threading import create_worker

        from ptx_annotator.pacs import open_study_url

        row = self.rows[index]
        self.status.setText(f"Opening {row['description'] or row['study_uid']}…")
        worker = create_worker(open_study_url, row["url"], auth=self._auth(), _ignore_errors=True)
        worker.returned.connect(self.show_study)
        worker.errored.connect(self._error)
        self._start(worker)

    def show_study(self, opened) -> None:
        """Open a resolved study in the viewer's review widget, docking one if there is none (main thread)."""
        from ._owner import owner_of
        from ._review_widget import ReviewWidget

        self.review_widget = owner_of(self.viewer).review_widget
        if self.review_widget is None:
            self.review_widget = ReviewWidget(self.viewer)
            window = getattr(self.viewer, "window", None)
            if window is not None and hasattr(window, "add_dock_widget"):
                window.add_dock_widget(self.review_widget, name="Pneumothorax review", area="right")
        try:
            from .._launch import ask_annotator
            from ._settings import remember_annotator, remembered_annotator

            annotator = self.review_widget.annotator_edit.text().strip() or remembered_annotator() \
                or ask_annotator(self)
            remember_annotator(annotator)
            self.review_widget.open_study(opened.folder, annotator, store_dir=str(opened.store_dir))
        except PtxError as exc:
            self._error(exc)
            return
        notes = "; ".join(opened.notes)
        self.status.setText(f"Opened study {opened.ref.study_uid}" + (f" ({notes})" if notes else ""))

    # -- plumbing --------------------------------------------------------------------------------
    @staticmethod
    def _start(worker) -> None:
        worker.start()  # a running worker keeps itself alive (superqt's worker set)

    def _error(self, exc) -> None:
        text = str(exc) if isinstance(exc, PtxError) else f"{type(exc).__name__}: {exc}"
        self.status.setText((text.strip().splitlines() or [""])[0])
