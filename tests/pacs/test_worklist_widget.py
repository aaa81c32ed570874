"""The napari PACS worklist against the real Orthanc: list the CT studies, one click opens one."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")


def test_worklist_lists_and_one_click_opens_for_review(make_napari_viewer, qtbot, orthanc, workstation, tmp_path,
                                                       monkeypatch):
    from ptx_annotator.plugins.napari._qt._worklist_widget import WorklistWidget

    (tmp_path / "settings.json").write_text('{"annotator": "ivy"}')
    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget

    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)  # already docked from the Plugins menu: the worklist opens its study there
    viewer.window.add_dock_widget(review, name="Pneumothorax review", area="right")
    widget = WorklistWidget(viewer)
    qtbot.addWidget(widget)
    widget.server_edit.setText(orthanc.url)
    widget.refresh()
    qtbot.waitUntil(lambda: widget.table.rowCount() == 1, timeout=60_000)
    assert widget.rows[0]["study_uid"] == orthanc.ct_study
    assert widget.table.item(0, 3).text() == "64"
    widget.table.cellWidget(0, 0).click()
    qtbot.waitUntil(lambda: widget.review_widget is not None and widget.review_widget.session is not None,
                    timeout=120_000)
    assert widget.review_widget is review  # no second review widget in the same viewer
    session = widget.review_widget.session
    assert session.volume.series_uid == orthanc.ct_series and session.volume.shape[0] == 64
    assert str(workstation) in str(widget.review_widget.session.store.root)
    assert "Opened study" in widget.status.text()
    widget.review_widget.close_session()


def test_worklist_shows_a_wrong_password_as_one_line(make_napari_viewer, qtbot, orthanc, workstation, tmp_path,
                                                     monkeypatch):
    from ptx_annotator.plugins.napari._qt._worklist_widget import WorklistWidget

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    widget = WorklistWidget(make_napari_viewer())
    qtbot.addWidget(widget)
    widget.server_edit.setText(orthanc.url)
    widget.password_edit.setText("reader:wrong")
    widget.refresh()
    qtbot.waitUntil(lambda: "credentials" in widget.status.text(), timeout=60_000)
    assert "wrong" not in widget.status.text() and widget.table.rowCount() == 0
