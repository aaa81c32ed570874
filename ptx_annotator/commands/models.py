"""`ptx-annotate models STORE_OR_STUDY [--activate V] [--json]`: the model registry's versions."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the trained model versions and their hold-out metrics, "
                                                  "or switch the active one")
    parser.add_argument("path", metavar="STORE_OR_STUDY",
                        help="registry folder, annotation store, or study (looks in <study>/.ptx/models)")
    parser.add_argument("--activate", default=None, metavar="V", help="make version V (e.g. v0002 or 2) the active model")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.training.registry import METRIC_KEYS, registry_for

    registry = registry_for(args.path)
    if args.activate:
        entry = registry.activate(args.activate)
        if not args.json:
            print(f"{entry['version']} is now the active model ({registry.folder / entry['file']}).")
    payload = registry.load()
    if args.json:
        print(json.dumps({"registry": str(registry.folder), "active": payload["active"], "versions": payload["versions"],
                          "split": _split_summary(payload.get("split"))}, indent=2))
        return 0
    split = _split_summary(payload.get("split"))
    print(f"registry {registry.folder}")
    if split:
        print(f"frozen split ({split['granularity']}): " + ", ".join(f"{k} {v}" for k, v in split["units"].items()) + " units")
    header = f"  {'version':8s} {'parent':8s} {'epochs':>6s} " + " ".join(f"{k:>9s}" for k in METRIC_KEYS)
    print(header)
    for entry in payload["versions"]:
        metrics = entry.get("metrics") or {}
        mark = "*" if entry["version"] == payload["active"] else " "
        values = " ".join(f"{_fmt(metrics.get(k)):>9s}" for k in METRIC_KEYS)
        print(f"{mark} {entry['version']:8s} {str(entry.get('parent') or '-'):8s} {entry.get('epochs', 0):>6} {values}")
    if not payload["versions"]:
        print("  (no versions yet)")
    print("* active" if payload["active"] else "no active model")
    return 0


def _split_summary(split) -> dict | None:
    if not split:
        return None
    counts: dict[str, int] = {}
    for subset in (split.get("units") or {}).values():
        counts[subset] = counts.get(subset, 0) + 1
    return {"granularity": split.get("granularity"), "units": counts}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
