"""Coalesced writes on a client connection.

uvicorn writes a response's status line and headers, each body part and the chunked
terminator as separate socket writes; on a loopback or virtualised network each write is a
system call that costs more than the Python that produced it. The corked transport collects
what one pass of the event loop writes and sends it in one call at the end of the pass: a
non-stream answer leaves in one write instead of two, a stream's parts that are ready together
in one instead of several. Nothing waits longer than the current pass, and a pass that writes a
lot is sent as soon as it passes FLUSH_BYTES, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

FLUSH_BYTES = 64 * 1024
# Pieces that together reach this size are handed to the transport as they are (writelines)
# rather than joined: joining copies them, and writing the copy costs as much again (about
# 150 ms on the loop for 30 MiB; apart, a few ms). Smaller ones are joined: one system call.
JOIN_MAX_BYTES = 256 * 1024

# Run before any corked bytes leave: the usage spool writes what this pass spooled
# (spend/ledger.py), so an answer a client has seen is always accounted for.
_BEFORE_SEND: list[Callable[[], None]] = []


def before_send(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` before every send on a corked connection; returns its remover."""
    _BEFORE_SEND.append(hook)
    return lambda: _BEFORE_SEND.remove(hook) if hook in _BEFORE_SEND else None


class CorkedTransport:
    """Stands in for the connection's transport; every write on the connection goes through it,
    so order is kept."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        for hook in _BEFORE_SEND:
            hook()
        size = self._size
        self._pending = []
        self._size = 0
        if self.transport.is_closing():
            return
        if len(pending) == 1:
            self.transport.write(pending[0])
        elif size < JOIN_MAX_BYTES:
            self.transport.write(b"".join(pending))
        else:
            self.transport.writelines(pending)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = []
        self._size = 0
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._size + self.transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    # The rest of asyncio's transport interface, passed on unchanged. Written out rather than
    # reached through ``__getattr__``: a class with ``__getattr__`` has every attribute read on
    # it (its own slots and methods included, some 27 a request) go through a slower lookup
    # that the interpreter cannot specialise.

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.transport.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.transport.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()
