"""The local HTTP server of ``tnnspec view``: the page, the state as JSON, and change events.

Routes (GET only):

- ``/`` — the page (``static/index.html``); ``/static/NAME`` — one of the files in ``static/``;
  nothing else from disk is ever served;
- ``/api/state`` — the current state (:class:`~tnnspec.view.state.ViewState`) as JSON;
  ``/api/state?since=V`` waits (up to 25 s) until the version is past ``V`` (long polling);
- ``/events`` — Server-Sent Events: ``event: version`` with the version number, sent at once and
  after every rebuild.

The server binds 127.0.0.1 only and answers only requests whose ``Host`` is this address or
``localhost`` (a web page elsewhere cannot reach it through DNS rebinding). A watcher thread
polls the file and its includes (mtime, size, inode) every ``poll`` seconds and rebuilds the
state only when one changed.
"""

from __future__ import annotations

import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

from .state import ViewState

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LONG_POLL_S = 25.0
KEEPALIVE_S = 15.0
# the page runs only its own script; the pictures are inline SVG
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


def static_files() -> dict[str, bytes]:
    """The page's files (package data), by name: all that the server serves from disk."""
    folder = resources.files("tnnspec.view") / "static"
    return {f.name: f.read_bytes() for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and Path(f.name).suffix in CONTENT_TYPES}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    view: ViewServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can hang on a closed network
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "tnnspec-view"

    def log_message(self, format, *args) -> None:  # quiet: the terminal shows the URL only
        pass

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _host_allowed(self) -> bool:
        host = self.headers.get("Host")
        if host is None:
            return True
        port = self.server.server_address[1]
        return host.lower() in (f"{HOST}:{port}", f"localhost:{port}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away

    def _route(self) -> None:
        if not self._host_allowed():
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: tnnspec view answers only to 127.0.0.1 and localhost\n")
            return
        url = urlsplit(self.path)
        view = self.server.view
        if url.path == "/":
            self._send(HTTPStatus.OK, view.static["index.html"], CONTENT_TYPES[".html"])
        elif url.path.startswith("/static/") and url.path[len("/static/"):] in view.static:
            name = url.path[len("/static/"):]
            self._send(HTTPStatus.OK, view.static[name], CONTENT_TYPES[Path(name).suffix])
        elif url.path == "/api/state":
            since = parse_qs(url.query).get("since", [None])[0]
            if since is not None:
                try:
                    view.state.wait(int(since), LONG_POLL_S)
                except ValueError:
                    self._send(HTTPStatus.BAD_REQUEST, b"since: expected a version number\n")
                    return
            self._send(HTTPStatus.OK, view.state.json_bytes(), "application/json")
        elif url.path == "/events":
            self._events()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def _events(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        state = self.server.view.state
        sent = -1
        while not state.closed:
            version = state.version
            if version != sent:
                self.wfile.write(f"event: version\ndata: {version}\n\n".encode())
                sent = version
            else:
                self.wfile.write(b": keep-alive\n\n")  # finds closed connections
            self.wfile.flush()
            state.wait(sent, KEEPALIVE_S)


class ViewServer:
    """``tnnspec view``'s server for one file. ``port=0`` takes a free port (see :attr:`url`).
    Binding raises :class:`OSError` (e.g. the port is in use).

    Run it with :meth:`serve_forever` (blocks; Ctrl-C raises KeyboardInterrupt there), or
    :meth:`start` it in threads (tests); :meth:`close` stops it either way."""

    def __init__(self, file: str | Path, port: int = DEFAULT_PORT, steps: int | None = None, poll: float = 0.25):
        self.state = ViewState(file, steps)
        self.poll = poll
        self.static = static_files()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.httpd = _Server((HOST, port), _Handler)
        self.httpd.view = self

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            self.state.refresh()

    def _start_watcher(self) -> None:
        self.build()
        t = threading.Thread(target=self._watch, name="tnnspec-view-watch", daemon=True)
        t.start()
        self._threads.append(t)

    def build(self) -> None:
        """Build the first state (the first build also imports torch: a few seconds)."""
        if not self.state.version:
            self.state.refresh(force=True)

    def serve_forever(self) -> None:
        self._start_watcher()
        self.httpd.serve_forever(poll_interval=0.25)

    def start(self) -> Self:
        self._start_watcher()
        t = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                             name="tnnspec-view-http", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        self.state.close()  # wakes the event streams and long polls, which then end
        if any(t.name == "tnnspec-view-http" for t in self._threads):
            self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
