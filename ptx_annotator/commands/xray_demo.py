"""`ptx-annotate xray-demo [--checkpoint CKPT] [--share]`: the chest X-ray demo in a browser."""

from __future__ import annotations

import os
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "xray-demo", help="serve the chest X-ray pneumothorax demo (Gradio), optionally with a public share link",
        description="Upload a PNG, JPEG or DICOM chest X-ray in the browser and see the predicted pneumothorax. "
                    "The API endpoint /predict is usable from gradio_client.")
    parser.add_argument("--checkpoint", default=None,
                        help="X-ray checkpoint from 'ptx-annotate train-xray' (without it the demo explains how to get one)")
    parser.add_argument("--share", action="store_true", help="also ask Gradio for a temporary public link (needs internet)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 for the LAN)")
    parser.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    parser.add_argument("--auth", default=None, metavar="USER:PASS", help="ask for this user name and password")
    parser.add_argument("--device", default="cpu", help="torch device for the model (default %(default)s)")
    parser.add_argument("--max-file-size", default="64mb", help="largest upload accepted (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=2, help="predictions run at the same time (default %(default)s)")
    parser.set_defaults(run=run)


def parse_auth(text: str | None):
    from ptx_annotator.errors import PtxError

    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise PtxError("--auth must look like USER:PASS (both parts non-empty).")
    return user, password


def check_file_size(text: str) -> None:
    """Refuse an upload limit Gradio cannot read (a number with kb, mb or gb)."""
    import re

    from ptx_annotator.errors import PtxError

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(b|kb|mb|gb)\s*", str(text).lower()):
        raise PtxError(f"--max-file-size '{text}' must be a size such as 64mb, 500kb or 1gb.")


def run(args) -> int:
    from ptx_annotator.errors import PtxError

    auth = parse_auth(args.auth)
    if args.concurrency < 1:
        raise PtxError(f"--concurrency must be at least 1 (got {args.concurrency}).")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise PtxError(f"--port {args.port} is not a TCP port: give a number from 1 to 65535 (above 1023 without root).")
    check_file_size(args.max_file_size)
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        raise PtxError(f"--checkpoint '{args.checkpoint}' is not a file: give the .safetensors file from "
                       "'ptx-annotate train-xray'.")
    from ptx_annotator.plugins.gradio.app import build_demo, close_demo, launch_demo

    demo = build_demo(args.checkpoint, device=args.device, concurrency_limit=args.concurrency)
    if args.checkpoint is None:
        print("No --checkpoint given: the demo shows images but makes no prediction. Train a model with "
              "'ptx-annotate train-xray --images DIR --rle CSV --out xray-unet.safetensors'.")
    try:
        urls = launch_demo(demo, host=args.host, port=args.port, share=args.share, auth=auth,
                           max_file_size=args.max_file_size, prevent_thread_lock=True)
    except OSError as exc:
        raise PtxError(f"The demo could not start on {args.host}:{args.port or 'default port'} ({exc}). "
                       "Choose another --port.") from exc
    print(f"Serving locally at {urls['local_url']}")
    if urls["share_url"]:
        print(f"Public link: {urls['share_url']}")
    elif urls["share_failed"]:
        print("The public share link could not be created (no internet connection, or the Gradio share server is "
              f"unreachable). The demo keeps serving locally at {urls['local_url']}.")
    sys.stdout.flush()
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        close_demo(demo)
    return 0
