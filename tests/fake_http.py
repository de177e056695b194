"""A test's own small HTTP server (a fake upstream, a proxy's error pages), served from a thread:
for wire details the shared mock upstream does not produce."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as upstreams are), without a log line per request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """The server's root URL (``http://127.0.0.1:<port>``) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
