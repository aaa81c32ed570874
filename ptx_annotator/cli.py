"""`ptx-annotate`: the command line over the core, the napari app and the Gradio demo.

Each subcommand lives in its own module under :mod:`ptx_annotator.commands` and defines
``register(subparsers)``; heavy imports (torch, napari, gradio) happen inside the command.
``ptx-annotate STUDY`` with no subcommand opens the study in napari (``open``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from ptx_annotator import commands
from ptx_annotator.errors import PtxError

PROG = "ptx-annotate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Annotate and review pneumothorax on chest CT with a model in the loop.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    from ptx_annotator.commands._dicomweb_args import add_auth_argument

    for subparser in subparsers.choices.values():  # every STUDY may be a DICOMweb URL
        add_auth_argument(subparser)
    return parser


def _with_default_command(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Insert ``open`` when the first word is a path, not a subcommand (``ptx-annotate STUDY``)."""
    names = set()
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001
        names.update(getattr(action, "choices", {}) or {})
    for index, word in enumerate(argv):
        if word.startswith("-"):
            continue
        if word not in names and "open" in names:
            return [*argv[:index], "open", *argv[index:]]
        break
    return argv


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failed check, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_with_default_command(argv, parser))
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        from ptx_annotator.commands._common import resolve_study_sources

        args = resolve_study_sources(args)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except PtxError as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, OverflowError) as exc:
        if args.debug:
            raise
        from ptx_annotator.commands._errors import os_error_message, overflow_message

        text = overflow_message(exc) if isinstance(exc, OverflowError) else os_error_message(exc)
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"{PROG}: error: not enough memory for this input; try a smaller one or close other programs.",
              file=sys.stderr)
        return 2
    except Exception as exc:  # last resort: one readable line, never a traceback
        if args.debug or os.environ.get("PTX_DEBUG"):
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {first_line} (run with --debug for details)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
