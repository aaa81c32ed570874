"""Where the store keeps things: the store-root rule and the safe folder names of series and annotators."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from ptx_annotator.errors import InvalidAnnotatorError, PtxError
from ptx_annotator.review.store_check import safe_key


def safe_annotator_name(name: str) -> str:
    """A name that is safe as one folder name: letters, digits, '.', '_' and '-' only.

    Spaces and other characters become '_'; leading dots are removed, so '..' or '/etc' can
    never leave the store. Raises :class:`InvalidAnnotatorError` if nothing usable remains
    (an empty name included: it never silently becomes a default).
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    text = safe_key(text.strip()) or ""
    text = text[:64]
    if not text:
        raise InvalidAnnotatorError(
            f"Annotator name {name!r} has no letters or digits to use; give a name such as 'dr_smith'."
        )
    return text


def series_folder_name(series_key: str) -> str:
    """The folder name of a series in the store (its key made safe); refuses a key with nothing usable."""
    key = safe_key(series_key)
    if not key:
        raise PtxError(f"Series key {series_key!r} cannot name a folder.")
    return key


def store_root_for(study_path) -> Path:
    """THE store-root rule: ``<study>/.ptx`` of the folder named, or an existing one above it.

    ``study_path`` is a study folder, a series sub-folder or a CT file. Its folder's ``.ptx`` is
    used if it exists; else the nearest ancestor that already has a ``.ptx`` folder (so a CT in a
    series sub-folder, as ``simulate`` writes it, shares its study's store); else a new
    ``<folder>/.ptx``. The search stops below the home folder, the temp folder and the root.
    """
    study = Path(os.path.expanduser(os.fspath(study_path)))
    base = (study if study.is_dir() else study.parent).absolute()
    if (base / ".ptx").is_dir():
        return base / ".ptx"
    import tempfile

    stops = set()
    for place in (Path.home(), Path(tempfile.gettempdir()), Path(base.anchor)):
        try:
            stops.add(place.resolve())
        except OSError:
            pass
    for parent in base.parents:
        if parent.resolve() in stops:
            break
        if (parent / ".ptx").is_dir():
            return parent / ".ptx"
    return base / ".ptx"
