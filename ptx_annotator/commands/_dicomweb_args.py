"""DICOMweb study URLs on the command line: the one place where a URL becomes a local study.

Before any subcommand runs, every STUDY argument (``study``, ``path``, ``ct``, ``studies``) that is
an ``http(s)://.../studies/<UID>`` URL is replaced by its complete cached CT series folder
(retrieved first when needed, see :mod:`ptx_annotator.io.dicomweb_cache`), and ``--store``
defaults to the server's user store folder, so every command then works as on a local folder.
Commands that read readers' masks also pull each reader's current SEG from the server into
that store (:func:`ptx_annotator.pacs.pull_reader_segs`); offline, the cached study still opens.
"""

from __future__ import annotations

import sys

SINGLE_STUDY_ATTRIBUTES = ("study", "path", "ct")
LIST_STUDY_ATTRIBUTES = ("studies",)
#: Commands whose readers' masks may live on the server as SEGs.
PULL_COMMANDS = ("open", "compare", "export", "quantify", "report")
#: Commands that talk to the server themselves.
OWN_COMMANDS = ("push", "worklist")


def add_auth_argument(parser) -> None:
    """``--dicomweb-auth`` on a subcommand (once)."""
    if any("--dicomweb-auth" in action.option_strings for action in parser._actions):  # noqa: SLF001
        return
    parser.add_argument("--dicomweb-auth", default=None, metavar="CREDENTIALS",
                        help="DICOMweb credentials, USER:PASSWORD or 'Bearer TOKEN' (default: $PTX_DICOMWEB_AUTH; "
                             "prefer the variable, arguments show in process lists)")


def resolve_study_urls(args, log=None):
    """Replace DICOMweb study URLs in ``args`` by local cached series folders (see the module doc)."""
    from ptx_annotator.errors import PtxError
    from ptx_annotator.io.dicomweb import default_store_dir, is_dicomweb_url, parse_study_url
    from ptx_annotator.io.dicomweb_cache import open_cached_or_retrieve

    if getattr(args, "command", None) in OWN_COMMANDS:
        return args
    log = log or (lambda line: print(line, file=sys.stderr))
    auth = getattr(args, "dicomweb_auth", None)
    resolved, local = [], 0

    def resolve(value):
        nonlocal local
        if not is_dicomweb_url(value):
            local += value is not None
            return value
        cached = open_cached_or_retrieve(parse_study_url(value), auth)
        resolved.append(cached)
        if cached.retrieved:
            log(f"retrieved {cached.ref.where()} into {cached.folder}")
        return str(cached.folder)

    for name in SINGLE_STUDY_ATTRIBUTES:
        if hasattr(args, name):
            setattr(args, name, resolve(getattr(args, name)))
    for name in LIST_STUDY_ATTRIBUTES:
        if isinstance(getattr(args, name, None), list):
            setattr(args, name, [resolve(value) for value in getattr(args, name)])
    if not resolved:
        return args
    servers = sorted({cached.ref.server for cached in resolved})
    if hasattr(args, "store") and args.store is None:
        if len(servers) > 1 or local:
            raise PtxError("The studies come from more than one place (DICOMweb servers "
                           f"{', '.join(servers)}{' and local folders' if local else ''}): give one --store DIR.")
        args.store = str(default_store_dir(servers[0]))
    if args.command in PULL_COMMANDS and getattr(args, "store", None):
        for cached in resolved:
            _pull(cached, args, auth, log)
    return args


def _pull(cached, args, auth, log) -> None:
    from ptx_annotator.io import load_volume
    from ptx_annotator.io.dicomweb import Connection, DicomWebError
    from ptx_annotator.pacs import pull_reader_segs
    from ptx_annotator.review.store import AnnotationStore

    readers = getattr(args, "annotators", None) or ([args.annotator] if getattr(args, "annotator", None) else None)
    store = AnnotationStore(args.store)
    try:
        connection = Connection(cached.ref.server, auth, what=cached.ref.study_uid)
        notes = pull_reader_segs(connection, cached.ref, cached.series_uid, lambda: load_volume(cached.folder),
                                 store, readers)
    except DicomWebError as exc:
        notes = [f"readers' SEGs on the server were not checked ({exc}); working from the local cache and store"]
    finally:
        store.close()
    for note in notes:
        log(f"note: {note}")
