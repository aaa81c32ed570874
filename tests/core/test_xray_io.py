"""Chest X-ray reading: the shared SIIM DICOMs, NIH PNGs, a MONOCHROME1 CR, and bad inputs."""

import numpy as np
import pydicom
import pytest
from PIL import Image

from ptx_annotator.errors import PtxError
from ptx_annotator.xray.io import MAX_PIXELS, XrayImageError, load_xray, xray_from_array
from ptx_annotator.xray.preprocess import XrayPreprocessing, prepare_xray, preprocess_xray, resize_mask
from tests.conftest import CXR_OTHER, SIIM_DIR, need

POSITIVE = SIIM_DIR / "1.2.276.0.7230010.3.1.4.8323329.301.1517875162.280319.dcm"
NEGATIVE = SIIM_DIR / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
MONOCHROME1_CR = CXR_OTHER / "pydicom_data_RG1_UNCI_CR_chest.dcm"
NIH_PNGS = [CXR_OTHER / "00000001_000.png", CXR_OTHER / "00027426_000.png"]


def _identifiers(path):
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    return [str(ds.PatientName), str(ds.PatientID)]


@pytest.mark.parametrize("path", [POSITIVE, NEGATIVE])
def test_siim_dicoms(path):
    image = load_xray(need(path))
    assert image.shape == (1024, 1024)
    assert image.pixels.dtype == np.float32 and 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    assert image.spacing_mm is not None and 0.1 < image.spacing_mm[0] < 0.2
    assert image.meta["modality"] == "CR" and image.meta["view_position"] == "PA"
    # the 8-bit values map straight to 0..1: pixel value v -> v / 255
    raw = pydicom.dcmread(str(path)).pixel_array
    np.testing.assert_allclose(image.pixels, raw / 255.0, atol=1e-6)
    text = repr(image.meta) + image.source
    for identifier in _identifiers(path):
        assert identifier not in text


def test_monochrome1_cr_is_inverted_and_bad_spacing_tolerated():
    path = need(MONOCHROME1_CR)
    image = load_xray(path)
    assert image.shape == (1955, 1841)
    assert image.spacing_mm is None
    assert any("PixelSpacing" in warning for warning in image.meta["warnings"])
    assert image.meta["photometric"] == "MONOCHROME1"
    raw = pydicom.dcmread(str(path)).pixel_array.astype(np.float64)
    # MONOCHROME1: high stored values are dark; after reading, brightness falls as raw rises
    corr = np.corrcoef(raw[::8, ::8].ravel(), image.pixels[::8, ::8].ravel())[0, 1]
    assert corr < -0.99
    # the lungs (air, left and right of the centre, mid height) are darker than the mediastinum
    rows, columns = image.shape
    band = image.pixels[rows // 3: rows // 2]
    lungs = (band[:, columns // 5: columns // 3].mean() + band[:, 2 * columns // 3: 4 * columns // 5].mean()) / 2
    assert lungs < band[:, columns // 2 - 50: columns // 2 + 50].mean()
    for identifier in _identifiers(path):
        assert identifier not in repr(image.meta)


@pytest.mark.parametrize("path", NIH_PNGS)
def test_nih_pngs(path):
    image = load_xray(need(path))
    assert image.shape == (512, 512) and image.pixels.dtype == np.uint8
    assert image.spacing_mm is None
    np.testing.assert_array_equal(image.pixels, np.asarray(Image.open(path)))


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 128 * 96).reshape(128, 96).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "wide.png")
    image = load_xray(tmp_path / "wide.png")
    assert image.pixels.dtype == np.float32
    np.testing.assert_allclose(image.pixels, ramp / 65535.0, atol=1e-6)
    assert len(np.unique(image.pixels)) > 256  # not squeezed to 8 bit
    twelve = (ramp // 16).astype(np.uint16)   # 12-bit data in a 16-bit PNG fills 0..1 too
    Image.fromarray(twelve).save(tmp_path / "twelve.png")
    assert load_xray(tmp_path / "twelve.png").pixels.max() == pytest.approx(1.0)


def test_rgb_jpeg_becomes_grey(tmp_path):
    grey = np.asarray(Image.open(need(NIH_PNGS[0])))
    rgb = np.stack([grey, grey, grey], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.jpg", quality=95)
    image = load_xray(tmp_path / "colour.jpg")
    assert image.pixels.ndim == 2 and image.shape == grey.shape
    assert np.abs(image.pixels.astype(float) - grey).mean() < 3.0
    assert image.meta["format"] == "JPEG" and image.meta["original_mode"] == "RGB"


def test_text_file_renamed_dcm(tmp_path):
    path = tmp_path / "report.dcm"
    path.write_text("Findings: small right apical pneumothorax.\n" * 20)
    with pytest.raises(XrayImageError, match="DICOM") as info:
        load_xray(path)
    assert "report.dcm" in str(info.value)
    assert isinstance(info.value, PtxError)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(XrayImageError, match="empty"):
        load_xray(tmp_path / "empty.png")


def test_unsupported_and_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(XrayImageError, match="not a PNG, JPEG or DICOM"):
        load_xray(tmp_path / "notes.txt")
    with pytest.raises(XrayImageError, match="does not exist"):
        load_xray(tmp_path / "nowhere.dcm")


def test_truncated_png(tmp_path):
    data = need(NIH_PNGS[0]).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(XrayImageError, match="truncated or damaged"):
        load_xray(tmp_path / "cut.png")


def test_huge_image_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")  # a few kB on disk
    with pytest.raises(XrayImageError, match="pixel limit"):
        load_xray(tmp_path / "bomb.png")
    # a DICOM header that claims a huge image is refused from its header alone
    ds = pydicom.dcmread(str(need(NEGATIVE)))
    ds.Rows = ds.Columns = 20000
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(XrayImageError, match="pixel limit"):
        load_xray(tmp_path / "huge.dcm")


def test_from_array_and_preprocessing():
    image = xray_from_array(np.arange(64 * 80, dtype=np.uint16).reshape(64, 80), spacing_mm=(0.0, 0.2))
    assert image.spacing_mm is None and image.pixels.max() == pytest.approx(1.0)
    settings = XrayPreprocessing(size=64)
    prepared = prepare_xray(image.pixels, settings)
    assert prepared.shape == (64, 64) and prepared.dtype == np.float32
    assert 0.0 <= prepared.min() and prepared.max() <= 1.0
    np.testing.assert_allclose(preprocess_xray(image.pixels, settings), prepared)
    back = XrayPreprocessing.from_json(settings.to_json())
    assert back == settings
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[10:50, 20:40] = 1
    small = resize_mask(mask, (50, 50))
    assert small.sum() == 20 * 10


def test_window_from_the_header_is_applied(tmp_path):
    ds = pydicom.dcmread(str(need(NEGATIVE)))
    raw = ds.pixel_array.astype(np.float64)
    ds.WindowCenter, ds.WindowWidth = 128, 64
    ds.save_as(tmp_path / "windowed.dcm")
    image = load_xray(tmp_path / "windowed.dcm")
    assert np.all(image.pixels[raw <= 95] == 0.0)
    assert np.all(image.pixels[raw >= 161] == 1.0)
    inside = (raw > 100) & (raw < 155)
    assert np.corrcoef(raw[inside], image.pixels[inside])[0, 1] > 0.999
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inverted.dcm")
    inverted = load_xray(tmp_path / "inverted.dcm")
    np.testing.assert_allclose(inverted.pixels, 1.0 - image.pixels, atol=1e-6)


def test_clahe_raises_local_contrast():
    image = load_xray(need(NEGATIVE))
    plain = prepare_xray(image.pixels, XrayPreprocessing(size=256, clahe=False))
    equalised = prepare_xray(image.pixels, XrayPreprocessing(size=256))
    assert plain.shape == equalised.shape == (256, 256)
    assert equalised.std() > plain.std()
