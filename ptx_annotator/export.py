"""An annotator's mask out of the tool (DICOM SEG, NIfTI) and masks from elsewhere into the store.

Export reads provenance from the annotation itself: slices whose review entry names a proposer
(``source``) were proposed by that proposer, so the SEG segment is

* ``MANUAL`` when no slice with content came from a proposer (or only from imports),
* ``AUTOMATIC`` when some did and most of the mask's voxels lie on slices no person reviewed
  (accepted or edited; :func:`~ptx_annotator.review.states.review_provenance`): machine output,
  so the SEG names no content creator,
* ``SEMIAUTOMATIC`` when some did and most voxels lie on reviewed slices (creator: the reader),

with an AlgorithmIdentificationSequence naming the proposer that made most of those slices. The
SEG's descriptions say how many slices a person reviewed. A mask that is mostly unreviewed machine
output is refused (:class:`UnreviewedExportError`) unless ``allow_unreviewed`` is given.

Import puts a NIfTI, NRRD or DICOM SEG mask into the store as one annotator's new mask version. Slices
with content are marked ``edited`` by that annotator with source ``import:<file name>``; slices
without content are reset to ``unreviewed`` (or ``accepted`` with ``empty_state='accepted'`` when
the file is known to cover the whole series). A mask on another grid is refused with
:class:`GeometryMismatchError`; a NIfTI / NRRD mask stored with flipped or permuted axes, or
cropped to its content, is put back onto the CT's grid when its voxels coincide with the CT's.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptx_annotator.atomic import atomic_path
from ptx_annotator.errors import GeometryMismatchError, PtxError
from ptx_annotator.geometry import reorient_onto
from ptx_annotator.review.states import (ACCEPTED, EDITED, PROPOSED, REVIEWED_STATES, UNREVIEWED, SliceReview,
                                         review_provenance, utc_now)
from ptx_annotator.review.store import Annotation, AnnotationStore, safe_annotator_name
from ptx_annotator.volume import Volume, check_same_geometry

FORMATS = ("seg", "nifti")
SUFFIXES = {"seg": ".dcm", "nifti": ".nii.gz"}
IMPORT_PREFIX = "import:"


@dataclass
class MaskProvenance:
    """Who or what made the slices with content of an annotation."""

    algorithm_type: str  # MANUAL, AUTOMATIC or SEMIAUTOMATIC
    main_source: str | None
    slices_by_source: dict = field(default_factory=dict)
    reviewed_slices: int = 0
    record: dict = field(default_factory=dict)
    review: dict = field(default_factory=dict)  # review_provenance(): slices per state, voxels by who decided

    @property
    def content_creator(self) -> bool:
        """Whether a person made the content (False for unreviewed machine output)."""
        return self.algorithm_type != "AUTOMATIC"

    def summary(self) -> str:
        """'2/64 slices reviewed' and, when it applies, the share of unreviewed proposal voxels."""
        review = self.review
        text = f"{review.get('reviewed_slices', 0)}/{review.get('n_slices', 0)} slices reviewed"
        if self.algorithm_type != "MANUAL" and review.get("unreviewed_voxels"):
            text += f", {100 * review['unreviewed_share']:.0f}% unreviewed"
        return text

    def algorithm_info(self):
        """The :class:`~ptx_annotator.io.seg.AlgorithmInfo` for the SEG, or None when manual."""
        from ptx_annotator.io.seg import AlgorithmInfo

        if self.algorithm_type == "MANUAL" or not self.main_source:
            return None
        params = self.record.get("params") or {}
        checkpoint = params.get("checkpoint") if isinstance(params.get("checkpoint"), dict) else {}
        version = next((str(v) for v in (str(checkpoint.get("sha256") or "")[:16], checkpoint.get("created"),
                                          params.get("version"), checkpoint.get("name"), self.record.get("created"))
                        if v), "unknown")
        flat = flatten_scalars(params)
        for key in ("created", "completed", "slices", "threshold"):
            if self.record.get(key) is not None:
                flat[f"proposal.{key}"] = self.record[key]
        return AlgorithmInfo(name=self.main_source, version=version, algorithm_type=self.algorithm_type,
                             family=_algorithm_family(self.main_source, params), parameters=flat)


def _algorithm_family(source: str, params: dict) -> str:
    """'ai' for trained models, 'image_processing' for the classical (rule-based) proposer."""
    kind = str(params.get("kind") or "").lower()
    if kind == "model" or source.lower().startswith(("model:", "checkpoint:")):
        return "ai"
    return "image_processing" if kind == "classical" or source.lower().startswith("classical") else "ai"


def flatten_scalars(params: dict, prefix: str = "") -> dict:
    """Scalar settings of a proposer's ``describe()`` dict, nested keys joined with dots."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten_scalars(value, f"{prefix}{key}."))
        elif isinstance(value, (str, int, float, bool)):
            flat[f"{prefix}{key}"] = value
    return flat


def mask_provenance(annotation: Annotation) -> MaskProvenance:
    """Classify the annotation's mask as manual, automatic or semi-automatic (see module doc)."""
    review = review_provenance(annotation.review, annotation.mask)
    content = np.nonzero(np.asarray(annotation.mask).reshape(annotation.mask.shape[0], -1).any(axis=1))[0]
    latest = _latest_proposal(annotation.proposals)
    sources: Counter = Counter()
    reviewed = 0
    for z in content:
        entry = annotation.review[int(z)]
        source = entry.source
        if source is None and entry.state == PROPOSED and latest:
            source = latest
        if source and not source.startswith(IMPORT_PREFIX):
            sources[source] += 1
            reviewed += entry.state in REVIEWED_STATES
    if not sources:
        return MaskProvenance("MANUAL", None, review=review)
    main = sources.most_common(1)[0][0]
    kind = "AUTOMATIC" if review["mostly_unreviewed"] or not reviewed else "SEMIAUTOMATIC"
    return MaskProvenance(kind, main, dict(sources), reviewed, dict(annotation.proposals.get(main) or {}), review)


class UnreviewedExportError(PtxError):
    """The mask to export is mostly machine output no person reviewed."""


def _latest_proposal(proposals: dict) -> str | None:
    if not proposals:
        return None
    return max(proposals, key=lambda key: str((proposals[key] or {}).get("created") or ""))


def default_export_name(volume: Volume, annotator: str, fmt: str) -> str:
    key = "".join(c if c.isalnum() or c in "-_." else "_" for c in volume.key)
    return f"{key}_{safe_annotator_name(annotator)}_pneumothorax{SUFFIXES[fmt]}"


def export_annotation(volume: Volume, annotation: Annotation, fmt: str, out, *, allow_unreviewed: bool = False) -> Path:
    """Write ``annotation``'s mask as DICOM SEG (``fmt='seg'``) or NIfTI (``'nifti'``); returns the file.

    ``out`` is a file path, or a folder (existing, or given with a trailing separator) in which a
    default name is used. The file is written atomically. A mask that is mostly unreviewed
    proposal is refused unless ``allow_unreviewed`` (then the SEG is labelled AUTOMATIC).
    """
    if fmt not in FORMATS:
        raise PtxError(f"Unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    provenance = mask_provenance(annotation)
    review = provenance.review
    if provenance.algorithm_type == "AUTOMATIC" and not allow_unreviewed:
        raise UnreviewedExportError(
            f"The mask of '{annotation.annotator}' is mostly machine output nobody reviewed: {review['reviewed_slices']} of "
            f"{review['n_slices']} slices reviewed, {100 * review['unreviewed_share']:.0f}% of its voxels on slices "
            "nobody accepted or edited. Review them first, or export anyway with --allow-unreviewed "
            "(labelled as automatic output).")
    check_same_geometry(annotation.mask.shape, annotation.affine, volume.shape, volume.affine,
                        what_a=f"the mask of '{annotation.annotator}'", what_b="the CT")
    out_text = os.fspath(out)
    target = Path(out_text)
    if target.is_dir() or out_text.endswith(os.sep):
        target = target / default_export_name(volume, annotation.annotator, fmt)
    if fmt == "nifti":
        from ptx_annotator.io import save_mask_nifti

        if not target.name.lower().endswith((".nii", ".nii.gz")):
            raise PtxError(f"A NIfTI export needs a '.nii.gz' (or '.nii') file name, not '{target.name}'.")
        with atomic_path(target, suffix=".nii.gz" if target.name.lower().endswith(".gz") else ".nii") as tmp:
            save_mask_nifti(annotation.mask, volume.affine, tmp)
        return target
    from ptx_annotator.io.seg import write_seg

    reviewed = f"{review['reviewed_slices']}/{review['n_slices']} slices reviewed"
    if provenance.content_creator:
        series = f"Pneumothorax ({annotation.annotator}, {reviewed})"
    else:
        series = f"UNREVIEWED pneumothorax proposal ({reviewed})"
    with atomic_path(target, suffix=".dcm") as tmp:
        write_seg(annotation.mask, volume, tmp, annotator=annotation.annotator if provenance.content_creator else None,
                  operator=annotation.annotator, algorithm=provenance.algorithm_info(), series_description=series,
                  content_description=f"v{annotation.version} {provenance.algorithm_type.lower()}: {provenance.summary()}")
    return target


# -- import -------------------------------------------------------------------------------------

@dataclass
class ImportedMask:
    """A mask read from a file onto the CT's grid."""

    mask: np.ndarray
    file_format: str  # 'nifti' or 'seg'
    details: dict = field(default_factory=dict)


def is_nifti_path(path) -> bool:
    return str(path).lower().endswith((".nii", ".nii.gz"))


def is_nrrd_path(path) -> bool:
    return str(path).lower().endswith((".nrrd", ".nhdr"))


def read_mask_file(path, volume: Volume, segment: int | None = None, *, label=None, threshold=None):
    """Read a NIfTI, NRRD or DICOM SEG mask onto ``volume``'s grid: :func:`ptx_annotator.io.masks.read_mask`."""
    from ptx_annotator.io.masks import read_mask

    return read_mask(path, volume, segment=segment, label=label, threshold=threshold)


def place_on_grid(data: np.ndarray, affine: np.ndarray, volume: Volume, what: str) -> np.ndarray:
    """``data`` (any axis order, same voxels as the CT, possibly cropped or padded) on the CT's grid.

    Raises :class:`GeometryMismatchError` when the voxels do not coincide with the CT's, or when
    voxels with content fall outside the CT.
    """
    data, affine = reorient_onto(data, affine, volume.affine)
    target = np.asarray(volume.affine, dtype=float)
    if data.shape == volume.shape and np.allclose(affine, target, atol=0.01):
        return np.asarray(data)
    if not np.allclose(affine[:3, :3], target[:3, :3], atol=1e-3):
        raise GeometryMismatchError(
            f"{what[0].upper()}{what[1:]} has shape {data.shape} (z, y, x) and other voxel sizes or axes than the "
            f"CT {volume.shape}: it was made on another image grid. Resample it onto the CT first.")
    offset = np.linalg.solve(target, affine[:, 3])[:3]
    start = np.round(offset).astype(int)
    if np.linalg.norm(target[:3, :3] @ (offset - start)) > 0.01:
        raise GeometryMismatchError(
            f"{what[0].upper()}{what[1:]} is shifted by {np.round(offset - start, 3).tolist()} voxels against the "
            "CT: its voxels fall between the CT's. Were they made from different series?")
    low = np.maximum(start, 0)
    high = np.minimum(start + np.array(data.shape), volume.shape)
    inside = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(low, high, start))
    kept = int(np.count_nonzero(data[inside])) if np.all(high > low) else 0
    if kept != int(np.count_nonzero(data)):
        raise GeometryMismatchError(
            f"{int(np.count_nonzero(data)) - kept} voxels with content of {what} lie outside the CT "
            f"(the mask's grid starts at CT index {start.tolist()}, shape {data.shape}, the CT has {volume.shape}): "
            "it was made on another series or reconstruction.")
    mask = np.zeros(volume.shape, dtype=data.dtype)
    if kept:
        mask[tuple(slice(int(a), int(b)) for a, b in zip(low, high))] = data[inside]
    return mask


def import_mask(volume: Volume, store: AnnotationStore, annotator: str, path, *, replace: bool = False,
                empty_state: str = UNREVIEWED, segment: int | None = None, label=None,
                threshold=None) -> Annotation:
    """Save a NIfTI or DICOM SEG mask as ``annotator``'s new mask version of ``volume``.

    Refuses to overwrite an existing non-empty mask unless ``replace`` (the store keeps the
    previous versions either way).
    """
    if empty_state not in (UNREVIEWED, ACCEPTED):
        raise PtxError(f"Slices without content can be '{UNREVIEWED}' or '{ACCEPTED}', not '{empty_state}'.")
    imported = read_mask_file(path, volume, segment=segment, label=label, threshold=threshold)
    annotator = safe_annotator_name(annotator)
    annotation = store.load_or_empty(volume, annotator)
    if annotation.mask.any() and not replace:
        n_slices = int(annotation.mask.reshape(annotation.mask.shape[0], -1).any(axis=1).sum())
        raise PtxError(
            f"Annotator '{annotator}' already has a mask of this series (version {annotation.version}, "
            f"{n_slices} slices with content). Add --replace to replace it (earlier versions stay in the "
            "store), or import under another annotator name.")
    name = Path(path).name
    source = f"{IMPORT_PREFIX}{name}"
    annotation.mask = imported.mask
    annotation.affine = np.array(volume.affine, dtype=float)
    content = imported.mask.reshape(imported.mask.shape[0], -1).any(axis=1)
    for z, has_content in enumerate(content):
        if has_content:
            annotation.review.mark(z, EDITED, by=annotator, source=source)
        elif empty_state == ACCEPTED:
            annotation.review[z] = SliceReview(state=ACCEPTED, by=annotator, at=utc_now(), source=source)
        else:
            annotation.review[z] = SliceReview()
    record = {"file": name, "path": os.path.abspath(path), "format": imported.file_format, "at": utc_now(),
              "voxels": int(imported.mask.sum()), "slices_with_content": int(content.sum()),
              "empty_slices": empty_state, **imported.details}
    annotation.extra = {**annotation.extra, "imports": [*annotation.extra.get("imports", []), record]}
    try:
        store.save(annotation)
    finally:
        store.unlock(annotation.series_key, annotator)
    return annotation


def load_annotation(volume: Volume, store: AnnotationStore, annotator: str) -> Annotation:
    """The saved annotation of ``annotator``, or a :class:`PtxError` naming who has one."""
    annotation = store.load(volume.key, annotator, volume)
    if annotation is None:
        others = store.annotators(volume.key)
        hint = f" Annotators of this series: {', '.join(others)}." if others else " Nobody has annotated this series yet."
        raise PtxError(f"No saved mask of annotator '{annotator}' for series {volume.key} in '{store.root}'.{hint}")
    if annotation.mask.shape != volume.shape:
        raise GeometryMismatchError(f"The mask of '{annotator}' has shape {annotation.mask.shape}, the CT {volume.shape}.")
    return annotation
