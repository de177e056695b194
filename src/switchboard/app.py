"""create_app(settings): the ASGI application, its routes and its lifespan.

The router is a dict lookup on (method, path): the hot path pays no regex or middleware stack.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from switchboard.config.schema import Settings
from switchboard.errors import GatewayError
from switchboard.gateway import Gateway
from switchboard.http import admin, anthropic_api, openai_api
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, header_dict, send_bytes
from switchboard.http.endpoint import PipelineEndpoint
from switchboard.http.errors import MethodNotAllowed, unknown_url

log = logging.getLogger("switchboard")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SwitchboardApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = Gateway(settings)
        limit = settings.server.max_body_bytes
        chain = self.gateway.chain
        endpoints: dict[str, ASGIApp] = {
            "/chat/completions": PipelineEndpoint(openai_api.CHAT, chain, limit),
            "/embeddings": PipelineEndpoint(openai_api.EMBEDDINGS, chain, limit),
            "/completions": PipelineEndpoint(openai_api.COMPLETIONS, chain, limit),
        }
        self.routes: dict[tuple[str, str], ASGIApp] = {}
        for path, endpoint in endpoints.items():
            # Clients configured with or without the /v1 prefix both work.
            self.routes[("POST", "/v1" + path)] = endpoint
            self.routes[("POST", path)] = endpoint
        self.routes[("POST", "/v1/messages")] = PipelineEndpoint(anthropic_api.MESSAGES, chain, limit)
        self.routes[("POST", "/v1/messages/count_tokens")] = anthropic_api.CountTokensEndpoint(
            self.gateway, limit
        )
        self.routes[("GET", "/admin/models")] = admin.CatalogEndpoint(self.gateway)
        for path in ("/v1/models", "/models"):
            self.routes[("GET", path)] = self.models
        self.routes[("GET", "/health/live")] = self.live
        self.routes[("GET", "/health/ready")] = self.ready
        self._paths = {path for _, path in self.routes}
        self._models_body = self._models_list()
        self._mock: ASGIApp | None = None
        if settings.builtin_mock:
            from switchboard.mock.app import create_mock_app

            self._mock = create_mock_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            handler = self.routes.get((scope["method"], path))
            if handler is not None:
                await handler(scope, receive, send)
            elif self._mock is not None and path.startswith("/mock/"):
                await self._mock({**scope, "path": path[5:], "root_path": "/mock"}, receive, send)
            elif path.startswith(("/v1/models/", "/models/")) and scope["method"] == "GET":
                await self.model(scope, receive, send)
            else:
                await self.not_routed(scope, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything built so far lives as long as the process: keep it out of the cyclic
                # garbage collector's scans, and collect the young generation less often (requests
                # allocate many short-lived containers, almost none in cycles). Measured in bench/.
                gc.freeze()
                gc.set_threshold(20_000, 20, 20)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- small endpoints -------------------------------------------------------------------

    def _models_list(self) -> list[dict[str, object]]:
        created = int(time.time())
        # Catalog fields (context_window, capabilities, pricing...) are extras the OpenAI SDK keeps.
        return [
            {"id": m.name, "object": "model", "created": created, "owned_by": m.provider,
             **self.gateway.catalog.public_fields(m.name)}
            for m in self.settings.models
        ]

    async def _json(self, send: Send, status: int, body: object) -> None:
        await send_bytes(send, status, orjson.dumps(body), [], JSON_CT)

    async def _error(self, send: Send, err: GatewayError) -> None:
        await send_bytes(send, err.status, orjson.dumps(err.to_openai()), [], JSON_CT)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.gateway.authenticator.authenticate(header_dict(scope))
        except GatewayError as err:
            await self._error(send, err)
            return
        await self._json(send, 200, {"object": "list", "data": self._models_body})

    async def model(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.gateway.authenticator.authenticate(header_dict(scope))
        except GatewayError as err:
            await self._error(send, err)
            return
        name = scope["path"].split("/models/", 1)[1]
        for entry in self._models_body:
            if entry["id"] == name:
                await self._json(send, 200, entry)
                return
        await self._error(send, unknown_url("GET", scope["path"]))

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(send, 200, {"status": "ok"})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gateway.ready:
            await self._json(send, 200, {"status": "ready", "models": len(self.settings.models)})
        else:
            await self._json(send, 503, {"status": "starting"})

    async def not_routed(self, scope: Scope, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path in self._paths:
            await self._error(send, MethodNotAllowed(f"method {method} is not allowed on {path}"))
        else:
            await self._error(send, unknown_url(method, path))


def create_app(settings: Settings) -> SwitchboardApp:
    return SwitchboardApp(settings)
