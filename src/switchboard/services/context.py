"""The request context of a call to a REST service."""

from __future__ import annotations

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
    # True while the proxy is still reading the client's body (nobody else may read receive).
    body_open: bool = False
    # The request body as forwarded, kept for the request log when a policy asks (capture.py).
    request_capture: Collected | None = None
