"""The request context of a call to a REST service."""

from __future__ import annotations

import asyncio
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
    # True once the proxy has read the client's body to its end: until then it alone reads
    # ``receive`` (and sees a disconnect itself), then the edge's disconnect watcher may.
    body_read: bool = False
    body_waiter: asyncio.Future[None] | None = None
    # The request body as forwarded, kept for the request log when a policy asks (capture.py).
    request_capture: Collected | None = None

    def body_done(self) -> None:
        """The client's body has been read to its end (services/proxy.py)."""
        self.body_read = True
        waiter = self.body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive_after_body(self) -> MutableMapping[str, Any]:
        """``receive`` for the edge's disconnect watcher: it waits until the proxy has read the
        body (two readers would split the body's parts between them)."""
        if not self.body_read:
            waiter = self.body_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.body_waiter = None
        assert self.receive is not None, "set by the edge"
        return await self.receive()
