"""`ptx-annotate info PATH [--json]`: what a study holds, series by series."""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="list the series of a study with geometry, HU range and warnings")
    parser.add_argument("path", help="study folder, DICOM series folder or file, NIfTI or NRRD file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def describe_study(path) -> dict:
    """A JSON-able description of every series under ``path`` (loads each to get its HU range)."""
    from ptx_annotator.errors import StudyError
    from ptx_annotator.io import load_volume, read_series_files, scan_study
    from ptx_annotator.io.volume_files import is_volume_file

    if is_volume_file(path) or str(path).lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr")):
        volumes, notes = [load_volume(path)], []
    else:
        scan = scan_study(path)
        notes = [scan.skipped_summary()] if scan.skipped else []
        volumes = []
        for series in scan.series:
            try:
                volumes.append(read_series_files(series.files, allow_non_ct=True))
            except StudyError as exc:
                volumes.append({"series_uid": series.series_uid, "n_slices": len(series.files),
                                "modality": series.modality, "description": series.description, "error": str(exc)})
    return {"path": os.fspath(path), "notes": notes, "series": [_describe(v) for v in volumes]}


def _describe(volume) -> dict:
    if isinstance(volume, dict):
        return volume
    hu = volume.hu
    finite = np.isfinite(hu) if hu.dtype.kind == "f" else None
    values = hu if finite is None or finite.all() else hu[finite]  # HU range of the finite voxels
    return {
        "series_uid": volume.series_uid,
        "description": volume.description,
        "modality": volume.modality,
        "n_slices": int(hu.shape[0]),
        "shape": [int(n) for n in hu.shape],
        "spacing_mm": [round(float(s), 4) for s in volume.spacing],
        "hu_min": float(np.min(values)) if values.size else None,
        "hu_max": float(np.max(values)) if values.size else None,
        "orientation": volume.orientation,
        "transfer_syntax": volume.transfer_syntax,
        "key": volume.key,
        "warnings": list(volume.warnings),
    }


def run(args) -> int:
    report = describe_study(args.path)
    failed = sum(1 for entry in report["series"] if "error" in entry)
    status = 2 if failed else 0  # a series that cannot be read is an error, in text and in JSON alike
    if failed:
        print(f"ptx-annotate: error: {failed} of {len(report['series'])} series in '{args.path}' cannot be read "
              "(see 'error' in the report).", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return status
    for line in report["notes"]:
        print(f"note: {line}")
    for entry in report["series"]:
        print(f"series {entry['series_uid']}  {entry.get('modality', '?')}  '{entry.get('description', '')}'")
        if "error" in entry:
            print(f"  error: {entry['error']}")
            continue
        z, y, x = entry["shape"]
        sz, sy, sx = entry["spacing_mm"]
        print(f"  {entry['n_slices']} slices, {x}x{y} px, spacing z {sz:g} / y {sy:g} / x {sx:g} mm, "
              f"orientation {entry['orientation']}")
        hu_range = "n/a" if entry["hu_min"] is None else f"{entry['hu_min']:g} .. {entry['hu_max']:g}"
        print(f"  HU {hu_range}; transfer syntax {entry['transfer_syntax']}")
        for warning in entry["warnings"]:
            print(f"  warning: {warning}")
    return status
