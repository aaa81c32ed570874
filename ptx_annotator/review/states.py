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
