"""DICOMweb study URLs on the command line: the one place where a URL becomes a local study.

Before any subcommand runs, every STUDY argument (``study``, ``path``, ``ct``, ``studies``) that is
an ``http(s)://.../studies/<UID>`` URL is replaced by its complete cached CT series folder
(retrieved first when needed, see :mod:`ptx_annotator.io.dicomweb_cache`), and ``--store``
defaults to the server's user store folder, so every command then works as on a local folder.
Commands that read readers' masks also pull each reader's current SEG from the server into
that store (:func:`ptx_annotator.pacs.open_study_url`); offline, the cached study still opens.
"""

from __future__ import annotations

import sys

SINGLE_STUDY_ATTRIBUTES = ("study", "path", "ct")
LIST_STUDY_ATTRIBUTES = ("studies",)
#: Commands whose readers' masks may live on the server as SEGs.
PULL_COMMANDS = ("open", "compare", "export", "quantify", "report")
#: Commands whose STUDY argument stands for the study's store.
STORE_COMMANDS = ("models",)
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
    from ptx_annotator.io.dicomweb import is_dicomweb_url, parse_study_url
    from ptx_annotator.pacs import open_study_url

    if getattr(args, "command", None) in OWN_COMMANDS:
        return args
    log = log or (lambda line: print(line, file=sys.stderr))
    urls = [value for name in SINGLE_STUDY_ATTRIBUTES if is_dicomweb_url(getattr(args, name, None))
            for value in [getattr(args, name)]]
    urls += [value for name in LIST_STUDY_ATTRIBUTES for value in (getattr(args, name, None) or [])
             if is_dicomweb_url(value)]
    if not urls:
        return args
    servers = sorted({parse_study_url(url).server for url in urls})
    local = [value for name in SINGLE_STUDY_ATTRIBUTES + LIST_STUDY_ATTRIBUTES
             for value in _values(getattr(args, name, None)) if not is_dicomweb_url(value)]
    if hasattr(args, "store") and args.store is None and (len(servers) > 1 or local):
        raise PtxError("The studies come from more than one place (DICOMweb servers "
                       f"{', '.join(servers)}{' and local folders' if local else ''}): give one --store DIR.")
    readers = getattr(args, "annotators", None) or ([args.annotator] if getattr(args, "annotator", None) else None)
    opened = {}
    for url in urls:
        opened[url] = open_study_url(url, auth=getattr(args, "dicomweb_auth", None),
                                     store_dir=getattr(args, "store", None), readers=readers,
                                     pull=args.command in PULL_COMMANDS and hasattr(args, "store"))
        for note in opened[url].notes:
            log(note if note.startswith("retrieved") else f"note: {note}")
    for name in SINGLE_STUDY_ATTRIBUTES:
        if getattr(args, name, None) in opened:
            chosen = opened[getattr(args, name)]
            # 'models STORE_OR_STUDY': a URL study's registry lives in its user store, not in the cache
            setattr(args, name, str(chosen.store_dir if args.command in STORE_COMMANDS else chosen.folder))
    for name in LIST_STUDY_ATTRIBUTES:
        if isinstance(getattr(args, name, None), list):
            setattr(args, name, [str(opened[v].folder) if v in opened else v for v in getattr(args, name)])
    if hasattr(args, "store") and args.store is None:
        args.store = str(next(iter(opened.values())).store_dir)
    return args


def _values(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
