"""`ptx-annotate store recover|versions`: an annotator's kept versions, and recovery from them.

    ptx-annotate store versions STUDY --annotator NAME [--series UID] [--store DIR]
    ptx-annotate store recover STUDY --annotator NAME [--version ID] [--series UID] [--store DIR]

``recover`` makes the newest intact kept version (or ``--version ID``) current again, saved as a
new version; it needs no CT, only the store, so it works when ``review.json`` is damaged.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("store", help="list an annotator's kept versions, or recover one after damage")
    actions = parser.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    for name, text in (("versions", "list the kept versions of an annotator's work"),
                       ("recover", "restore the newest intact version (or --version ID) as the current one")):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("study", nargs="?", default=None,
                            help="the study folder or CT (optional with --store)")
        action.add_argument("--annotator", required=True, help="whose work")
        action.add_argument("--store", default=None, metavar="DIR", help="annotation store (default <study>/.ptx)")
        action.add_argument("--series", default=None, metavar="UID",
                            help="series UID or store key when the store holds several series")
        if name == "recover":
            action.add_argument("--version", type=int, default=None, metavar="ID", help="the version to restore")
        else:
            action.add_argument("--json", action="store_true", help="print JSON")
        action.set_defaults(run=run)


def _series_key(store, wanted) -> str:
    from ptx_annotator.errors import PtxError
    from ptx_annotator.review.store_check import safe_key

    keys = store.series_keys()
    if wanted is not None:
        key = safe_key(wanted)
        if key not in keys:
            raise PtxError(f"Series '{wanted}' has nothing in the store '{store.root}'; it holds: {', '.join(keys) or 'nothing'}.")
        return key
    if len(keys) != 1:
        raise PtxError(f"The store '{store.root}' holds {len(keys)} series ({', '.join(keys) or 'none'}): "
                       "name one with --series.")
    return keys[0]


def run(args) -> int:
    import os

    from ptx_annotator.errors import PtxError
    from ptx_annotator.review.store import AnnotationStore, safe_annotator_name

    if args.study is None and args.store is None:
        raise PtxError("Give the STUDY (its store is <study>/.ptx) or --store DIR.")
    if args.study is not None and not os.path.exists(args.study):
        raise PtxError(f"'{args.study}' does not exist: give the study folder or CT file the work belongs to.")
    store = AnnotationStore.for_study(args.study, args.store)
    if not store.root.is_dir():
        raise PtxError(f"There is no annotation store at '{store.root}': nothing to list or recover.")
    key = _series_key(store, args.series)
    annotator = safe_annotator_name(args.annotator)
    if not store.versions(key, annotator):
        raise PtxError(f"Annotator '{annotator}' has no kept versions of series {key} in '{store.root}'.")
    if args.store_action == "recover":
        if args.version is not None and args.version < 1:
            raise PtxError(f"--version {args.version} must be a kept version id (1 or more).")
        try:
            restored, new = store.recover(key, annotator, args.version)
        finally:
            store.close()
        print(f"restored version {restored} of '{annotator}' as version {new} (series {key}, {store.root})")
        return 0
    infos = store.list_versions(key, annotator)
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=1))
        return 0
    for info in infos:
        states = ", ".join(f"{n} {state}" for state, n in info.states.items())
        mark = "*" if info.committed else " "
        print(f"{mark} v{info.id:<5d} {info.saved_at or '?':25s} {info.n_voxels:>9d} voxels  {states}")
    print("* current" if any(i.committed for i in infos) else "no current version (review.json is missing or damaged)")
    return 0
