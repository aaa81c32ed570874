"""SIIM stage-1 RLE: round trips and exact agreement with the shared SIIM table and images."""

import numpy as np
import pytest

from ptx_annotator.xray.io import load_xray
from ptx_annotator.xray.rle import (
    RleError, is_positive, mask_from_rows, read_rle_table, rle_decode, rle_encode,
)
from tests.conftest import SIIM_DIR, need

RLE_TABLE = SIIM_DIR / "siim-pneumothorax-train-rle.csv.gz"
POSITIVE_ID = "1.2.276.0.7230010.3.1.4.8323329.301.1517875162.280319"
NEGATIVE_ID = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"


@pytest.fixture(scope="module")
def table():
    return read_rle_table(need(RLE_TABLE))


@pytest.mark.parametrize("shape", [(7, 5), (64, 64), (33, 90)])
def test_round_trip_on_random_masks(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.05, 0.5, 1.0):
        mask = (rng.random(shape) < density).astype(np.uint8)
        text = rle_encode(mask)
        assert (text == "-1") == (mask.sum() == 0)
        decoded = rle_decode(text, width=shape[1], height=shape[0])
        assert decoded.shape == shape
        np.testing.assert_array_equal(decoded, mask)


def test_column_major_relative_offsets_by_hand():
    # 3 rows x 4 columns; flat column-major index = column * 3 + row
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[1:3, 0] = 1   # flat 1, 2
    mask[0, 1] = 1     # flat 3  -> one run 1..3
    mask[2, 3] = 1     # flat 11
    assert rle_encode(mask) == "1 3 7 1"  # second offset counts from the end of the first run (4)
    np.testing.assert_array_equal(rle_decode("1 3 7 1", width=4, height=3), mask)


def test_empty_and_bad_strings():
    assert rle_decode("-1", 4, 3).sum() == 0
    assert rle_decode(" -1 ", 4, 3).sum() == 0
    assert rle_encode(np.zeros((3, 4))) == "-1"
    with pytest.raises(RleError, match="pairs"):
        rle_decode("5", 4, 3)
    with pytest.raises(RleError, match="beyond"):
        rle_decode("10 5", 4, 3)
    with pytest.raises(RleError, match="integer"):
        rle_decode("a b", 4, 3)


def test_shared_table_shape(table):
    assert sum(len(rows) for rows in table.values()) == 12954
    assert len(table) == 12047
    assert table[NEGATIVE_ID] == ["-1"]
    assert not is_positive(table[NEGATIVE_ID])
    assert is_positive(table[POSITIVE_ID])


def test_positive_image_has_10133_right_apical_pixels(table):
    image = load_xray(need(SIIM_DIR / f"{POSITIVE_ID}.dcm"))
    rows, columns = image.shape
    mask = mask_from_rows(table[POSITIVE_ID], width=columns, height=rows)
    assert int(mask.sum()) == 10133
    ys, xs = np.nonzero(mask)
    # right of the patient = left half of a PA image; apical = upper part
    assert xs.max() < columns / 2 and ys.mean() < rows / 3
    # the encoder reproduces the table's string exactly
    assert rle_encode(mask) == table[POSITIVE_ID][0]
    # the region is air outside the lung edge: darker than the image on average
    assert image.unit()[mask > 0].mean() < image.unit().mean()


def test_several_rows_are_a_union(table):
    multi = next(image_id for image_id, rows in table.items() if len(rows) >= 3 and is_positive(rows))
    rows = table[multi]
    parts = [rle_decode(rle, 1024, 1024) for rle in rows]
    union = mask_from_rows(rows, 1024, 1024)
    np.testing.assert_array_equal(union, np.logical_or.reduce(parts).astype(np.uint8))
    assert union.sum() > max(part.sum() for part in parts)
    assert mask_from_rows(table[NEGATIVE_ID], 1024, 1024).sum() == 0


def test_reading_a_plain_csv_and_bad_tables(tmp_path):
    plain = tmp_path / "rle.csv"
    plain.write_text("ImageId, EncodedPixels\nA, 1 3 7 1\nA, -1\nB,-1\n")
    table = read_rle_table(plain)
    assert table == {"A": ["1 3 7 1", "-1"], "B": ["-1"]}
    (tmp_path / "bad.csv").write_text("name,value\n")
    with pytest.raises(RleError, match="header"):
        read_rle_table(tmp_path / "bad.csv")
    with pytest.raises(RleError, match="does not exist"):
        read_rle_table(tmp_path / "missing.csv")
