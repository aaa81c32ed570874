"""The napari reader contract, the manifest and the sample data."""

from pathlib import Path

import numpy as np
import pytest

from ptx_annotator.synthetic.phantom import make_chest_phantom, save_phantom
from ptx_annotator.plugins.napari._reader import get_reader
from ptx_annotator.preprocessing import LUNG_WINDOW_HU

from shared_data import NRRD_CT, TCIA_CT, need

MANIFEST = Path(__file__).resolve().parents[2] / "plugins" / "napari" / "napari.yaml"


@pytest.fixture(scope="module")
def phantom_nifti(tmp_path_factory):
    case = make_chest_phantom(shape=(6, 64, 64), spacing=(5.0, 4.0, 4.0))
    ct_path, _ = save_phantom(case, tmp_path_factory.mktemp("phantom"))
    return case, ct_path


def check_ct_layer(layer_data, spacing):
    data, kwargs, kind = layer_data
    assert kind == "image"
    assert data.ndim == 3
    assert np.allclose(kwargs["scale"], spacing, atol=1e-3)
    assert tuple(kwargs["contrast_limits"]) == LUNG_WINDOW_HU
    meta = kwargs["metadata"]
    assert meta["ptx_series_key"] and meta["ptx_source"]
    assert np.asarray(meta["ptx_affine"]).shape == (4, 4)
    return data, kwargs


def test_unknown_paths_get_no_reader(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(text)) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader(str(tmp_path / "missing.nii.gz")) is None
    assert get_reader([str(text), str(text)]) is None


def test_nifti_reads_with_spacing_as_scale(phantom_nifti):
    case, path = phantom_nifti
    reader = get_reader(path)
    assert reader is not None
    layers = reader(path)
    assert len(layers) == 1
    data, kwargs = check_ct_layer(layers[0], case.volume.spacing)
    assert np.array_equal(data, case.volume.hu)
    assert np.allclose(kwargs["metadata"]["ptx_affine"], case.volume.affine, atol=1e-4)
    assert get_reader([path]) is not None


def test_dicom_folder_and_file_read_with_spacing_as_scale():
    folder = need(TCIA_CT)
    layers = get_reader(str(folder))(str(folder))
    assert len(layers) == 1
    data, kwargs = check_ct_layer(layers[0], (5.0, 0.842, 0.842))
    assert data.shape == (64, 512, 512)
    assert kwargs["metadata"]["ptx_series_uid"] == kwargs["metadata"]["ptx_series_key"]
    one_file = str(sorted(folder.glob("*.dcm"))[0])
    assert get_reader(one_file) is not None


def test_nrrd_reads_with_spacing_as_scale():
    path = str(need(NRRD_CT))
    data, kwargs = check_ct_layer(get_reader(path)(path)[0], (5.0, 0.570, 0.570))
    assert data.shape == (48, 512, 512)


def test_manifest_names_the_reader_widgets_and_sample():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "ptx-annotator"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands["ptx-annotator.get_reader"].endswith("_reader:get_reader")
    widgets = {w.command for w in manifest.contributions.widgets}
    assert {"ptx-annotator.review_widget", "ptx-annotator.compare_widget", "ptx-annotator.finetune_widget"} <= widgets
    assert manifest.contributions.readers[0].accepts_directories
    assert manifest.contributions.sample_data[0].key == "chest_phantom"


def test_sample_data_is_the_phantom_with_its_truth():
    from ptx_annotator.plugins.napari._sample_data import make_phantom_sample

    (image, image_kwargs, image_kind), (truth, truth_kwargs, truth_kind) = make_phantom_sample()
    assert (image_kind, truth_kind) == ("image", "labels")
    assert image_kwargs["scale"] == truth_kwargs["scale"] == (5.0, 1.5, 1.5)
    assert truth.sum() > 1000 and np.median(image[truth > 0]) < -950


def test_napari_open_folder_preselects_our_reader_for_a_dicom_folder(make_napari_viewer, tmp_path):
    """File > Open Folder on a DICOM folder: napari's reader dialog lists every compatible reader
    sorted by display name and preselects the first; ours must come first (napari's builtin reader
    reads a DICOM folder unscaled, "Inconsistent units")."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.plugins import _npe2

    from phantom_dicom import write_dicom_series  # tests/napari is on sys.path

    make_napari_viewer()  # plugins discovered
    folder = tmp_path / "series"
    write_dicom_series(folder, make_chest_phantom(shape=(4, 48, 48), spacing=(5.0, 4.0, 4.0)), "right ptx")
    readers = _npe2.get_readers(str(folder))
    assert "ptx-annotator" in readers and len(readers) >= 2  # napari's builtin reader claims it too
    dialog = QtReaderDialog(pth=str(folder), readers=readers)
    assert dialog._get_plugin_choice() == readers["ptx-annotator"]
    dialog = QtReaderDialog(pth=str(sorted(folder.iterdir())[0]), readers=_npe2.get_readers(str(sorted(folder.iterdir())[0])))
    assert dialog._get_plugin_choice() == readers["ptx-annotator"]  # one file of the series too
