"""Per-slice review state of one annotator's mask."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

UNREVIEWED = "unreviewed"
PROPOSED = "proposed"
ACCEPTED = "accepted"
EDITED = "edited"
FLAGGED = "flagged"

#: Every review state, in the order of the review workflow.
STATES = (UNREVIEWED, PROPOSED, ACCEPTED, EDITED, FLAGGED)
#: States that mean a person looked at the slice and vouches for its mask.
REVIEWED_STATES = (ACCEPTED, EDITED)
#: States that still need a person's attention.
NEEDS_REVIEW_STATES = (UNREVIEWED, PROPOSED, FLAGGED)
#: One colour per state, used by the viewer's state strip and by every report: grey = nobody yet,
#: amber = machine output nobody vouched for, green = accepted as shown, blue = a person's edit,
#: red = asks for a second look.
STATE_COLORS = {
    UNREVIEWED: "#5c5c5c",
    PROPOSED: "#e6b400",
    ACCEPTED: "#2ea043",
    EDITED: "#2f81f7",
    FLAGGED: "#e5534b",
}
#: An export whose mask voxels lie mostly (more than this share) on slices no person reviewed is
#: machine output, not the reader's: it is refused unless asked for explicitly, and labelled so.
MAX_UNREVIEWED_SHARE = 0.5


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class SliceReview:
    """Review state of one slice: what, who, when, and which proposer made its proposal."""

    state: str = UNREVIEWED
    by: str | None = None
    at: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"Unknown review state '{self.state}'; expected one of {', '.join(STATES)}.")

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, payload: dict) -> "SliceReview":
        return cls(**{k: payload.get(k) for k in ("state", "by", "at", "source") if k in payload})


class ReviewLog(list):
    """A list of :class:`SliceReview`, one per z slice, with helpers for the review workflow."""

    @classmethod
    def fresh(cls, n_slices: int) -> "ReviewLog":
        return cls(SliceReview() for _ in range(n_slices))

    def mark(self, index: int, state: str, by: str | None, source: str | None = None) -> None:
        """Set slice ``index`` to ``state``, stamped with who and when (source kept unless given)."""
        previous = self[index]
        self[index] = SliceReview(state=state, by=by, at=utc_now(), source=source if source is not None else previous.source)

    def states(self) -> list[str]:
        return [entry.state for entry in self]

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for entry in self:
            counts[entry.state] += 1
        return counts

    def reviewed_indices(self) -> list[int]:
        return [i for i, entry in enumerate(self) if entry.state in REVIEWED_STATES]

    def next_needing_review(self, start: int, step: int = 1) -> int | None:
        """The nearest slice after (step=1) or before (step=-1) ``start`` that needs review."""
        index = start + step
        while 0 <= index < len(self):
            if self[index].state in NEEDS_REVIEW_STATES:
                return index
            index += step
        return None


def review_provenance(review: "ReviewLog", mask) -> dict:
    """How much of a mask a person vouches for: slice counts per state and voxels by who decided.

    Keys: ``n_slices``; ``reviewed_slices`` (accepted + edited); ``proposed_slices`` (machine output
    nobody looked at yet); ``accepted_slices``, ``edited_slices``, ``flagged_slices``,
    ``unreviewed_slices``; ``reviewed_voxels`` and ``unreviewed_voxels`` (mask voxels on reviewed
    and on all other slices) and ``unreviewed_share`` (the latter's share of all mask voxels, 0
    for an empty mask); ``mostly_unreviewed`` (share above :data:`MAX_UNREVIEWED_SHARE`).
    """
    import numpy as np

    per_slice = (np.asarray(mask) > 0).reshape(len(review), -1).sum(axis=1)
    reviewed = np.array([entry.state in REVIEWED_STATES for entry in review], dtype=bool)
    counts = review.counts()
    reviewed_voxels, unreviewed_voxels = int(per_slice[reviewed].sum()), int(per_slice[~reviewed].sum())
    total = reviewed_voxels + unreviewed_voxels
    share = unreviewed_voxels / total if total else 0.0
    return {
        "n_slices": len(review),
        "reviewed_slices": int(reviewed.sum()),
        "proposed_slices": counts[PROPOSED],
        "accepted_slices": counts[ACCEPTED],
        "edited_slices": counts[EDITED],
        "flagged_slices": counts[FLAGGED],
        "unreviewed_slices": counts[UNREVIEWED],
        "reviewed_voxels": reviewed_voxels,
        "unreviewed_voxels": unreviewed_voxels,
        "unreviewed_share": round(share, 4),
        "mostly_unreviewed": bool(share > MAX_UNREVIEWED_SHARE),
    }
