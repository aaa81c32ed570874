"""Fixtures of the review-widget tests: a test module's phantom ``case`` saved as a study, and the
review widget opened on it (for annotator "alice", store beside the study)."""

import pytest

from ptx_annotator.synthetic.phantom import save_phantom


@pytest.fixture
def study(case, tmp_path, monkeypatch):
    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    ct_path, _ = save_phantom(case, tmp_path / "study")
    return ct_path, tmp_path / "store"


@pytest.fixture
def widget(make_napari_viewer, study):
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget

    viewer = make_napari_viewer()
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_study(study[0], "alice", store_dir=study[1])
    yield widget
    widget.close_session()
