"""A mask from elsewhere (NIfTI, NRRD, DICOM SEG) into the store as one annotator's new mask version.

Slices with content are marked ``edited`` by that annotator with source ``import:<file name>``;
slices without content are reset to ``unreviewed`` (or ``accepted`` with
``empty_state='accepted'`` when the file is known to cover the whole series). The file is read by
the one mask reader, :func:`ptx_annotator.io.masks.read_mask`: a mask on another grid is refused
with :class:`~ptx_annotator.errors.GeometryMismatchError`; a NIfTI / NRRD mask stored with
flipped or permuted axes, or cropped to its content, is put back onto the CT's grid when its
voxels coincide with the CT's (:func:`ptx_annotator.geometry.place_on_grid`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptx_annotator.errors import PtxError
from ptx_annotator.io.masks import read_mask
from ptx_annotator.provenance import IMPORT_PREFIX
from ptx_annotator.review.states import ACCEPTED, EDITED, UNREVIEWED, SliceReview, utc_now
from ptx_annotator.review.store import Annotation, AnnotationStore
from ptx_annotator.review.store_paths import safe_annotator_name
from ptx_annotator.volume import Volume


def import_mask(volume: Volume, store: AnnotationStore, annotator: str, path, *, replace: bool = False,
                empty_state: str = UNREVIEWED, segment: int | None = None, label=None,
                threshold=None) -> Annotation:
    """Save a NIfTI or DICOM SEG mask as ``annotator``'s new mask version of ``volume``.

    Refuses to overwrite an existing non-empty mask unless ``replace`` (the store keeps the
    previous versions either way).
    """
    if empty_state not in (UNREVIEWED, ACCEPTED):
        raise PtxError(f"Slices without content can be '{UNREVIEWED}' or '{ACCEPTED}', not '{empty_state}'.")
    imported = read_mask(path, volume, segment=segment, label=label, threshold=threshold)
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
