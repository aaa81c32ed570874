"""Chest X-ray path: image I/O, SIIM RLE masks, preprocessing and prediction (no GUI imports)."""

from ptx_annotator.xray.io import MAX_PIXELS, XrayImage, XrayImageError, load_xray, xray_from_array
from ptx_annotator.xray.preprocess import XrayPreprocessing, normalise, prepare_xray, preprocess_xray
from ptx_annotator.xray.rle import RleError, mask_from_rows, read_rle_table, rle_decode, rle_encode

__all__ = [
    "MAX_PIXELS", "XrayImage", "XrayImageError", "load_xray", "xray_from_array",
    "XrayPreprocessing", "normalise", "prepare_xray", "preprocess_xray",
    "RleError", "mask_from_rows", "read_rle_table", "rle_decode", "rle_encode",
]
