"""`ptx-annotate worklist SERVER_URL [--json]`: the CT studies on a PACS and each reader's progress."""

from __future__ import annotations

import contextlib
import json
import sys

from ptx_annotator.commands._dicomweb_args import add_auth_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "worklist", help="list the CT studies on a DICOMweb server with each reader's progress (no patient data)",
        description="List the CT studies of a DICOMweb server: accession number or study date, description, "
                    "number of slices, each reader's reviewed slices (local store) and SEG (server), and whether "
                    "a proposal exists. With --predict-unproposed, propose for every study without a proposal.")
    parser.add_argument("server_url", metavar="SERVER_URL", help="http(s)://HOST[:PORT]/.../dicom-web")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="annotation store (default: $PTX_STORE_DIR/<server> or "
                             "~/.local/share/ptx-annotator/stores/<server>)")
    parser.add_argument("--predict-unproposed", action="store_true",
                        help="run 'predict' on every study of the list that has no proposal yet")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="with --predict-unproposed: the model (default: the classical proposer)")
    parser.add_argument("--annotator", default=None, metavar="NAME",
                        help="with --predict-unproposed: store the proposals as this annotator (default 'model')")
    add_auth_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.errors import PtxError
    from ptx_annotator.io.dicomweb import default_store_dir, parse_server_url
    from ptx_annotator.pacs import worklist

    if (args.checkpoint or args.annotator) and not args.predict_unproposed:
        raise PtxError("--checkpoint and --annotator go with --predict-unproposed.")
    server = parse_server_url(args.server_url)
    store = args.store or str(default_store_dir(server))
    rows = worklist(server, store, args.dicomweb_auth)
    failed = 0
    if args.predict_unproposed:
        failed = _predict_unproposed(rows, store, args)
        rows = worklist(server, store, args.dicomweb_auth)
    if args.json:
        print(json.dumps({"server": server, "store": store, "studies": rows}, indent=2))
    else:
        print(format_worklist(rows, server))
    return 1 if failed else 0


def _predict_unproposed(rows, store, args) -> int:
    from ptx_annotator.cli import main

    todo = [row for row in rows if not row["proposal"]]
    print(f"predicting {len(todo)} of {len(rows)} studies (the others have a proposal)", file=sys.stderr)
    failed = 0
    for row in todo:
        argv = ["predict", row["url"], "--store", store]
        argv += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--proposer", "classical"]
        argv += ["--annotator", args.annotator] if args.annotator else []
        argv += ["--dicomweb-auth", args.dicomweb_auth] if args.dicomweb_auth else []
        with contextlib.redirect_stdout(sys.stderr):  # standard output keeps only the listing
            status = main(argv)
        failed += status != 0
    return failed


def format_worklist(rows: list[dict], server: str) -> str:
    """One line per study: number, accession or date, description, slices, proposal/SEG, readers."""
    from ptx_annotator.pacs import reader_progress

    if not rows:
        return f"no CT studies on {server}"
    lines = [f"{len(rows)} CT studies on {server}"]
    for number, row in enumerate(rows, 1):
        label = f"accession {row['accession']}" if row["accession"] else f"study date {row['date'] or '?'}"
        flags = ", ".join(word for word, on in (("proposal", row["proposal"]), ("SEG", row["seg"])) if on) or "nothing yet"
        readers = "; ".join(f"{name} {reader_progress(entry)}" for name, entry in sorted(row["readers"].items()))
        lines.append(f"{number:3d}. {label}  '{row['description']}'  {row['slices']} slices  [{flags}]"
                     + (f"  readers: {readers}" if readers else ""))
        lines.append(f"     {row['url']}")
    return "\n".join(lines)
