"""Who or what made an annotation's mask: manual, automatic or semi-automatic, and by which proposer.

Provenance is read from the annotation itself: slices whose review entry names a proposer
(``source``) were proposed by that proposer, so the mask is

* ``MANUAL`` when no slice with content came from a proposer (or only from imports, whose source
  starts with :data:`IMPORT_PREFIX`),
* ``AUTOMATIC`` when some did and most of the mask's voxels lie on slices no person reviewed
  (accepted or edited; :func:`~ptx_annotator.review.states.review_provenance`): machine output,
  so no person is its content creator,
* ``SEMIAUTOMATIC`` when some did and most voxels lie on reviewed slices (creator: the reader),

naming the proposer that made most of those slices. The SEG export and the study report both
describe a mask through :func:`mask_provenance`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ptx_annotator.review.states import PROPOSED, REVIEWED_STATES, review_provenance

#: The review-log source of slices put in by ``ptx-annotate import`` (``import:<file name>``).
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


def _latest_proposal(proposals: dict) -> str | None:
    if not proposals:
        return None
    return max(proposals, key=lambda key: str((proposals[key] or {}).get("created") or ""))
