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


def reset(transport: asyncio.Transport) -> None:
    """Drop ``transport``'s connection now, whatever is still queued for the peer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone: nothing left to reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    transport.abort()


def drop(resp: aiohttp.ClientResponse) -> None:
    """End an aiohttp response: a connection still held (its answer not read to the end, its
    request's body perhaps still being sent) is reset; one already released is left alone."""
    connection = resp.connection
    transport = connection.transport if connection is not None else None
    if transport is not None:
        reset(transport)
    resp.close()
