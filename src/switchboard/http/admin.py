"""Admin endpoints (placeholder until the model catalog lands)."""

from __future__ import annotations

from switchboard.gateway import Gateway
from switchboard.http.asgi import Receive, Scope, Send
from switchboard.http.errors import unknown_url


class CatalogEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise unknown_url("GET", scope["path"])
