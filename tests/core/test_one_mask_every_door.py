"""One checkpoint, one CT: the same mask from every door (CLI, viewer session, fine-tune re-proposal).

The CT is eight real TCIA slices stored with 0.5 mm slice steps, so that the proposer's 3D
clean-up (components below 100 mm³) drops pieces the per-slice clean-up (20 mm²) keeps: a door
that skipped the 3D pass would give another mask. The doors also merge the same way into a
person's work (reviewed slices never overwritten) and write the same record.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ptx_annotator.cli import main  # noqa: E402
from ptx_annotator.io import load_mask_nifti, load_volume  # noqa: E402
from ptx_annotator.io.volume_files import nifti_affine_from_lps  # noqa: E402
from ptx_annotator.model import CheckpointMeta, build_model, save_checkpoint  # noqa: E402
from ptx_annotator.preprocessing import LUNG_WINDOW_HU, hu_to_unit  # noqa: E402
from ptx_annotator.proposers import get_proposer  # noqa: E402
from ptx_annotator.review.merge import RECORD_KEYS  # noqa: E402
from ptx_annotator.review.session import ReviewSession  # noqa: E402
from ptx_annotator.review.states import ACCEPTED, EDITED, FLAGGED, PROPOSED, UNREVIEWED  # noqa: E402
from ptx_annotator.review.store import Annotation, AnnotationStore  # noqa: E402

FIRST_SLICE = 4  # the slice on screen: computed first by every door (same batches, same numbers)


@pytest.fixture(scope="module")
def thin_ct(tcia_volume, tmp_path_factory):
    """Slices 28..35 of the TCIA series as a NIfTI whose slice step is 0.5 mm."""
    import nibabel as nib

    affine = tcia_volume.affine.copy()
    affine[:3, 3] = tcia_volume.affine[:3, :3] @ np.array([28.0, 0.0, 0.0]) + tcia_volume.affine[:3, 3]
    affine[:3, 0] *= 0.5 / float(np.linalg.norm(affine[:3, 0]))
    path = tmp_path_factory.mktemp("thin") / "thin.nii.gz"
    data = np.asarray(tcia_volume.hu[28:36], dtype=np.int16).transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(data, nifti_affine_from_lps(affine)), str(path))
    return path


@pytest.fixture(scope="module")
def checkpoint(tcia_volume, tmp_path_factory):
    """A seeded 64 px U-Net whose head is biased so that about 5 % of a middle slice passes 0.5."""
    torch.manual_seed(0)
    model = build_model("resnet34").eval()
    x = torch.from_numpy(hu_to_unit(tcia_volume.hu[32, ::8, ::8], LUNG_WINDOW_HU))[None, None]
    with torch.no_grad():
        model.segmentation_head[0].bias -= torch.quantile(model(x).flatten(), 0.95)
    meta = CheckpointMeta(encoder="resnet34", input_size=64, threshold=0.5, name="tiny-doors")
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny-doors.safetensors", meta)


def _person_work(annotation):
    """A person accepted a square on 2, edited 3 empty, flagged 5; 6 holds an unreviewed drawing."""
    annotation.mask[2, 200:220, 100:120] = 1
    annotation.review.mark(2, ACCEPTED, "dr_a")
    annotation.review.mark(3, EDITED, "dr_a")
    annotation.review.mark(5, FLAGGED, "dr_a")
    annotation.mask[6, 300:310, 300:310] = 1
    return annotation


def _session_door(volume, checkpoint, annotation):
    """What the viewer's Propose does: get_proposer, then each yielded slice into the ReviewSession."""
    proposer = get_proposer(checkpoint=str(checkpoint))
    session = ReviewSession(volume, annotation, None)
    session.current_slice = FIRST_SLICE
    session.begin_proposal(proposer.source_id, proposer.describe())
    for result in proposer.iter_slices(volume, session.current_slice):
        session.add_proposal_slice(result)
    session.finish_proposal(len(session.proposal_indices) == volume.shape[0])
    return session


def test_cli_viewer_and_finetune_give_one_mask(thin_ct, checkpoint, tmp_path, capsys):
    from ptx_annotator.training.interactive import repropose_store, reproposal_results

    volume = load_volume(thin_ct)
    assert volume.spacing[0] == pytest.approx(0.5, abs=1e-3)
    proposer = get_proposer(checkpoint=str(checkpoint))
    results = list(proposer.iter_slices(volume, FIRST_SLICE))
    raw = np.zeros(volume.shape, np.uint8)
    for result in results:
        if not result.revised:
            raw[result.index] = result.mask
    assert any(result.revised for result in results), "the 3D clean-up changed nothing: the test could not fail"

    # the CLI door
    out = tmp_path / "cli.nii.gz"
    rc = main(["predict", str(thin_ct), "--checkpoint", str(checkpoint), "--out", str(out),
               "--first-slice", str(FIRST_SLICE)])
    assert rc == 0, capsys.readouterr().err
    cli_mask, _ = load_mask_nifti(out)

    # the viewer door (its core: get_proposer + ReviewSession), on an untouched annotation
    session = _session_door(volume, checkpoint, Annotation.empty(volume, "viewer"))

    # the fine-tune door: re-proposal into the store of an annotator with no open session
    store_root = tmp_path / "store"
    store = AnnotationStore(store_root)
    store.save(Annotation.empty(volume, "reader"))
    store.close()
    source, params, generator = reproposal_results(volume, checkpoint, first_slice=FIRST_SLICE)
    report = repropose_store(volume, store_root, source, params, list(generator))
    assert report == {"reader": volume.shape[0]}
    finetune_mask = AnnotationStore(store_root).load(volume.key, "reader", volume).mask

    assert 0 < cli_mask.sum() < cli_mask.size // 4
    assert not np.array_equal(cli_mask, raw)  # the 3D pass ran on the CLI door
    assert np.array_equal(session.proposal_mask, cli_mask)
    assert np.array_equal(session.annotation.mask, cli_mask)
    assert np.array_equal(finetune_mask, cli_mask)
    assert source == proposer.source_id == session.proposal_source


def test_cli_and_session_merge_into_a_persons_work_alike(thin_ct, checkpoint, tmp_path, capsys):
    volume = load_volume(thin_ct)
    store_root = tmp_path / "store"
    store = AnnotationStore(store_root)
    store.save(_person_work(store.load_or_empty(volume, "dr_a")))
    store.close()
    rc = main(["predict", str(thin_ct), "--checkpoint", str(checkpoint), "--annotator", "dr_a",
               "--store", str(store_root), "--first-slice", str(FIRST_SLICE)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "4 slices already reviewed, flagged or drawn were kept" in captured.out
    by_cli = AnnotationStore(store_root).load(volume.key, "dr_a", volume)

    session = _session_door(volume, checkpoint, _person_work(Annotation.empty(volume, "dr_a")))
    by_session = session.annotation

    assert by_cli.review.states() == by_session.review.states()
    assert by_cli.review.states() == [PROPOSED, PROPOSED, ACCEPTED, EDITED, PROPOSED, FLAGGED, UNREVIEWED,
                                      PROPOSED]
    assert np.array_equal(by_cli.mask, by_session.mask)
    assert by_cli.mask[2].sum() == 400 and by_cli.mask[3].sum() == 0 and by_cli.mask[6].sum() == 100
    for z in (0, 1, 4, 7):
        assert by_cli.review[z].source == by_session.review[z].source == session.proposal_source
    cli_record = by_cli.proposals[session.proposal_source]
    session_record = by_session.proposals[session.proposal_source]
    assert tuple(cli_record) == tuple(session_record) == RECORD_KEYS
    assert cli_record["slices"] == session_record["slices"] == volume.shape[0]
    assert cli_record["completed"] is session_record["completed"] is True
    assert cli_record["params"]["volume_postprocess"] == session_record["params"]["volume_postprocess"]


def test_merge_rule_and_record_of_a_rerun(tcia_volume):
    from ptx_annotator.proposers.contract import Proposal
    from ptx_annotator.review.merge import merge_proposal, record_proposal, takes_proposal

    volume = tcia_volume
    annotation = Annotation.empty(volume, "dr_a")
    annotation.mask[10, 5:9, 5:9] = 1  # drawn, never reviewed: a person's work
    annotation.review.mark(11, ACCEPTED, "dr_a")
    first = np.zeros(volume.shape, np.uint8)
    first[9:13, 100:110, 100:110] = 1
    run = Proposal(mask=first, probabilities=None, source="classical-v1", params={"kind": "classical"},
                   slices_done=list(range(volume.shape[0])))
    outcome = merge_proposal(annotation, run)
    assert outcome.kept == [10, 11] and len(outcome.proposed) == volume.shape[0] - 2
    assert annotation.mask[10].sum() == 16 and annotation.mask[11].sum() == 0 and annotation.mask[9].sum() == 100
    assert annotation.review[9].state == PROPOSED and annotation.review[9].by == "classical-v1"
    record_proposal(annotation, run)
    record_proposal(annotation, Proposal(mask=first, probabilities=None, source="other", slices_done=[]))

    second = np.zeros_like(first)  # a re-run finds nothing: its slices replace the earlier proposal
    rerun = Proposal(mask=second, probabilities=None, source="classical-v1", params={"kind": "classical"},
                     slices_done=[9, 10, 11, 12])
    assert merge_proposal(annotation, rerun).proposed == [9, 12]
    assert annotation.mask[9].sum() == 0 and annotation.mask[10].sum() == 16
    assert takes_proposal(annotation, 9) and not takes_proposal(annotation, 10) and not takes_proposal(annotation, 11)
    record = record_proposal(annotation, rerun)
    assert list(annotation.proposals) == ["other", "classical-v1"]  # the newest run goes last
    assert record["slices"] == 4 and record["threshold"] is None and record["with_probabilities"] is False
