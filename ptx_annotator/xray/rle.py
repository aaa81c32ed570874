"""SIIM-ACR stage-1 run-length encoding of pneumothorax masks.

The stage-1 table ``ImageId, EncodedPixels`` stores each region as alternating numbers
``offset length offset length ...`` where each offset counts from the END of the previous run
(the first from pixel 0), over the image flattened column by column: decode a flat array of
``width * height``, reshape it to ``(width, height)`` and transpose to get ``(rows, columns)``.
``-1`` means no pneumothorax; several rows for one ImageId are several regions (their union).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np

from ptx_annotator.errors import PtxError

EMPTY = "-1"


class RleError(PtxError):
    """An RLE string or table that cannot be decoded."""


def rle_decode(rle: str, width: int, height: int) -> np.ndarray:
    """One stage-1 RLE string -> uint8 mask (height, width) with 1 inside the region."""
    text = (rle or "").strip()
    flat = np.zeros(width * height, dtype=np.uint8)
    if text in ("", EMPTY):
        return flat.reshape(height, width)
    try:
        numbers = np.array(text.split(), dtype=np.int64)
    except ValueError as exc:
        raise RleError(f"RLE '{text[:40]}...' holds something that is not an integer.") from exc
    if numbers.size % 2 or np.any(numbers < 0) or np.any(numbers[1::2] == 0):
        raise RleError(f"RLE '{text[:40]}...' is not pairs of (offset >= 0, length > 0).")
    bounds = np.cumsum(numbers)  # starts at even, ends (exclusive) at odd positions
    starts, ends = bounds[0::2], bounds[1::2]
    if ends[-1] > flat.size:
        raise RleError(f"RLE runs end at pixel {int(ends[-1])}, beyond a {width} x {height} image "
                       f"({flat.size} pixels): wrong image size for this row.")
    change = np.zeros(flat.size + 1, dtype=np.int32)
    np.add.at(change, starts, 1)
    np.add.at(change, ends, -1)
    flat[:] = np.cumsum(change[:-1]) > 0
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: np.ndarray) -> str:
    """A (height, width) mask -> stage-1 RLE string (``-1`` when empty)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise RleError(f"RLE encodes one 2-D mask, got shape {mask.shape}.")
    flat = (mask.T.reshape(-1) > 0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return EMPTY
    previous_ends = np.concatenate([[0], ends[:-1]])
    pairs = np.empty(starts.size * 2, dtype=np.int64)
    pairs[0::2] = starts - previous_ends
    pairs[1::2] = ends - starts
    return " ".join(str(int(n)) for n in pairs)


def mask_from_rows(rows, width: int, height: int) -> np.ndarray:
    """The union of several RLE strings of one image (uint8 (height, width))."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for rle in rows:
        mask |= rle_decode(rle, width, height)
    return mask


def read_rle_table(path) -> dict[str, list[str]]:
    """Read a SIIM ``ImageId, EncodedPixels`` CSV (plain or .gz) -> {ImageId: [rle, ...]}."""
    path = Path(path)
    if not path.is_file():
        raise RleError(f"RLE table '{path}' does not exist. Give the SIIM train-rle.csv (or .csv.gz).")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RleError(f"RLE table '{path}' cannot be read ({exc}).") from exc
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip() for cell in next(reader, [])]
    if header[:2] != ["ImageId", "EncodedPixels"]:
        raise RleError(f"'{path.name}' does not start with the header 'ImageId, EncodedPixels' (found {header[:2]}).")
    table: dict[str, list[str]] = {}
    for line_number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 2:
            raise RleError(f"'{path.name}' line {line_number}: expected 'ImageId, EncodedPixels'.")
        table.setdefault(row[0].strip(), []).append(row[1].strip())
    return table


def is_positive(rows) -> bool:
    """True when any row of an image encodes a region (not ``-1``)."""
    return any(rle.strip() not in ("", EMPTY) for rle in rows)
