"""Ending an upstream connection in the middle of an exchange, at once.

A connection the gateway gives up on before its answer is over (the client left, a timeout, a
size limit) is reset, not closed: a close waits for what is still queued for the upstream (a
request body an upstream that answered first never reads) before its FIN, so the upstream would
see the connection open, and go on working, until then. A zero linger resets it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s
_GRACEFUL = struct.pack("ii", 0, 0)  # SO_LINGER off: the system's default close


def _linger(transport: asyncio.Transport, value: bytes) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Already gone (uvloop's stand-in socket raises ValueError then): nothing left to set.
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, value)


def reset(transport: asyncio.Transport) -> None:
    """Drop ``transport``'s connection now, whatever is still queued for the peer."""
    _linger(transport, _RESET)
    transport.abort()


def drop(resp: aiohttp.ClientResponse) -> None:
    """End an aiohttp response: a connection still held (its answer not read to the end, its
    request's body perhaps still being sent) is reset; one already released is left alone."""
    transport = transport_of(resp)
    if transport is not None:
        reset(transport)
    resp.close()


def transport_of(resp: aiohttp.ClientResponse) -> asyncio.Transport | None:
    """The connection ``resp`` still holds, if any."""
    connection = resp.connection
    return connection.transport if connection is not None else None


def answered_upload(transport: asyncio.Transport | None) -> None:
    """An upload's connection, whose answer has begun, set to be reset when it closes: aiohttp
    closes it itself, gracefully, when the answer ends before the upload was all sent (an early
    413), and that close would wait for the queued rest of the upload."""
    if transport is not None:
        _linger(transport, _RESET)


def end_upload(resp: aiohttp.ClientResponse, transport: asyncio.Transport | None, sent: bool) -> None:
    """End the exchange of :func:`answered_upload`. A connection whose upload was not all sent
    is reset, even one aiohttp already began to close: its graceful close (the sending of the
    upload cancelled once the answer ended) waits for the queued rest, which an upstream that
    answered first never reads, so the socket, and its zero linger, would never be closed. One
    that went back to the pool (the upload all sent, the answer read) is closed as any other,
    later."""
    drop(resp)
    if transport is None:
        return
    if not sent:
        reset(transport)
    elif not transport.is_closing():
        _linger(transport, _GRACEFUL)
