"""The listener of ``metrics.port``: ``GET /metrics`` without a key, for a scraper on a private
interface (``metrics.host``).

Deliberately small and bounded: one request per connection (answered, then closed), the request
head read within 8 KiB and 5 seconds, at most 16 connections at a time (more are closed at
once), any other path 404 and any other method 405. Several workers bind the same port
(SO_REUSEPORT); whichever answers reads every worker's values (multiprocess mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("switchboard.metrics")

HEAD_LIMIT = 8 * 1024
HEAD_SECONDS = 5.0
MAX_CONNECTIONS = 16
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


class MetricsServer:
    def __init__(self, host: str, port: int, exposition: Callable[[], bytes], content_type: bytes,
                 *, reuse_port: bool = False, before: Callable[[], Awaitable[object]] | None = None) -> None:
        self._host = host
        self._port = port
        self._exposition = exposition
        self._before = before  # awaited before the exposition is read (bounded by its owner)
        self._content_type = content_type
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._open = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=HEAD_LIMIT, reuse_port=self._reuse_port or None)
        log.info("metrics on http://%s:%d/metrics", self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        try:
            async with asyncio.timeout(HEAD_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type = await self._answer(head)
            allow = b"allow: GET, HEAD\r\n" if status == 405 else b""  # RFC 9110: a 405 names them
            writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s"
                         b"cache-control: no-store\r\nconnection: close\r\n\r\n"
                         % (status, _REASONS[status], content_type, len(body), allow))
            if not head.startswith(b"HEAD "):
                writer.write(body)
            async with asyncio.timeout(HEAD_SECONDS):
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a client that sent too much, too little or too slowly: just close
        except Exception:
            log.exception("metrics listener: request failed")
        finally:
            self._open -= 1
            writer.close()

    async def _answer(self, head: bytes) -> tuple[int, bytes, bytes]:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, b"bad request\n", b"text/plain"
        method, target = parts[0], parts[1]
        if target.split(b"?", 1)[0] != b"/metrics":
            return 404, b"not found: this port serves /metrics only\n", b"text/plain"
        if method not in (b"GET", b"HEAD"):
            return 405, b"method not allowed\n", b"text/plain"
        if self._before is not None:
            await self._before()
        return 200, self._exposition(), self._content_type
