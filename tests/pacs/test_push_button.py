"""The review widget's push button against the real Orthanc: the reader's edits go back as their SEG."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import run_cli

pytest.importorskip("napari")


def test_push_button_stores_the_readers_edited_mask_as_their_seg(make_napari_viewer, qtbot, orthanc, workstation,
                                                                 tmp_path, capsys, monkeypatch):
    from ptx_annotator.io.dicomweb import Connection, parse_study_url
    from ptx_annotator.io.dicomweb_cache import cached_ct
    from ptx_annotator.io.seg import read_seg
    from ptx_annotator.pacs import reader_segs
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget
    from ptx_annotator.review.states import EDITED

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    assert run_cli(["info", orthanc.study_url()], capsys)[0] == 0  # retrieves the study into the cache
    folder = cached_ct(parse_study_url(orthanc.study_url()))
    widget = ReviewWidget(make_napari_viewer())
    qtbot.addWidget(widget)
    session = widget.open_study(str(folder), "kim", store_dir=str(tmp_path / "store"), propose=False)
    assert session is not None and widget.push_control.button.isEnabled()
    z = session.current_slice
    widget.mask_layer.paint((z, 210, 115), 1)  # a stroke, as the brush makes it
    qtbot.waitUntil(lambda: session.state() == EDITED and session.annotation.mask[z].any(), timeout=5000)
    session.accept_slices([i for i in range(session.n_slices) if i != z])
    widget.push_control.push()
    qtbot.waitUntil(lambda: widget.push_control.last_result is not None or "fail" in widget.status_label.text(),
                    timeout=120_000)
    result = widget.push_control.last_result
    assert result is not None, widget.status_label.text()
    assert result.reader == "kim" and result.reviewed_slices == session.n_slices
    assert "Pushed kim's SEG" in widget.status_label.text()
    assert orthanc.auth.split(":")[1] not in widget.status_label.text()
    connection = Connection(orthanc.url, orthanc.auth)
    ours = [s for s in reader_segs(connection, parse_study_url(orthanc.study_url())) if s.reader == "kim"]
    assert len(ours) == 1
    path = tmp_path / "back.dcm"
    path.write_bytes(connection.instance_bytes(orthanc.ct_study, ours[0].series_uid, ours[0].sop_uid))
    back = read_seg(path, session.volume)
    painted = session.annotation.mask != 0
    assert painted[z].any() and np.array_equal(back.mask != 0, painted)
    widget.close_session()


def test_push_button_is_off_for_a_local_study(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget
    from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    ct, _ = save_phantom(make_chest_phantom(), tmp_path / "study")
    widget = ReviewWidget(make_napari_viewer())
    qtbot.addWidget(widget)
    assert widget.open_study(ct, "lee", store_dir=str(tmp_path / "store"), propose=False) is not None
    assert not widget.push_control.button.isEnabled()
    assert "DICOMweb URL" in widget.push_control.button.toolTip()
    widget.close_session()
