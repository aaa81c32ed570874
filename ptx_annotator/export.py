"""An annotator's mask out of the tool: DICOM SEG or NIfTI.

The SEG segment is labelled by the mask's provenance (:func:`ptx_annotator.provenance.mask_provenance`:
``MANUAL``, ``AUTOMATIC`` or ``SEMIAUTOMATIC``, with an AlgorithmIdentificationSequence naming
the proposer that made most of its slices; an automatic mask names no content creator). The SEG's
descriptions say how many slices a person reviewed. A mask that is mostly unreviewed machine
output is refused (:class:`UnreviewedExportError`) unless ``allow_unreviewed`` is given.

Masks come into the store through :mod:`ptx_annotator.review.importing`; the names imported
below from there and from :mod:`ptx_annotator.provenance` stay importable from here for callers.
"""

from __future__ import annotations

import os
from pathlib import Path

from ptx_annotator.atomic import atomic_path
from ptx_annotator.errors import GeometryMismatchError, PtxError
from ptx_annotator.io.masks import read_mask as read_mask_file  # noqa: F401 - kept importable from here
from ptx_annotator.provenance import IMPORT_PREFIX, MaskProvenance, flatten_scalars, mask_provenance  # noqa: F401
from ptx_annotator.review.importing import import_mask  # noqa: F401 - kept importable from here
from ptx_annotator.review.store import Annotation, AnnotationStore
from ptx_annotator.review.store_paths import safe_annotator_name
from ptx_annotator.volume import Volume, check_same_geometry

FORMATS = ("seg", "nifti")
SUFFIXES = {"seg": ".dcm", "nifti": ".nii.gz"}


class UnreviewedExportError(PtxError):
    """The mask to export is mostly machine output no person reviewed."""


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
