"""``tnnspec view FILE [--port N]``: serve a live view of a spec file on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0: any free port)")
    return port


def add_view_parser(sub) -> None:
    from ..view.server import DEFAULT_PORT

    v = sub.add_parser("view", help="live view in the browser: pictures, details, summary and diagnostics, "
                                    "updated on every save", description=(
        "Serve a page on http://127.0.0.1:PORT/ showing the area graph and the unrolled picture of FILE "
        "(pan/zoom, details of areas and edges on hover), the summary table, the plan and every "
        "diagnostic. The page updates within a second of each save of FILE or of a file it includes; "
        "while the file has errors the pictures stay at the last valid version. Only this machine can "
        "connect. Ctrl-C (or SIGTERM) stops the server."))
    v.add_argument("file", metavar="FILE")
    v.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N",
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)")
    v.add_argument("--steps", type=int, default=None, metavar="T", help="steps for the unrolled picture and the plan "
                                                           "(default: the file's)")
    v.set_defaults(fn=cmd_view)


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop the server cleanly. SIGINT is set explicitly: a process
    started from a background job of a non-interactive shell inherits SIGINT ignored, and Python
    then leaves it ignored, so Ctrl-C forwarded to it (or a test's SIGINT) would do nothing."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def cmd_view(args) -> int:
    from ..view.server import HOST, ViewServer

    _stop_on_signals()

    if not Path(args.file).is_file():
        what = "is a directory, not a spec file" if Path(args.file).is_dir() else "no such file"
        print(f"error: {args.file}: {what}", file=sys.stderr)
        return 1
    server = None
    try:
        try:
            server = ViewServer(args.file, port=args.port, steps=args.steps)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                print(f"error: port {args.port} on {HOST} is in use (another tnnspec view?); choose another "
                      "with --port N, or --port 0 for any free port", file=sys.stderr)
            else:
                print(f"error: cannot listen on {HOST}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"tnnspec view: checking {args.file} ...", flush=True)
        server.build()
        state = server.state.snapshot()
        status = "valid" if state["valid"] else f"{state['errors']} error(s)"
        print(f"tnnspec view: {args.file} ({status}; watching {len(server.state.files)} file(s)) "
              f"at {server.url}  (Ctrl-C stops)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.close()
    print("tnnspec view: stopped", flush=True)
    return 0
