"""Chest X-ray images from DICOM, PNG and JPEG as one grey float image in 0..1.

DICOM: modality LUT, then the VOI LUT or window when the file has one (pydicom's
``apply_modality_lut`` / ``apply_voi_lut``), MONOCHROME1 inverted so that air is always dark,
8 to 16 bit. An invalid PixelSpacing (e.g. ``0.000``) gives ``spacing_mm=None`` and a warning.
PNG / JPEG: grey, RGB or palette images are turned to grey; 16-bit PNGs keep their full range.

Nothing that identifies the patient is carried in :class:`XrayImage.meta`: it holds a short
whitelist of technical fields only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptx_annotator.errors import PtxError

#: Refuse images with more pixels than this (a 6000 x 6000 detector); real chest X-rays are < 20 M.
MAX_PIXELS = 36_000_000
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", "")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
#: The only DICOM attributes copied into ``XrayImage.meta`` (no names, IDs, dates or UIDs).
DICOM_META_WHITELIST = {
    "Modality": "modality",
    "ViewPosition": "view_position",
    "BodyPartExamined": "body_part",
    "PhotometricInterpretation": "photometric",
    "BitsStored": "bits_stored",
}


#: Shown values of the whitelisted DICOM fields: defined terms only; anything else becomes "other"
#: (free text there can carry names or notes, so it is never echoed).
PUBLIC_VALUES = {
    "modality": {"CR", "DX", "DR", "RG", "XR", "CT", "MR", "PT", "NM", "US", "OT", "SC", "MG", "XA", "RF"},
    "view_position": {"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO", "LAT", "LATERAL", "LPO", "RPO", "LAO", "RAO"},
    "body_part": {"CHEST", "THORAX", "LUNG", "ABDOMEN", "HEAD", "PELVIS", "SPINE", "SHOULDER", "NECK", "HEART"},
    "photometric": {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422"},
}
#: Modalities whose images are not projection radiographs: refused by :func:`refuse_non_radiograph`.
NOT_RADIOGRAPH_MODALITIES = {"CT", "MR", "PT", "NM", "US"}
#: Share of an image's outer frame (5 % of its side) at its dark level above which it looks like an
#: axial CT slice (air around the body, or the padding outside the reconstruction circle). Measured
#: by benchmarks/ct_slice_check.py on the shared data: chest X-rays 0.01-0.27 (5 images); CT slices
#: rendered as pictures (7 series x 6 slices x 3 windows x 3 sizes = 378) 95 % at or above 0.4 (the
#: rest are slices whose body fills the frame, which this check cannot tell from an X-ray).
CT_FRAME_DARK_SHARE = 0.4


class XrayImageError(PtxError):
    """A file cannot be read as a chest X-ray image."""


def public_value(key: str, value) -> str:
    """``value`` of a whitelisted field as shown to a user: a defined term, or 'other'."""
    text = str(value).strip().upper()
    allowed = PUBLIC_VALUES.get(key)
    return text if allowed is None or text in allowed else "other"


def frame_dark_share(unit: np.ndarray) -> float:
    """Share of the outer frame (5 % of the shorter side) at the image's dark level (within 2/255).

    The dark level is the 1st percentile, not the minimum, so resampling overshoot (a few pixels
    darker than the air) does not hide a uniform background.
    """
    rows, columns = unit.shape
    band = max(2, int(0.05 * min(rows, columns)))
    frame = np.concatenate([unit[:band].ravel(), unit[-band:].ravel(), unit[:, :band].ravel(), unit[:, -band:].ravel()])
    return float(np.mean(np.abs(frame - float(np.percentile(unit, 1))) <= 2.0 / 255.0))


def refuse_non_radiograph(image: "XrayImage") -> None:
    """Raise :class:`XrayImageError` for a CT (or other cross-sectional) image given as a chest X-ray."""
    modality = image.meta.get("modality")
    if modality in NOT_RADIOGRAPH_MODALITIES:
        raise XrayImageError(f"'{image.source}' is a {modality} image (DICOM Modality {modality}), not a chest X-ray: "
                             "this demo reads projection radiographs (CR / DX). Give a chest X-ray.")
    share = frame_dark_share(image.unit())
    if share >= CT_FRAME_DARK_SHARE:
        raise XrayImageError(f"'{image.source}' looks like an axial CT slice, not a chest X-ray ({100 * share:.0f}% of "
                             "its border is uniformly dark, as around a body cross-section). Give a chest X-ray.")


@dataclass
class XrayImage:
    """One grey X-ray image.

    Attributes
    ----------
    pixels : (rows, columns) float32 in 0..1 (air dark), or uint8.
    spacing_mm : (row, column) pixel spacing in mm, or None when unknown or invalid.
    source : where it came from (a file name), for messages.
    meta : technical facts only (format, modality, view, bits, warnings); never patient identifiers.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.pixels.shape[:2])

    def unit(self) -> np.ndarray:
        """The pixels as float32 in 0..1."""
        if self.pixels.dtype == np.uint8:
            return self.pixels.astype(np.float32) / np.float32(255.0)
        return np.asarray(self.pixels, dtype=np.float32)

    def to_uint8(self) -> np.ndarray:
        if self.pixels.dtype == np.uint8:
            return self.pixels
        return np.round(np.clip(self.pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_xray(path, max_pixels: int = MAX_PIXELS) -> XrayImage:
    """Read a DICOM, PNG or JPEG chest X-ray; every failure is an :class:`XrayImageError`."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise XrayImageError(f"'{path}' does not exist or is not a file. Give a PNG, JPEG or DICOM chest X-ray.")
    size = path.stat().st_size
    if size == 0:
        raise XrayImageError(f"'{name}' is empty (0 bytes): the upload or copy did not complete. Send the file again.")
    with open(path, "rb") as handle:
        head = handle.read(132)
    if head[128:132] == b"DICM":
        return _load_dicom(path, max_pixels)
    if head.startswith(PNG_MAGIC) or head.startswith(JPEG_MAGIC):
        return _load_picture(path, max_pixels)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _load_dicom(path, max_pixels, force=True)
    raise XrayImageError(f"'{name}' is not a PNG, JPEG or DICOM image (its first bytes match none of them). "
                         "Export the X-ray as DICOM, PNG or JPEG.")


def xray_from_array(array, source: str = "array", spacing_mm=None) -> XrayImage:
    """Wrap an in-memory grey or RGB image (any numeric dtype) as an XrayImage."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = _rgb_to_grey(array[..., :3])
    if array.ndim != 2:
        raise XrayImageError(f"{source}: expected a 2-D grey or RGB image, got shape {array.shape}.")
    if array.dtype == np.uint8:
        pixels = array
    else:
        pixels = _scale_to_unit(array.astype(np.float64), bit_range(array))
    return XrayImage(pixels, _valid_spacing(spacing_mm)[0], source, {"format": "array"})


def _load_dicom(path: Path, max_pixels: int, force: bool = False) -> XrayImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = path.name
    try:
        ds = pydicom.dcmread(str(path), force=force)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as exc:
        raise XrayImageError(f"'{name}' is not a readable DICOM file ({_first_line(exc)}). "
                             "Check that it is a DICOM image and not a renamed text or report file.") from exc
    if "PixelData" not in ds:
        raise XrayImageError(f"'{name}' holds no DICOM image (no PixelData): it may be a text file renamed .dcm, "
                             "a report or a DICOMDIR. Give the image file itself.")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or columns <= 0:
        raise XrayImageError(f"'{name}': the DICOM header gives no image size (Rows x Columns = {rows} x {columns}).")
    _check_pixel_count(name, rows, columns, max_pixels)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # decoders raise many types for damaged or unsupported data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise XrayImageError(f"'{name}': the DICOM pixel data cannot be decoded (transfer syntax {syntax}: "
                             f"{_first_line(exc)}). The file is damaged or uses a compression not installed.") from exc
    warnings = []
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1 and raw.ndim == 3:
        warnings.append(f"multi-frame DICOM with {raw.shape[0]} frames: the first frame is used")
        raw = raw[0]
    elif samples == 3:
        raw = raw[0] if raw.ndim == 4 else raw
        raw = _rgb_to_grey(raw)
    if raw.ndim != 2:
        raise XrayImageError(f"'{name}': unsupported DICOM pixel layout with shape {raw.shape}.")
    pixels = _dicom_to_unit(raw, ds, samples)
    spacing, spacing_warning = _dicom_spacing(ds)
    if spacing_warning:
        warnings.append(spacing_warning)
    meta = {"format": "DICOM", "rows": rows, "columns": columns}
    for keyword, key in DICOM_META_WHITELIST.items():
        value = ds.get(keyword)
        if value not in (None, ""):
            meta[key] = int(value) if keyword == "BitsStored" else public_value(key, value)
    meta["warnings"] = warnings
    return XrayImage(pixels, spacing, name, meta)


def _dicom_to_unit(raw: np.ndarray, ds, samples: int) -> np.ndarray:
    """Modality LUT, VOI LUT or window, MONOCHROME1 inversion, scaled to float32 0..1."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if samples == 3:
        return _scale_to_unit(raw.astype(np.float64), (0.0, 255.0))
    values = apply_modality_lut(raw, ds).astype(np.float64)
    has_voi_lut = "VOILUTSequence" in ds
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if has_voi_lut or has_window:
        try:
            windowed = apply_voi_lut(values, ds, index=0)
            if has_voi_lut:
                lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
                out_range = (float(lut.min()), float(lut.max()))
            else:
                center, width = _first_number(ds.WindowCenter), _first_number(ds.WindowWidth)
                probe = apply_voi_lut(np.array([center - width, center + width], dtype=np.float64), ds, index=0)
                out_range = (float(probe.min()), float(probe.max()))
            if out_range[1] > out_range[0]:
                values, value_range = np.asarray(windowed, dtype=np.float64), out_range
            else:
                value_range = (float(values.min()), float(values.max()))
        except (ValueError, TypeError, AttributeError, IndexError):
            value_range = (float(values.min()), float(values.max()))
    elif int(ds.get("BitsStored", 8) or 8) <= 8 and "RescaleSlope" not in ds:
        value_range = (0.0, 255.0)
    else:
        value_range = (float(values.min()), float(values.max()))
    unit = _scale_to_unit(values, value_range)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        unit = np.float32(1.0) - unit
    return unit


def _load_picture(path: Path, max_pixels: int) -> XrayImage:
    from PIL import Image, UnidentifiedImageError

    name = path.name
    try:
        with Image.open(path) as picture:
            width, height = picture.size
            _check_pixel_count(name, height, width, max_pixels)
            fmt, mode = picture.format, picture.mode
            picture.load()
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(picture)
                if mode.startswith("I;16"):  # 12-bit detectors often store 0..4095 in a 16-bit PNG
                    value_range = (0.0, 4095.0) if float(array.max()) < 4096 else (0.0, 65535.0)
                else:
                    value_range = bit_range(array)
                pixels = _scale_to_unit(array.astype(np.float64), value_range)
            else:
                grey = picture.convert("L") if mode != "L" else picture
                pixels = np.array(grey, dtype=np.uint8)
    except XrayImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise XrayImageError(f"'{name}' has far more pixels than a chest X-ray ({_first_line(exc)}); the limit is "
                             f"{max_pixels / 1e6:.0f} M pixels. Downsample it first.") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise XrayImageError(f"'{name}' cannot be read as an image ({_first_line(exc)}): it is truncated or damaged. "
                             "Export it again as PNG, JPEG or DICOM.") from exc
    meta = {"format": fmt or path.suffix.lstrip(".").upper(), "rows": int(height), "columns": int(width),
            "original_mode": mode, "warnings": ["no pixel spacing in PNG/JPEG: areas are given in pixels only"]}
    return XrayImage(pixels, None, name, meta)


def _check_pixel_count(name: str, rows: int, columns: int, max_pixels: int) -> None:
    if rows * columns > max_pixels:
        raise XrayImageError(f"'{name}' is {columns} x {rows} pixels ({rows * columns / 1e6:.0f} M), more than the "
                             f"{max_pixels / 1e6:.0f} M pixel limit for a chest X-ray. Downsample it first.")


def _dicom_spacing(ds):
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            spacing, problem = _valid_spacing(ds.get(keyword))
            if spacing is not None:
                return spacing, None
            return None, f"{keyword} {problem}: areas are given in pixels only"
    return None, "no PixelSpacing in the DICOM header: areas are given in pixels only"


def _valid_spacing(value):
    if value is None:
        return None, "missing"
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None, f"'{value}' is not a pair of numbers"
    if len(numbers) != 2 or not all(math.isfinite(v) and 0.01 <= v <= 10.0 for v in numbers):
        return None, f"{numbers} is not a valid pixel spacing in mm"
    return (numbers[0], numbers[1]), None


def bit_range(array: np.ndarray) -> tuple[float, float]:
    """The value range used to scale an array without a known window: its min and max."""
    return float(np.min(array)), float(np.max(array))


def _scale_to_unit(values: np.ndarray, value_range) -> np.ndarray:
    low, high = float(value_range[0]), float(value_range[1])
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    out = ((values - low) / (high - low)).astype(np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114])
    grey = np.asarray(rgb, dtype=np.float64) @ weights
    return np.round(grey).astype(np.uint8) if rgb.dtype == np.uint8 else grey


def _first_number(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
