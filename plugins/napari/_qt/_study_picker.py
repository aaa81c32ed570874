"""The study the review widget shows: its path, reader, store and series, behind the series picker.

:class:`StudyPicker` holds what ``open_study`` was given and fills the series combo; which
series comes first is the core's rule (:meth:`ptx_annotator.io.discovery.StudyScan.preferred_index`),
and where the annotations go is the one store rule (:meth:`AnnotationStore.for_study`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ptx_annotator.errors import PtxError


@dataclass
class OpenStudy:
    path: str
    annotator: str
    store_dir: str | None = None
    read_only: bool = False
    series: list = field(default_factory=list)  # SeriesFiles of a DICOM study; empty for a NIfTI / NRRD file


class StudyPicker:
    """The open study and its series combo (shown only when the study holds several series)."""

    def __init__(self, combo):
        self.combo = combo
        self.study: OpenStudy | None = None

    def open(self, path, annotator: str, store_dir=None, read_only: bool = False,
             series_uid: str | None = None) -> int:
        """Scan ``path``, list its series in the combo and return the index to show first."""
        from ptx_annotator.io import scan_study
        from ptx_annotator.io.volume_files import VOLUME_SUFFIXES

        is_file = str(path).lower().endswith(VOLUME_SUFFIXES)
        scan = None if is_file else scan_study(path)
        index = 0 if scan is None else scan.preferred_index(series_uid)
        self.study = OpenStudy(os.fspath(path), annotator, store_dir, read_only, [] if scan is None else scan.series)
        self.combo.clear()
        for series in self.study.series:
            self.combo.addItem(f"{series.description or 'series'} · {len(series.files)} images · "
                               f"{series.modality} · …{series.series_uid[-12:]}")
        self.combo.setVisible(len(self.study.series) > 1)
        self.combo.setCurrentIndex(index)
        return index

    def load(self, index: int):
        """The Volume of series ``index`` (the file itself for a NIfTI / NRRD study)."""
        from ptx_annotator.io import load_volume, read_series_files

        study = self._need()
        return read_series_files(study.series[index].files) if study.series else load_volume(study.path)

    def store(self):
        """The study's annotation store (``--store`` honoured); None for a read-only look at a read-only study."""
        from ptx_annotator.review.store import AnnotationStore

        study = self._need()
        try:
            return AnnotationStore.for_study(study.path, study.store_dir)
        except PtxError:
            if not study.read_only:
                raise
            return None  # nothing to load or save

    def _need(self) -> OpenStudy:
        if self.study is None:
            raise PtxError("Open a study first (Open study…).")
        return self.study
