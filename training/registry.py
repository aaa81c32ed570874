"""The checkpoint registry: versioned models, the active one, and the frozen data split.

Layout of a registry folder (default ``<store>/models/``)::

    registry.json        active version, frozen split, one record per version (metrics, parent ...)
    v0001.safetensors    ordinary checkpoints (``ptx_annotator.model``), usable by ``predict``
    v0001-loss.png       the loss curve of the run that made it
    .lock                held while registry.json is being rewritten

A new version becomes **active** only if its hold-out Dice is not below the active version's
Dice on the same hold-out slices (the caller measures both); otherwise it is kept, inactive, and
the returned message says so. ``activate`` switches by hand.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ptx_annotator.atomic import write_json_atomic
from ptx_annotator.errors import PtxError
from ptx_annotator.model import CheckpointMeta, save_checkpoint
from ptx_annotator.review.states import utc_now
from .split import FrozenSplit

REGISTRY_FILE = "registry.json"
FORMAT_VERSION = 1
METRIC_KEYS = ("dice", "iou", "precision", "recall", "accuracy", "auc")


@dataclass
class Registration:
    """What happened to a newly trained model."""

    version: str
    path: Path
    activated: bool
    message: str
    previous_active: str | None = None


class ModelRegistry:
    """Versioned checkpoints in one folder with ``registry.json`` as the index."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def index_path(self) -> Path:
        return self.folder / REGISTRY_FILE

    # -- reading ---------------------------------------------------------------------------
    def load(self) -> dict:
        if not self.index_path.is_file():
            return {"format": FORMAT_VERSION, "active": None, "split": None, "versions": []}
        try:
            payload = json.loads(self.index_path.read_text())
        except (OSError, ValueError) as exc:
            raise PtxError(f"The model registry '{self.index_path}' cannot be read ({exc}); restore it from a "
                           "backup or move the folder away to start a new registry.") from exc
        payload.setdefault("versions", [])
        payload.setdefault("active", None)
        payload.setdefault("split", None)
        return payload

    def versions(self) -> list[dict]:
        return self.load()["versions"]

    def record(self, version: str) -> dict:
        version = normalise_version(version)
        for entry in self.versions():
            if entry["version"] == version:
                return entry
        known = ", ".join(v["version"] for v in self.versions()) or "none"
        raise PtxError(f"Model version '{version}' is not in the registry '{self.folder}' (known: {known}).")

    def active(self) -> dict | None:
        payload = self.load()
        if not payload["active"]:
            return None
        return next((v for v in payload["versions"] if v["version"] == payload["active"]), None)

    def path_of(self, version: str) -> Path:
        return self.folder / self.record(version)["file"]

    def active_path(self) -> Path | None:
        active = self.active()
        return None if active is None else self.folder / active["file"]

    def split(self) -> FrozenSplit | None:
        payload = self.load().get("split")
        return FrozenSplit.from_json(payload) if payload else None

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def save_split(self, split: FrozenSplit) -> None:
        """Store the split; units already frozen are never changed, only new units are added."""
        with self._locked():
            payload = self.load()
            if payload.get("split"):
                frozen = FrozenSplit.from_json(payload["split"])
                for unit, subset in split.units.items():
                    frozen.units.setdefault(unit, subset)
                split = frozen
            payload["split"] = split.to_json()
            write_json_atomic(self.index_path, payload)

    def register(self, model, meta: CheckpointMeta, metrics: dict | None, *, parent: str | None = None,
                 data_manifest: str = "", epochs: int = 0, baseline_dice: float | None = None,
                 extra: dict | None = None) -> Registration:
        """Save ``model`` as the next version and activate it if its hold-out Dice is not worse.

        ``baseline_dice`` is the active model's Dice on the same hold-out slices; without it the
        Dice stored with the active version is used.
        """
        with self._locked():
            payload = self.load()
            number = 1 + max((int(v["version"][1:]) for v in payload["versions"]), default=0)
            version = f"v{number:04d}"
            meta.metrics = {**(meta.metrics or {}), **{k: (metrics or {}).get(k) for k in METRIC_KEYS}}
            meta.provenance = {**(meta.provenance or {}), "version": version, "parent": parent,
                               "data_manifest": data_manifest, "epochs": epochs}
            meta.name = meta.name or version
            path = save_checkpoint(model, self.folder / f"{version}.safetensors", meta)
            active = next((v for v in payload["versions"] if v["version"] == payload["active"]), None)
            new_dice = (metrics or {}).get("dice")
            old_dice = baseline_dice if baseline_dice is not None else (active or {}).get("metrics", {}).get("dice")
            activated, message = _decide(version, new_dice, active, old_dice)
            entry = {"version": version, "file": path.name, "created": utc_now(), "parent": parent,
                     "data_manifest": data_manifest, "epochs": epochs,
                     "metrics": {k: (metrics or {}).get(k) for k in METRIC_KEYS},
                     "holdout_slices": (metrics or {}).get("n_slices"),
                     "baseline_dice": old_dice, "encoder": meta.encoder, "input_size": meta.input_size,
                     **(extra or {})}
            payload["versions"].append(entry)
            previous = payload["active"]
            if activated:
                payload["active"] = version
            write_json_atomic(self.index_path, payload)
        return Registration(version, path, activated, message, previous)

    def activate(self, version: str) -> dict:
        """Make ``version`` the active model (by hand; no Dice check)."""
        version = normalise_version(version)
        with self._locked():
            payload = self.load()
            entry = next((v for v in payload["versions"] if v["version"] == version), None)
            if entry is None:
                known = ", ".join(v["version"] for v in payload["versions"]) or "none"
                raise PtxError(f"Model version '{version}' is not in the registry '{self.folder}' (known: {known}).")
            if not (self.folder / entry["file"]).is_file():
                raise PtxError(f"The checkpoint of {version} ('{self.folder / entry['file']}') is missing; it cannot be activated.")
            payload["active"] = version
            write_json_atomic(self.index_path, payload)
        return entry


def _decide(version: str, new_dice, active: dict | None, old_dice) -> tuple[bool, str]:
    if active is None:
        return True, f"{version} is the first model of this registry and is now active" + _dice_text(new_dice) + "."
    if new_dice is None:
        return False, (f"{version} was kept inactive: no hold-out slices were available to measure it, so it cannot "
                       f"be shown to be at least as good as {active['version']}. Activate it by hand with "
                       f"'ptx-annotate models ... --activate {version}' if you trust it.")
    if old_dice is None or new_dice >= old_dice:
        return True, f"{version} is now active: hold-out Dice {new_dice:.3f} vs {_fmt(old_dice)} for {active['version']}."
    return False, (f"{version} was kept inactive: its hold-out Dice {new_dice:.3f} is below {old_dice:.3f} of the "
                   f"active {active['version']}. The active model is unchanged.")


def _dice_text(value) -> str:
    return "" if value is None else f" (hold-out Dice {value:.3f})"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def normalise_version(version) -> str:
    """'3', 'v3' and 'v0003' all name version v0003."""
    match = re.fullmatch(r"[vV]?0*(\d+)", str(version).strip())
    if not match:
        raise PtxError(f"'{version}' is not a model version; versions look like v0003 (or just 3).")
    return f"v{int(match.group(1)):04d}"


def registry_for(path_or_store) -> ModelRegistry:
    """The registry of a store root, a study (``<study>/.ptx/models``) or a registry folder itself."""
    path = Path(path_or_store)
    if path.is_file():  # a study file (NIfTI, NRRD, one DICOM file): its store is <folder>/.ptx
        path = path.parent
    if (path / REGISTRY_FILE).is_file():
        return ModelRegistry(path)
    if (path / "models" / REGISTRY_FILE).is_file():
        return ModelRegistry(path / "models")
    from ptx_annotator.review.store import store_root_for  # the one store-root rule

    study_models = store_root_for(path_or_store) / "models"
    if (study_models / REGISTRY_FILE).is_file():
        return ModelRegistry(study_models)
    raise PtxError(f"No model registry found at '{path}' (looked for registry.json in it, in models/ and in "
                   ".ptx/models/). Train a model first with 'ptx-annotate train'.")
