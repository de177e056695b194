"""The Anthropic Messages inbound API (placeholder until it lands)."""

from __future__ import annotations

from switchboard.gateway import Gateway
from switchboard.http import openai_api
from switchboard.http.asgi import Receive, Scope, Send
from switchboard.http.errors import unknown_url
from switchboard.http.inbound import InboundAPI

MESSAGES: InboundAPI = openai_api.CHAT


class CountTokensEndpoint:
    def __init__(self, gateway: Gateway, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise unknown_url("POST", scope["path"])
