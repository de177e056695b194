"""The request context of a call to a REST service."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from switchboard.context import RequestContext
from switchboard.pipeline.capture import Collected

if TYPE_CHECKING:
    from switchboard.services.table import Service

# The ASGI receive callable (as http/asgi.py names it; the edge is above this package).
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


@dataclass(slots=True)
class ServiceContext(RequestContext):
    """``/services/{name}/{rest}``: the service's name, the rest of the path as the caller sent
    it (still percent-encoded), the raw query, and the body stream (read by the proxy as it
    forwards). The proxy fills in the upstream's status and headers."""

    service_name: str = ""
    rest: str = ""
    raw_query: bytes = b""
    # The caller's headers as sent, repeats included (``headers`` keeps one value a name).
    raw_headers: list[tuple[bytes, bytes]] | None = None
    receive: Receive | None = None
    service: Service | None = None
    reply_status: int = 0
    reply_headers: list[tuple[bytes, bytes]] | None = None
    # True once the proxy has read the client's body to its end, or once the service's status is
    # in: until then the proxy alone reads ``receive`` (and sees a disconnect itself), then the
    # edge's disconnect watcher may too (through ``inbox`` while the body is still open).
    body_read: bool = False
    answered: bool = False
    body_waiter: asyncio.Future[None] | None = None
    # A body streamed in several parts is read through this (services/proxy.py).
    inbox: Inbox | None = None
    # The request body as forwarded, kept for the request log when a policy asks (capture.py).
    request_capture: Collected | None = None

    def body_done(self) -> None:
        """The client's body has been read to its end (services/proxy.py)."""
        self.body_read = True
        self._watchable()

    def status_received(self) -> None:
        """The service's status is in (services/proxy.py). A service that answers first may never
        read the rest of the body, nor then the proxy: the watcher starts now all the same, or a
        client leaving a long answer would be noticed only at the next write."""
        self.answered = True
        self._watchable()

    def _watchable(self) -> None:
        waiter = self.body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive_after_body(self) -> MutableMapping[str, Any]:
        """``receive`` for the edge's disconnect watcher: it waits until the proxy has read the
        body or the service has answered (two readers would split the body's parts between them:
        while the body is open, the parts it reads are kept for the proxy, ``Inbox``)."""
        if not (self.body_read or self.answered):
            waiter = self.body_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.body_waiter = None
        if self.inbox is not None:
            return await self.inbox.for_watcher()
        assert self.receive is not None, "set by the edge"
        return await self.receive()


class Inbox:
    """The client's ``receive`` for a body in several parts, read by the proxy and (once the
    service has answered) by the edge's disconnect watcher: one reads at a time, and a body part
    the watcher reads is kept for the proxy, in order. At most ``limit`` bytes are kept: the part
    that crosses it has the proxy refuse the body (413), so the parts after it are dropped."""

    __slots__ = ("kept", "limit", "lock", "parts", "receive")

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.lock = asyncio.Lock()
        self.parts: deque[MutableMapping[str, Any]] = deque()
        self.kept = 0

    async def for_body(self) -> MutableMapping[str, Any]:
        async with self.lock:
            if self.parts:
                return self.parts.popleft()
            return await self.receive()

    async def for_watcher(self) -> MutableMapping[str, Any]:
        async with self.lock:
            message = await self.receive()
        if message["type"] == "http.request" and self.kept <= self.limit:
            self.kept += len(message.get("body", b""))
            self.parts.append(message)
        return message
