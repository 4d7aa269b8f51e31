"""The HTTP server of the test suite, on 127.0.0.1: serves files and misbehaves on request.

    server = FileServer().start()                  # or FileServer(root=directory): serves its files as they are
    server.serve("/w/a.pth", data)                 # 200, honours `Range: bytes=N-` with 206 (in every mode)
    server.serve("/w/a.pth", data, mode="short")   # Content-Length says len(data), half is sent, clean close
    server.fail("/w/b.pth", 404)
    server.serve("/w/c.pth", data, steps=["drop", 500])  # 1st request dropped, 2nd answered 500, then ok
    server.url("/w/a.pth"); server.count("/w/a.pth"); server.requests
    server.stop()                                  # the port then refuses connections

Modes: ``ok``; ``short`` (half the body, then a clean close); ``drop`` (half the body, then a TCP reset);
``stall_body`` (half the body, then silence); ``stall_headers`` (silence before the status line);
``unsized_short`` (half the body without a Content-Length header, then a clean close: truncation that only a
checksum can reveal). A stall lasts until ``stall_s`` passes or the server stops. ``delay_s`` spreads an ``ok``
body over that time. ``steps`` lists, one per request, the mode or HTTP error status of the first requests;
later requests get ``mode``. ``ranges=False`` makes the server ignore Range requests (a full 200 answer).
A path with no route is looked up under ``root`` (read at each request, so tests may change the files) and
served in mode ``ok``; anything else is a 404.
"""

from __future__ import annotations

import socket
import struct
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODES = ("ok", "short", "drop", "stall_body", "stall_headers", "unsized_short")


@dataclass
class Route:
    body: bytes = b""
    mode: str = "ok"
    status: int = 200
    delay_s: float = 0.0
    stall_s: float = 30.0
    steps: list[str | int] = field(default_factory=list)
    ranges: bool = True


@dataclass
class Request:
    path: str
    headers: dict[str, str]


class FileServer:
    """A threaded HTTP server whose routes can be reconfigured while it runs."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ---------------------------------------------------------------------------------
    def serve(
        self,
        path: str,
        body: bytes,
        mode: str = "ok",
        *,
        delay_s: float = 0.0,
        stall_s: float = 30.0,
        steps: Sequence[str | int] = (),
        ranges: bool = True,
    ) -> str:
        for step in (mode, *steps):
            if not (isinstance(step, int) or step in MODES):
                raise ValueError(f"modes must be HTTP status codes or one of {MODES}, got {step!r}")
        route = Route(body=body, mode=mode, delay_s=delay_s, stall_s=stall_s, steps=list(steps), ranges=ranges)
        with self._lock:
            self.routes[path] = route
        return self.url(path)

    def fail(self, path: str, status: int) -> str:
        with self._lock:
            self.routes[path] = Route(status=status)
        return self.url(path)

    def route(self, path: str) -> Route | None:
        """The route configured for ``path``, else one serving the file at ``path`` under ``root``, else None."""
        with self._lock:
            route = self.routes.get(path)
        if route is not None or self.root is None:
            return route
        root = self.root.resolve()
        file = (root / urllib.parse.unquote(urllib.parse.urlsplit(path).path).lstrip("/")).resolve()
        return Route(body=file.read_bytes()) if file.is_relative_to(root) and file.is_file() else None

    # -- inspection ------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return sum(r.path == path for r in self.requests)

    def requests_for(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> FileServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FileServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up (timeouts, resets) are what these tests provoke; keep the output clean


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        owner = self.server.owner
        with owner._lock:
            owner.requests.append(Request(self.path, dict(self.headers.items())))
        route = owner.route(self.path)
        if route is None:
            self.send_error(404)
            return
        with owner._lock:
            step = route.steps.pop(0) if route.steps else None
        mode, error = route.mode, route.status
        if isinstance(step, int):
            error = step
        elif step is not None:
            mode = step
        if error != 200:
            self.send_error(error)
            return
        if mode == "stall_headers":
            owner._stopping.wait(route.stall_s)
            return

        body, status, extra = route.body, 200, {}
        start = _range_start(self.headers.get("Range")) if route.ranges else None
        if start is not None:  # faults then strike the requested part: a resumed download can fail again
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, extra = 206, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            body = body[start:]

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if mode != "unsized_short":
            self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

        if mode == "ok":
            pieces = 10 if route.delay_s else 1
            step = -(-len(body) // pieces) or 1
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                if route.delay_s:
                    owner._stopping.wait(route.delay_s / pieces)
            return

        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if mode == "stall_body":
            owner._stopping.wait(route.stall_s)
        elif mode == "drop":
            # SO_LINGER with a zero timeout turns close() into a TCP reset: a dropped connection.
            # Close here: socketserver would otherwise send a clean FIN (shutdown) before the reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the socket's fd stays open while a makefile() object refers to it
            self.connection.close()
        self.close_connection = True


def _range_start(header: str | None) -> int | None:
    """The N of ``bytes=N-`` (the only form our client sends), else None."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    value = header[len("bytes=") : -1]
    return int(value) if value.isdigit() else None
