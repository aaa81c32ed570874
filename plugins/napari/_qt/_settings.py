"""The few things the napari app remembers between runs (e.g. the annotator's name)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ptx_annotator.atomic import write_json_atomic


def settings_path() -> Path:
    """``$PTX_ANNOTATOR_CONFIG`` or ``$XDG_CONFIG_HOME/ptx-annotator/settings.json`` (~/.config)."""
    explicit = os.environ.get("PTX_ANNOTATOR_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ptx-annotator" / "settings.json"


def load_settings() -> dict:
    try:
        data = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_annotator() -> str | None:
    name = load_settings().get("annotator")
    return str(name) if name else None


def remember_annotator(name: str) -> None:
    """Store the annotator's name; failing to write settings is not worth an error."""
    settings = load_settings()
    settings["annotator"] = name
    try:
        settings_path().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(settings_path(), settings)
    except OSError:
        pass
