"""What a ``review.json`` must satisfy before the store believes it (no silent reset, no escape).

A damaged or inconsistent file is refused with the reason; nothing is guessed or reset. The
paths it names are confined to the annotator's own folder, so an edited ``mask_file`` can never
load another annotator's mask.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ptx_annotator.errors import PtxError
from ptx_annotator.review.states import STATES

FORMAT_VERSION = 1


class DamagedStoreError(PtxError):
    """A review file that is damaged or disagrees with its folder or mask; nothing was changed."""


def read_json(path: Path):
    """The parsed JSON of ``path``, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_key(series_key: str) -> str | None:
    """The folder name of a series key, or None when nothing usable remains."""
    return _SAFE_NAME.sub("_", str(series_key)).strip("._-") or None


def problem_with(payload, folder: Path, format_version: int) -> str | None:
    """Why ``payload`` (a parsed review file of ``folder``) cannot be trusted, or None if it can."""
    if not isinstance(payload, dict) or not payload:
        return "it is empty or not a JSON object"
    if payload.get("format") != format_version:
        return f"its format is {payload.get('format')!r}, this version reads format {format_version}"
    if payload.get("annotator") != folder.name:
        return f"it names annotator {payload.get('annotator')!r} but lies in the folder of '{folder.name}'"
    if safe_key(payload.get("series_key", "")) != folder.parent.name:
        return f"it names series {payload.get('series_key')!r} but lies in the folder of series '{folder.parent.name}'"
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"its version {version!r} is not a positive whole number"
    shape = payload.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)):
        return f"its mask shape {shape!r} is not three positive whole numbers"
    slices = payload.get("slices")
    if not isinstance(slices, list) or len(slices) != shape[0]:
        got = len(slices) if isinstance(slices, list) else type(slices).__name__
        return f"it lists {got} slice states for a mask of {shape[0]} slices"
    for index, entry in enumerate(slices):
        if not isinstance(entry, dict) or entry.get("state", "unreviewed") not in STATES:
            return f"slice {index} has no valid review state ({entry!r})"
    if confined(folder, payload.get("mask_file")) is None:
        return f"its mask file {payload.get('mask_file')!r} is not a file name inside '{folder}'"
    return None


def confined(folder: Path, name) -> Path | None:
    """``folder / name`` if ``name`` is a relative path that stays inside ``folder``, else None."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or "\\" in name:
        return None
    path = folder / name
    try:
        inside = folder.resolve() in path.resolve().parents
    except (OSError, RuntimeError):
        return None
    return path if inside else None


