"""An upstream that answers at once and then holds its answer open, on raw sockets: for the
tests of relayed answers (speech, a file's content, a streamed transcription, a service's body)
whose client leaves part-way.

Every request but a file upload is answered before its body is read, and the body is never read
(so a large one backs up in the gateway's socket and write buffer, as with a server that answers
first): its status, the head of a chunked body and a first piece (``ready`` in an event for a
streamed transcription, raw bytes otherwise), then nothing more until the gateway ends the
connection, for at most a minute. The server never reads the connection, so it cannot learn of
the end from a read: the socket's TCP state is looked at instead (Linux), as the service of the
``/services`` tests does. Each path whose connection ended is appended to ``ended``, in the order
they ended.

A path under ``/early413/`` (a file upload's too) is answered with a whole 413 error before its
body is read, and then held as above.

Elsewhere, ``POST .../files`` (an upload) is read to its end and answered with a file object, so that a
file's content can then be asked for through the gateway.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

from tests.threaded_server import ThreadedServer

HOLD_SECONDS = 60.0
FILE_ID = "file-held1"
READY = b"ready\n"
_TOO_LARGE = b'{"error": {"message": "request too large", "type": "invalid_request_error"}}'
_EVENT = b'data: {"type": "transcript.text.delta", "delta": "ready"}\n\n'


class HeldUpstream(ThreadedServer):
    def __init__(self) -> None:
        self.ended: list[str] = []  # appended in the server's thread
        self.changed = threading.Condition()
        # A small receive buffer: a body not read backs up in the gateway, as over a real network
        # (where more is in flight than loopback's large buffers would take in).
        super().__init__(self._serve, name="held upstream", receive_buffer=4096)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ended(self, path: str, timeout: float) -> bool:
        """Whether the connection of a request for ``path`` ended within ``timeout`` seconds."""
        with self.changed:
            return self.changed.wait_for(lambda: path in self.ended, timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            method, path = head.split(" ", 2)[:2]
            if path.startswith("/early413/"):  # refused whole before a byte of the body is read
                await reader.readexactly(1)  # the upload started: its rest backs up in the gateway
                writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%b" % (len(_TOO_LARGE), _TOO_LARGE))
                await self._hold(writer.get_extra_info("socket"))
                self._end(path)
                return
            if method == "POST" and path.endswith("/files"):
                await _upload(head, reader, writer)
                return
            event = "/audio/transcriptions" in path
            first = _EVENT if event else READY
            kind = b"text/event-stream" if event else b"application/octet-stream"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %b\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"%x\r\n%b\r\n" % (kind, len(first), first))
            await self._hold(writer.get_extra_info("socket"))
            self._end(path)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    async def _hold(self, sock: Any) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + HOLD_SECONDS
        while _established(sock) and loop.time() < end:
            await asyncio.sleep(0.02)

    def _end(self, path: str) -> None:
        with self.changed:
            self.ended.append(path)
            self.changed.notify_all()


async def _upload(head: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads an upload's body (chunked, as the gateway streams it, or of a declared length) and
    answers a file object."""
    fields = (line.partition(":") for line in head.split("\r\n")[1:])
    lines = {name.strip().lower(): value.strip() for name, _, value in fields}
    if "content-length" in lines:
        await reader.readexactly(int(lines["content-length"]))
    else:
        await reader.readuntil(b"\r\n0\r\n\r\n")
    body = json.dumps({"id": FILE_ID, "object": "file", "bytes": 3, "created_at": 1, "filename": "a.jsonl",
                       "purpose": "batch", "status": "processed"}).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%b" % (len(body), body))
    await writer.drain()


def _established(sock: Any) -> bool:
    """The connection is still open both ways: TCP_INFO's first byte, the state, is ESTABLISHED
    (a peer's close makes it CLOSE_WAIT, a reset CLOSE)."""
    try:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 1)
    except OSError:
        return False
