"""The Compare widget in a real napari viewer (Xvfb): layers in, disagreement layer out, row click jumps."""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from ptx_annotator.compare import BOTH, ONLY_A, ONLY_B
from ptx_annotator.io import save_mask_nifti
from ptx_annotator.plugins.napari._qt._compare_widget import (
    DISAGREEMENT_LAYER, CompareWidget, ReaderSource, compare_sources,
)
from ptx_annotator.review.store import Annotation, AnnotationStore
from ptx_annotator.volume import Volume

SPACING = (5.0, 0.8, 0.8)


def _readers():
    a = np.zeros((8, 40, 48), np.uint8)
    b = np.zeros_like(a)
    a[2:6, 10:30, 10:30] = 1
    b[2:6, 10:30, 14:34] = 1
    b[5, 0:10, 0:10] = 1  # slice 5 is the most disputed: extra island
    a[1, 5:8, 5:8] = 1    # slice 1: only reader A
    return a, b


def _click_row(qtbot, table, row):
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=rect.center())


def test_widget_compares_two_labels_layers(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, b = _readers()
    viewer.add_labels(a, name="alice", scale=SPACING)
    viewer.add_labels(b, name="bob", scale=SPACING)
    widget = CompareWidget(viewer)
    qtbot.addWidget(widget)
    assert [widget.combo_a.itemText(i) for i in range(widget.combo_a.count())] == ["layer: alice", "layer: bob"]
    assert widget.combo_a.currentText() == "layer: alice" and widget.combo_b.currentText() == "layer: bob"

    qtbot.mouseClick(widget.compute_button, Qt.LeftButton)
    layer = viewer.layers[DISAGREEMENT_LAYER]
    np.testing.assert_array_equal(layer.data == ONLY_A, (a == 1) & (b == 0))
    np.testing.assert_array_equal(layer.data == ONLY_B, (a == 0) & (b == 1))
    np.testing.assert_array_equal(layer.data == BOTH, (a == 1) & (b == 1))
    assert tuple(layer.scale) == SPACING
    assert "Dice" in widget.summary_label.text()

    disputed = [int(np.count_nonzero(a[z] != b[z])) for z in range(8)]
    marked = [z for z in range(8) if a[z].any() or b[z].any()]
    assert widget.table.rowCount() == len(marked)
    column = [int(widget.table.item(r, 4).text()) for r in range(widget.table.rowCount())]
    assert column == sorted(column, reverse=True) and column[0] == max(disputed)
    assert int(widget.table.item(0, 0).text()) == int(np.argmax(disputed)) == 5

    viewer.dims.set_current_step(0, 0)
    for row in (0, widget.table.rowCount() - 1):
        _click_row(qtbot, widget.table, row)
        assert viewer.dims.current_step[0] == int(widget.table.item(row, 0).text())
    assert viewer.dims.current_step[0] != 5  # the last click really moved away from the first row's slice

    # computing again replaces the layer instead of stacking a second one
    qtbot.mouseClick(widget.compute_button, Qt.LeftButton)
    assert [lay.name for lay in viewer.layers].count(DISAGREEMENT_LAYER) == 1
    assert "layer: disagreement (A vs B)" not in [widget.combo_a.itemText(i) for i in range(widget.combo_a.count())]


def test_widget_shows_a_geometry_refusal_not_a_traceback(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, b = _readers()
    viewer.add_labels(a, name="alice", scale=SPACING)
    viewer.add_labels(b[:, :30], name="cropped", scale=SPACING)
    widget = CompareWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.compute() is None
    assert "not on the same voxel grid" in widget.summary_label.text()
    assert DISAGREEMENT_LAYER not in [lay.name for lay in viewer.layers]


def test_widget_lists_annotators_of_the_study_store(make_napari_viewer, qtbot, tmp_path):
    a, b = _readers()
    affine = np.diag([*SPACING, 1.0])
    study = tmp_path / "study"
    study.mkdir()
    ct_path = study / "ct.nii.gz"
    save_mask_nifti(np.zeros(a.shape, np.uint8), affine, ct_path)  # stand-in CT file on the grid
    volume = Volume(hu=np.zeros(a.shape, np.int16), spacing=SPACING, affine=affine, source=str(ct_path))
    store = AnnotationStore.for_study(ct_path)
    for name, mask in (("alice", a), ("bob", b)):
        annotation = Annotation.empty(volume, name)
        annotation.mask[:] = mask
        store.save(annotation)
    store.close()

    viewer = make_napari_viewer()
    viewer.add_image(volume.hu, name="CT", scale=SPACING, metadata={
        "ptx_series_key": volume.key, "ptx_source": str(ct_path), "ptx_spacing": list(SPACING),
        "ptx_affine": affine.tolist()})
    widget = CompareWidget(viewer)
    qtbot.addWidget(widget)
    assert [widget.combo_a.itemText(i) for i in range(widget.combo_a.count())] == ["store: alice", "store: bob"]
    comparison = widget.compute()
    assert comparison.readers == ["alice", "bob"]
    np.testing.assert_array_equal(viewer.layers[DISAGREEMENT_LAYER].data, a + 2 * b)


def test_plain_function_on_mask_files_without_a_viewer(tmp_path):
    a, b = _readers()
    affine = np.diag([*SPACING, 1.0])
    paths = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    save_mask_nifti(a, affine, paths[0])
    save_mask_nifti(b, affine, paths[1])
    comparison = compare_sources(ReaderSource("file", "a", path=str(paths[0])), ReaderSource("file", "b", path=str(paths[1])))
    assert comparison.spacing == pytest.approx(SPACING)
    assert comparison.summary["volume_a_ml"] == pytest.approx(a.sum() * np.prod(SPACING) / 1000)
    assert comparison.ranked_slices[0] == 5


def _dicom_study_in_a_sub_folder(tmp_path, monkeypatch):
    """study/dicom/ holds the series (the layout `simulate` writes); study/.ptx is the store."""
    from phantom_dicom import write_dicom_series  # tests/napari is on sys.path

    from ptx_annotator.synthetic.phantom import make_chest_phantom

    monkeypatch.setenv("PTX_ANNOTATOR_CONFIG", str(tmp_path / "settings.json"))
    case = make_chest_phantom(shape=(6, 64, 64), spacing=(5.0, 4.5, 4.5), side="right", fraction=0.3)
    write_dicom_series(tmp_path / "study" / "dicom", case, "right ptx")
    return tmp_path / "study", case


def test_compare_sees_the_study_store_when_the_ct_sits_in_a_sub_folder(make_napari_viewer, qtbot, tmp_path,
                                                                       monkeypatch):
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget

    study, case = _dicom_study_in_a_sub_folder(tmp_path, monkeypatch)
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    session = review.open_study(study, "alice")  # the study root: its store is study/.ptx
    session.annotation.mask[:] = case.truth
    session.mark_edited(range(session.n_slices))
    assert review.autosave()
    bob = Annotation.empty(session.volume, "bob")
    bob.mask[2] = 1
    AnnotationStore.for_study(study).save(bob)
    assert (study / ".ptx").is_dir() and not (study / "dicom" / ".ptx").exists()
    widget = CompareWidget(viewer)
    qtbot.addWidget(widget)
    labels = [widget.combo_a.itemText(i) for i in range(widget.combo_a.count())]
    assert "store: alice" in labels and "store: bob" in labels
    widget.combo_a.setCurrentIndex(labels.index("store: alice"))
    widget.combo_b.setCurrentIndex(labels.index("store: bob"))
    comparison = widget.compute()
    assert comparison.summary["volume_a_ml"] == pytest.approx(case.truth.sum() * session.volume.voxel_volume_ml)
    review.close_session()


def test_compare_finds_a_store_given_with_store_through_the_layer(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from ptx_annotator.plugins.napari._qt._review_widget import ReviewWidget

    study, case = _dicom_study_in_a_sub_folder(tmp_path, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    session = review.open_study(study, "alice", store_dir=elsewhere)
    assert review.image_layer.metadata["ptx_store_root"] == str(elsewhere)  # the root travels with the layer
    session.flag(1)
    assert review.autosave()
    other = Annotation.empty(session.volume, "bob")
    other.mask[3] = 1
    AnnotationStore(elsewhere).save(other)
    widget = CompareWidget(viewer)
    qtbot.addWidget(widget)
    labels = [widget.combo_a.itemText(i) for i in range(widget.combo_a.count())]
    assert {"store: alice", "store: bob"} <= set(labels)
    assert not (study / ".ptx").exists()  # nothing was written into the study
    review.close_session()


def test_an_nrrd_mask_file_is_read_by_the_one_mask_reader(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    a, b = _readers()
    affine = np.diag([*SPACING, 1.0])
    save_mask_nifti(a, affine, tmp_path / "a.nii.gz")
    # NRRD stores the axes as (x, y, z); axis k of the file is array axis 2 - k, whose LPS step is affine column 2 - k
    nrrd.write(str(tmp_path / "b.nrrd"), np.ascontiguousarray(b.transpose(2, 1, 0)),
               {"space": "left-posterior-superior", "space directions": affine[:3, 2::-1].T.tolist(),
                "space origin": [0.0, 0.0, 0.0]})
    comparison = compare_sources(ReaderSource("file", "a", path=str(tmp_path / "a.nii.gz")),
                                 ReaderSource("file", "b", path=str(tmp_path / "b.nrrd")))
    assert comparison.summary["volume_b_ml"] == pytest.approx(b.sum() * np.prod(SPACING) / 1000)
