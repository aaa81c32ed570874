"""The HTML study report: numbers, review progress, proposal provenance and figures."""

import json

import numpy as np

from ptx_annotator.cli import main
from ptx_annotator.export import import_mask
from ptx_annotator.io import save_mask_nifti
from ptx_annotator.review.states import ACCEPTED, EDITED, PROPOSED
from ptx_annotator.review.store import Annotation, AnnotationStore
from ptx_annotator.reports.study import radiological

SOURCE = "model:resnet34:ckpt-report"
CREATED = "2026-11-23T17:45:12+00:00"


def _store_with_two_annotators(volume, root, tmp_path):
    air = volume.hu < -400
    store = AnnotationStore(root)
    model_made = Annotation.empty(volume, "dr_model")
    model_made.mask[27:33, 250:300, 90:160] = air[27:33, 250:300, 90:160]  # patient right, from the chest wall
    model_made.proposals = {SOURCE: {"source": SOURCE, "created": CREATED,
                                     "params": {"kind": "model", "checkpoint": {"name": "ckpt-report", "threshold": 0.5}},
                                     "completed": True}}
    for z in range(volume.shape[0]):
        model_made.review.mark(z, PROPOSED, by=None, source=SOURCE)
    for z in range(27, 30):
        model_made.review.mark(z, ACCEPTED, by="dr_model")
    model_made.review.mark(30, EDITED, by="dr_model")
    store.save(model_made)
    store.close()
    other = np.zeros(volume.shape, dtype=np.uint8)
    other[29:31, 250:300, 360:430] = air[29:31, 250:300, 360:430]  # patient left
    save_mask_nifti(other, volume.affine, tmp_path / "outside_tool.nii.gz")
    import_mask(volume, store, "dr_import", tmp_path / "outside_tool.nii.gz")
    return model_made.mask, other


def test_report_has_numbers_progress_provenance_and_figures(tcia_volume, tcia_dir, tmp_path, capsys):
    import matplotlib.image

    store_dir = tmp_path / "store"
    right_mask, left_mask = _store_with_two_annotators(tcia_volume, store_dir, tmp_path)
    out = tmp_path / "report"
    rc = main(["report", str(tcia_dir), "--out", str(out), "--store", str(store_dir)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "2 annotator(s): dr_import, dr_model" in captured.out

    page = (out / "index.html").read_text()
    summary = json.loads((out / "report.json").read_text())
    by_name = {e["annotator"]: e for e in summary["annotators"]}
    voxel_ml = float(np.prod(tcia_volume.spacing)) / 1000
    model_numbers = by_name["dr_model"]["quantification"]
    assert abs(model_numbers["volume_right_ml"] - right_mask.sum() * voxel_ml) < 1e-3
    assert model_numbers["volume_left_ml"] == 0
    assert abs(by_name["dr_import"]["quantification"]["volume_left_ml"] - left_mask.sum() * voxel_ml) < 1e-3
    for entry in summary["annotators"]:  # the page shows the same numbers
        q = entry["quantification"]
        assert f"{q['volume_ml']:.1f} mL" in page
        assert f"{100 * q['hemithorax_share_right']:.1f}%" in page
        assert f"{q['max_rim_mm']:.1f} mm" in page

    counts = by_name["dr_model"]["review_counts"]
    assert counts == {"unreviewed": 0, "proposed": tcia_volume.shape[0] - 4, "accepted": 3, "edited": 1, "flagged": 0}
    assert "<td>60</td><td>3</td><td>1</td>" in page  # proposed, accepted, edited of dr_model
    assert by_name["dr_model"]["algorithm_type"] == "SEMIAUTOMATIC"
    provenance = by_name["dr_model"]["provenance"]
    assert (provenance["reviewed_slices"], provenance["proposed_slices"], provenance["n_slices"]) == (4, 60, 64)
    assert "4 of 64 slices (60 proposed, not reviewed)" in page
    assert "class=warn" not in page  # most of the mask was reviewed
    assert by_name["dr_import"]["algorithm_type"] == "MANUAL"
    assert SOURCE in page and CREATED in page and "checkpoint.name=ckpt-report" in page
    assert "import:outside_tool.nii.gz" in page

    figures = sorted(p.name for p in out.glob("*.png"))
    assert "review_states.png" in figures
    largest = int(np.argmax(right_mask.reshape(right_mask.shape[0], -1).sum(axis=1)))
    assert f"slice_{largest:03d}.png" in figures
    for name in figures:
        assert f"src='{name}'" in page
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 50 and image.std() > 0.05


def test_report_without_usable_annotations(tcia_volume, tcia_dir, tmp_path, capsys):
    store = AnnotationStore(tmp_path / "store")
    wrong = Annotation.empty(tcia_volume, "dr_wrong_grid")
    wrong.mask, wrong.review = wrong.mask[:40], wrong.review[:40]  # saved from another reconstruction
    store.save(wrong)
    store.close()
    rc = main(["report", str(tcia_dir), "--out", str(tmp_path / "r"), "--store", str(tmp_path / "store")])
    assert rc == 1  # an annotator left out is an error, named on stderr; the page is still written
    assert "left out of the report: dr_wrong_grid" in capsys.readouterr().err
    page = (tmp_path / "r" / "index.html").read_text()
    assert "No annotator has a readable saved mask" in page
    assert "Left out: dr_wrong_grid" in page and "another reconstruction" in page
    assert f"slice_{tcia_volume.shape[0] // 2:03d}.png" in page


def test_radiological_view_is_independent_of_array_orientation(tcia_volume):
    z = 30
    flipped_affine = np.array(tcia_volume.affine, dtype=float)
    flipped_affine[:3, 3] += flipped_affine[:3, 2] * (tcia_volume.shape[2] - 1)
    flipped_affine[:3, 2] *= -1
    shown = radiological(tcia_volume.hu[z], tcia_volume.affine)
    np.testing.assert_array_equal(radiological(tcia_volume.hu[z, :, ::-1], flipped_affine), shown)
    np.testing.assert_array_equal(shown, tcia_volume.hu[z])  # LPS columns already show patient right on the left


def test_report_warns_when_a_mask_is_mostly_unreviewed_proposal(tcia_volume, tcia_dir, tmp_path, capsys):
    from ptx_annotator.review.states import STATE_COLORS
    from ptx_annotator.reports import study

    store = AnnotationStore(tmp_path / "store")
    annotation = Annotation.empty(tcia_volume, "dr_busy")
    annotation.mask[27:33, 250:300, 90:160] = 1
    annotation.proposals = {SOURCE: {"source": SOURCE, "created": CREATED, "params": {"kind": "model"}}}
    for z in range(tcia_volume.shape[0]):
        annotation.review.mark(z, PROPOSED, by=None, source=SOURCE)
    annotation.review.mark(27, ACCEPTED, by="dr_busy")
    annotation.review.mark(40, ACCEPTED, by="dr_busy")
    store.save(annotation)
    store.close()
    rc = main(["report", str(tcia_dir), "--out", str(tmp_path / "report"), "--store", str(tmp_path / "store")])
    assert rc == 0, capsys.readouterr().err
    page = (tmp_path / "report" / "index.html").read_text()
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    entry = summary["annotators"][0]
    assert entry["algorithm_type"] == "AUTOMATIC" and entry["provenance"]["mostly_unreviewed"]
    assert entry["provenance"]["reviewed_slices"] == 2 and entry["provenance"]["unreviewed_share"] > 0.8
    assert "class=warn>dr_busy: 83% of this mask lies on slices no person reviewed" in page
    assert not hasattr(study, "STATE_COLOURS") and STATE_COLORS["proposed"] != STATE_COLORS["edited"]
