"""Inter-annotator comparison: per-slice table, disagreement map, ranking, majority vote, STAPLE."""

import numpy as np
import pytest
import SimpleITK as sitk

from ptx_annotator import compare as C
from ptx_annotator import metrics as M
from ptx_annotator.errors import GeometryMismatchError, PtxError
from ptx_annotator.review.store import Annotation, AnnotationStore
from ptx_annotator.io import load_volume, save_mask_nifti

SPACING = (5.0, 0.8, 0.8)


def _readers():
    a = np.zeros((6, 20, 24), np.uint8)
    b = np.zeros_like(a)
    a[1:4, 5:15, 5:15] = 1        # slices 1..3
    b[2:5, 5:15, 7:17] = 1        # slices 2..4, shifted by two columns
    b[3, 0:3, 0:3] = 1            # slice 3 gets an extra island
    return a, b


def test_per_slice_records():
    a, b = _readers()
    rows = C.per_slice_agreement(a, b, SPACING)
    assert [r["slice"] for r in rows] == list(range(6))
    assert rows[0]["dice"] == 1.0 and rows[0]["voxels_a"] == 0 and not rows[0]["present_a"]  # both empty
    assert rows[1]["dice"] == 0.0 and rows[1]["present_a"] and not rows[1]["present_b"]
    overlap = 10 * 8
    assert rows[2]["voxels_both"] == overlap
    assert rows[2]["dice"] == pytest.approx(2 * overlap / 200)
    assert rows[2]["iou"] == pytest.approx(overlap / (200 - overlap))
    for z, row in enumerate(rows):  # every row agrees with the volume metrics applied to that slice
        assert row["dice"] == pytest.approx(M.dice(a[z], b[z]))
        assert row["disagreement_voxels"] == int(np.count_nonzero(a[z] != b[z]))
        assert row["disagreement_mm2"] == pytest.approx(row["disagreement_voxels"] * 0.64)


def test_ranking_puts_the_most_disputed_slices_first():
    a, b = _readers()
    rows = C.per_slice_agreement(a, b)
    ranked = C.rank_slices_by_disagreement(rows)
    disputed = {z: int(np.count_nonzero(a[z] != b[z])) for z in range(6)}
    assert set(ranked) == {z for z, n in disputed.items() if n}
    assert [disputed[z] for z in ranked] == sorted((n for n in disputed.values() if n), reverse=True)
    assert ranked[:2] == [1, 4]  # one reader only, 100 voxels each; index breaks the tie


def test_disagreement_map_codes():
    a, b = _readers()
    d = C.disagreement_map(a, b)
    assert d.dtype == np.uint8
    np.testing.assert_array_equal(d == C.BOTH, (a == 1) & (b == 1))
    np.testing.assert_array_equal(d == C.ONLY_A, (a == 1) & (b == 0))
    np.testing.assert_array_equal(d == C.ONLY_B, (a == 0) & (b == 1))
    np.testing.assert_array_equal(d == C.AGREE_BACKGROUND, (a == 0) & (b == 0))


def test_majority_vote_and_its_tie_rule():
    shape = (1, 1, 4)
    r = [np.array(v, np.uint8).reshape(shape) for v in ([1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0])]
    assert C.majority_vote(r).ravel().tolist() == [1, 1, 1, 0]
    two = r[:2]
    assert C.majority_vote(two).ravel().tolist() == [1, 0, 0, 0]  # two readers: intersection
    assert C.majority_vote(two, tie_positive=True).ravel().tolist() == [1, 1, 1, 0]  # union
    four = [*r, np.array([0, 0, 0, 1], np.uint8).reshape(shape)]
    # votes 3, 2, 2, 1 of 4: only a strict majority wins unless ties count as foreground
    assert C.majority_vote(four).ravel().tolist() == [1, 0, 0, 0]
    assert C.majority_vote(four, tie_positive=True).ravel().tolist() == [1, 1, 1, 0]


def test_staple_matches_simpleitk_on_the_whole_grid_where_masks_fill_the_box():
    rng = np.random.default_rng(3)
    truth = np.zeros((4, 24, 24), np.uint8)
    truth[:, 4:20, 4:20] = 1
    readers = []
    for p in (0.05, 0.1, 0.3):
        noisy = truth.copy()
        flip = rng.random(truth.shape) < p
        noisy[flip] = 1 - noisy[flip]
        readers.append(noisy)
    result = C.staple(readers)
    reference = sitk.GetArrayFromImage(sitk.STAPLE([sitk.GetImageFromArray(m) for m in readers], 1.0))
    # the masks reach every edge of the grid, so the cropped box is the whole grid
    np.testing.assert_allclose(result.probability, reference, atol=1e-5)
    np.testing.assert_array_equal(result.consensus, (reference > 0.5).astype(np.uint8))
    assert result.sensitivity[0] > result.sensitivity[2]  # the careful reader is rated higher
    assert M.dice(result.consensus, truth) > np.mean([M.dice(m, truth) for m in readers])


def test_compare_three_readers_summary_and_staple():
    a, b = _readers()
    c = a.copy()
    c[1:4, 5:15, 6:16] = 1
    result = C.compare_masks({"alice": a, "bob": b, "carol": c}, SPACING)
    s = result.summary
    for key in ("dice", "iou", "precision", "recall", "specificity", "hd95_mm", "assd_mm",
                "volume_a_ml", "volume_b_ml", "volume_diff_ml", "kappa_slices"):
        assert isinstance(s[key], float), key
    assert s["reader_a"] == "alice" and s["reader_b"] == "bob"
    assert s["dice"] == pytest.approx(M.dice(a, b))
    assert s["hd95_mm"] == pytest.approx(M.hd95_mm(a, b, SPACING))
    assert s["volume_a_ml"] == pytest.approx(300 * 5.0 * 0.64 / 1000)
    assert len(s["pairs"]) == 3 and s["pairs"][2]["reader_a"] == "bob"
    assert s["pairs"][1]["dice"] == pytest.approx(M.dice(a, c))
    assert result.consensus_method == "staple" and result.staple_probability.shape == a.shape
    np.testing.assert_array_equal(result.majority, ((a + b + c) >= 2).astype(np.uint8))
    assert set(s["staple"]["sensitivity"]) == {"alice", "bob", "carol"}
    assert result.disagreement.max() == 3 and result.ranked_slices[0] in (1, 4)


def test_two_readers_consensus_is_their_intersection():
    a, b = _readers()
    result = C.compare_masks({"a": a, "b": b}, SPACING)
    np.testing.assert_array_equal(result.consensus, (a & b).astype(np.uint8))
    assert result.staple_probability is None and result.majority is None


def test_geometry_mismatch_is_refused():
    a, b = _readers()
    with pytest.raises(GeometryMismatchError, match="shape"):
        C.compare_masks({"a": a, "b": b[:, :, :-1]}, SPACING)
    moved = np.eye(4)
    moved[0, 3] = 5.0
    with pytest.raises(GeometryMismatchError, match="different positions"):
        C.compare_masks({"a": a, "b": b}, SPACING, affines={"a": np.eye(4), "b": moved})
    with pytest.raises(PtxError, match="at least two"):
        C.compare_masks({"a": a}, SPACING)


def test_masks_from_the_annotation_store(tmp_path):
    affine = np.diag([5.0, 0.8, 0.8, 1.0])
    a, b = _readers()
    study = tmp_path / "study.nii.gz"
    save_mask_nifti(np.zeros(a.shape, np.uint8), affine, study)  # a tiny stand-in CT on the same grid
    ct = load_volume(study)
    store = AnnotationStore.for_study(study, tmp_path / "store")
    for name, mask in (("alice", a), ("bob", b)):
        annotation = Annotation.empty(ct, name)
        annotation.mask[:] = mask
        store.save(annotation)
    store.close()
    loaded_volume, masks = C.load_annotator_masks(study, ["alice", "bob"], store_dir=tmp_path / "store")
    assert list(masks) == ["alice", "bob"] and loaded_volume.shape == a.shape
    np.testing.assert_array_equal(masks["bob"], b)
    with pytest.raises(PtxError, match="annotators there: alice, bob"):
        C.load_annotator_masks(study, ["alice", "zoe"], store_dir=tmp_path / "store")


@pytest.mark.parametrize("case", ["both empty", "only A"])
def test_outputs_for_empty_masks_hold_no_nan(case, tmp_path):
    import json

    from ptx_annotator.reports.comparison import write_comparison_outputs

    a = np.zeros((4, 16, 16), np.uint8)
    b = np.zeros_like(a)
    if case == "only A":
        a[1:3, 4:9, 4:9] = 1
    result = C.compare_masks({"a": a, "b": b}, SPACING, affine=np.diag([*SPACING, 1.0]))
    paths = write_comparison_outputs(result, tmp_path)
    text = paths["summary"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    expected_dice = 1.0 if case == "both empty" else 0.0
    assert summary["dice"] == expected_dice and summary["pairs"][0]["dice"] == expected_dice
    penalty = M.empty_distance_penalty(a.shape, SPACING)
    assert summary["hd95_mm"] == (0.0 if case == "both empty" else pytest.approx(penalty))
    page = paths["report"].read_text()
    if case == "both empty":
        assert "agree on every voxel" in page and page.count("data:image/png;base64,") == 2
    else:
        assert page.count("data:image/png;base64,") == 3


def test_report_page_is_the_template_filled_with_escaped_values():
    from html.parser import HTMLParser

    from ptx_annotator.reports.comparison import report_html

    a, b = _readers()
    result = C.compare_masks({"<b>dr</b> & co": a, "bob": b}, SPACING)
    page = report_html(result)
    assert "<b>dr</b>" not in page and "&lt;b&gt;dr&lt;/b&gt; &amp; co" in page
    assert "$" not in page.replace("$ ", "")  # no placeholder left unfilled
    assert f"<tr><th>Dice</th><td>{result.summary['dice']:.3f}</td></tr>" in page
    assert "<tr><th>A</th><th>B</th><th>Dice</th>" in page
    assert page.count("data:image/png;base64,") == 3

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open = []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "img", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open and self.open.pop() == tag, tag

    parser = Tags()
    parser.feed(page)
    assert parser.open == []  # every element the template and the tables open is closed, in order
