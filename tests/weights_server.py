"""A real HTTP server on 127.0.0.1 that serves weights files the way mirrors do, and misbehaves
on request: redirects, errors, bodies cut short, answers held back, sizes that cannot fit.

`routes` maps a URL path to a `Route`; every request's path is logged in `requests`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What a path answers: `body` with `status`, or a redirect to `location`; `cut` sends only
    that many bytes of a body announced whole; `claimed_length` announces another size;
    `hold` makes the answer wait until the event is set."""

    body: bytes = b""
    status: int = 200
    location: str | None = None
    cut: int | None = None
    claimed_length: int | None = None
    hold: threading.Event | None = None


@dataclass
class FileServer:
    host: str
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str = "", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def count(self, path: str) -> int:
        return self.requests.count(path)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(self.path)
            route = server.routes.get(self.path, Route(b"not found", status=404))
            if route.hold is not None:
                route.hold.wait(timeout=120)
            if route.location is not None:
                self.send_response(302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(route.status)
            length = route.claimed_length if route.claimed_length is not None else len(route.body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            body = route.body if route.cut is None else route.body[: route.cut]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)  # unless the client gave up (a size it cannot store)
            if route.cut is not None or route.claimed_length is not None:
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    return Handler


@contextmanager
def serving() -> Iterator[FileServer]:
    """A `FileServer` on a free port of 127.0.0.1 for the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = FileServer("127.0.0.1", httpd.server_address[1])
    httpd.RequestHandlerClass = _handler(server)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        for route in server.routes.values():
            if route.hold is not None:
                route.hold.set()
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def silent_listener() -> Iterator[str]:
    """The base URL of a socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nothing ever reads or replies
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
