"""create_app(settings): the ASGI application, its routes and its lifespan.

The router is a dict lookup on (method, path): the hot path pays no regex or middleware stack.
Every API endpoint is an :class:`Endpoint` running its operation's stage chain, so what a stage
does (authentication today; access rules, limits and logging next) applies to all of them.
Only the health probes, the admin API's docs page and OpenAPI document (public) and the
built-in mock answer outside the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI

from switchboard.access.cache import KeyCache
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.config.schema import Settings
from switchboard.context import InboundAPI
from switchboard.errors import GatewayError
from switchboard.gateway import MODEL_CALLS, Gateway
from switchboard.http import admin_docs, media, openai_api
from switchboard.http.admin import AdminBridge, AdminServices, create_admin_app
from switchboard.http.admin_docs import AdminDocs
from switchboard.http.anthropic import COUNT_TOKENS, MESSAGES
from switchboard.http.anthropic import models as anthropic_models
from switchboard.http.anthropic.errors import error_body as anthropic_error_body
from switchboard.http.anthropic.errors import from_anthropic_client
from switchboard.http.apis import PREFIX as APIS_PREFIX
from switchboard.http.apis import ApiDocs, ApiInbound, ApiRoutes
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, header_dict, send_bytes
from switchboard.http.cors import Cors
from switchboard.http.disconnect import ClientGone
from switchboard.http.endpoint import Endpoint, count_refused, request_id, request_id_headers
from switchboard.http.errors import MethodNotAllowed, unknown_url, websocket_refused
from switchboard.http.files import FilesEndpoint, is_files_path
from switchboard.http.gemini import GEMINI_ONLY_PREFIX, GeminiRoutes, is_gemini
from switchboard.http.gemini import METHODS as GEMINI_METHODS
from switchboard.http.mcp import MCP, McpEndpoint
from switchboard.http.mcp_oauth import PREFIX as MCP_OAUTH_PREFIX
from switchboard.http.mcp_oauth import McpOAuthRoutes
from switchboard.http.media.multipart import FormLimits
from switchboard.http.responses import PREFIX as RESPONSES_PREFIX
from switchboard.http.responses import STORED, ResponsesAPI, ResponsesInputTokens
from switchboard.http.services import ServicesEndpoint, is_services_path
from switchboard.http.state import ServerState
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.media import MediaTerminal
from switchboard.stores import Stores
from switchboard.stores.checks import DOWN

log = logging.getLogger("switchboard")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Clients configured with or without the /v1 prefix both work for these.
_OPENAI_PATHS = {
    "/chat/completions": openai_api.CHAT,
    "/embeddings": openai_api.EMBEDDINGS,
    "/completions": openai_api.COMPLETIONS,
}


class SwitchboardApp:
    def __init__(self, settings: Settings, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.gateway = gateway or Gateway(settings)
        # Called once the gateway has closed at shutdown; a server process sets it (server.py).
        self.on_closed: Callable[[], None] | None = None
        # With metrics on, what the edge refuses before a chain runs is counted too.
        metrics = self.gateway.metrics
        self.state = ServerState(metrics.observe_unserved if metrics is not None else None)
        self.state.authenticate = self.gateway.authenticator.authenticate
        # server.cors: None while no origin is allowed, so a request pays one attribute test.
        self._cors = Cors(settings.server.cors, self.state) if settings.server.cors.enabled else None
        self.routes: dict[tuple[str, str], ASGIApp] = {}
        for path, inbound in _OPENAI_PATHS.items():
            terminal = self.gateway.model_terminal(inbound.operation)
            endpoint = self._endpoint(inbound, terminal, reads_body=True)
            self.routes[("POST", "/v1" + path)] = endpoint
            self.routes[("POST", path)] = endpoint
        self.routes[("POST", "/v1/messages")] = self._endpoint(MESSAGES, self.gateway.invoke, reads_body=True)
        self.routes[("POST", "/v1/messages/count_tokens")] = self._endpoint(
            COUNT_TOKENS, self.gateway.count_tokens, reads_body=True
        )
        # The Responses API (http/responses/): translated to every provider, stored responses.
        s = settings.server
        chain = self.gateway.responses_chain(self.gateway.responses.invoke)
        create = Endpoint(
            ResponsesAPI(self.gateway.responses), chain, self.state,
            max_body_bytes=s.max_body_bytes, deadline_seconds=s.request_timeout_seconds, timed=True,
        )
        self.routes[("POST", "/v1/responses")] = self.routes[("POST", "/responses")] = create
        # Its input tokens: counted as /v1/messages/count_tokens counts (not billed, no limits).
        counted = self.gateway.responses.count(self.gateway.count_tokens)
        count = Endpoint(
            ResponsesInputTokens(self.gateway.responses),
            self.gateway.responses_chain(counted, "count_tokens"), self.state,
            max_body_bytes=s.max_body_bytes, deadline_seconds=s.request_timeout_seconds,
        )
        for path in ("/v1/responses/input_tokens", "/responses/input_tokens"):
            self.routes[("POST", path)] = count
        self._stored_response = self._endpoint(STORED, self.gateway.responses.retrieve, reads_body=False)
        self._media_routes()
        # The same paths serve Anthropic's Models API to a request with `anthropic-version`.
        claude = anthropic_models.AnthropicDirectory(self.gateway.models.list, self.gateway.models.get)
        models = anthropic_models.ByDialect(
            self._endpoint(openai_api.MODELS, self.gateway.models.list, reads_body=False),
            self._endpoint(anthropic_models.MODELS, claude.list, reads_body=False))
        for path in ("/v1/models", "/models"):
            self.routes[("GET", path)] = models
        self._model = anthropic_models.ByDialect(
            self._endpoint(openai_api.MODEL, self.gateway.models.get, reads_body=False),
            self._endpoint(anthropic_models.MODEL, claude.get, reads_body=False))
        # Gemini API: POST /v1beta/models/{model}:{method} (and /v1/..., /v1alpha/...), routed by prefix.
        self._gemini = GeminiRoutes({
            method: self._endpoint(inbound, self.gateway.count_tokens if inbound.operation == "count_tokens"
                                   else self.gateway.model_terminal(inbound.operation), reads_body=True)
            for method, inbound in GEMINI_METHODS.items()
        }, self.state)
        admin_app = self._admin_app()
        # The admin API's own body bound: its bodies are parsed and validated whole (pydantic),
        # which for a large pathological one is seconds of event loop, every request held with it.
        self._admin = self._endpoint(openai_api.ADMIN, AdminBridge(admin_app), reads_body=True,
                                     max_body_bytes=min(s.max_body_bytes, s.max_admin_body_bytes))
        # The admin API's interactive docs and OpenAPI document: public, for a browser
        # (http/admin_docs.py); the calls made from them go through the chain above. Turned
        # off, the page is not served and the document is an admin API route needing a key.
        self._docs: AdminDocs | None = None
        if settings.server.public_docs:
            self._docs = AdminDocs(admin_app.openapi)
            self.routes[("GET", admin_docs.PAGE)] = self._docs.page
            self.routes[("GET", admin_docs.SPEC)] = self._docs.spec
        # Files and batches: their own edge (uploads are streamed), through the same chains.
        self._files = FilesEndpoint(self.gateway.chain("files", self.gateway.files),
                                    self.gateway.chain("batches", self.gateway.files), self.state,
                                    deadline_seconds=settings.server.request_timeout_seconds,
                                    message_batches_chain=self.gateway.chain("batches",
                                                                             self.gateway.message_batches),
                                    max_message_batch_bytes=settings.files.max_message_batch_bytes)
        # Prompts published as REST APIs (http/apis/): POST /apis/{name}[/v{N}], their OpenAPI.
        calls = Endpoint(ApiInbound(self.gateway.api_calls), self.gateway.api_chain(self.gateway.invoke),
                         self.state, max_body_bytes=min(s.max_body_bytes, settings.apis.max_body_bytes),
                         deadline_seconds=s.request_timeout_seconds, timed=True)
        docs = self._endpoint(openai_api.OpenAIJson("api_docs"), ApiDocs(lambda: self.gateway.api_documents),
                              reads_body=False)
        self._apis = ApiRoutes(calls, docs)
        # Per-user OAuth for MCP servers (http/mcp_oauth.py): authorize, callback, forget.
        self._mcp_oauth = McpOAuthRoutes(settings, lambda t: self.gateway.chain("mcp_oauth", t), self.state,
                                         lambda: self.gateway.mcp_auth)
        # The MCP gateway (http/mcp/): POST JSON-RPC; GET and DELETE answer 405, but for those
        # presenting an Mcp-Session-Id (its own edge, no body): 404 for a session the gateway does
        # not know, DELETE ends a live one, GET of one is 405 (no server stream).
        mcp_chain = self.gateway.mcp_chain()
        self.routes[("POST", "/mcp")] = McpEndpoint(
            MCP, mcp_chain, self.state, max_body_bytes=settings.server.max_body_bytes,
            deadline_seconds=settings.server.request_timeout_seconds)
        self._mcp_session = McpEndpoint(MCP, mcp_chain, self.state, max_body_bytes=None,
                                        deadline_seconds=settings.server.request_timeout_seconds)
        # Plain REST services (http/services/): streamed both ways, through their own chain.
        self._services = ServicesEndpoint(self.gateway.services_chain(), self.state,
                                          deadline_seconds=settings.server.request_timeout_seconds)
        self.routes[("GET", "/health/live")] = self.live
        self.routes[("GET", "/health/ready")] = self.ready
        if self.gateway.metrics is not None:  # metrics.enabled: false answers 404
            self.routes[("GET", "/metrics")] = self.metrics
        # The methods each path answers, for a 405's Allow header; HEAD is answered wherever GET
        # is (uvicorn sends the head without the body), as uptime checkers use it: here for the
        # exact paths, in __call__ and the files edge for the paths with a parameter.
        self._allowed: dict[str, list[str]] = {}
        for method, path in self.routes:
            self._allowed.setdefault(path, []).append(method)
        # DELETE /mcp is served too (with a session id, on its own edge): a 405 there names it.
        self._allowed["/mcp"].append("DELETE")
        for path, methods in self._allowed.items():
            if "GET" in methods:
                self.routes[("HEAD", path)] = self.routes[("GET", path)]
                methods.append("HEAD")
        self._mock: ASGIApp | None = None
        if settings.builtin_mock:
            from switchboard.mock.app import create_mock_app

            self._mock = create_mock_app()

    def _admin_app(self) -> FastAPI:
        gateway = self.gateway

        def stores() -> Stores:
            assert gateway.stores is not None, "the admin API serves only after start-up"
            return gateway.stores

        def key_cache() -> KeyCache:
            assert gateway.key_cache is not None, "the admin API serves only after start-up"
            return gateway.key_cache

        def subscriptions() -> SubscriptionCache:
            assert gateway.subscriptions is not None, "the admin API serves only after start-up"
            return gateway.subscriptions

        services = AdminServices(
            settings=self.settings,
            catalog=gateway.catalog,
            hashing_key=lambda: gateway.hashing,
            stores=stores,
            key_cache=key_cache,
            subscriptions=subscriptions,
            routing=gateway.routing,
            router=gateway.router,
            prices=gateway.prices,
            limit_cache=lambda: gateway.limit_cache,
            token_revocations=lambda: gateway.token_revocations,
            budgets=lambda: gateway.budgets,
            alerts=lambda: gateway.alerts,
            services=gateway.services,
            mcp=lambda: gateway.mcp_auth,
            egress=gateway.egress,
            catalog_cache=lambda: gateway.catalog_cache,
            reached=gateway.reached,
        )
        return create_admin_app(services)

    def _media_routes(self) -> None:
        """Rerank, moderations, images and audio (http/media), with and without /v1."""
        terminal = MediaTerminal(self.gateway.prices)
        s = self.settings.server
        limits = FormLimits(max_body_bytes=s.max_body_bytes,
                            max_file_bytes=min(25 * 1024 * 1024, s.max_body_bytes))
        common: dict[str, Any] = {"max_body_bytes": s.max_body_bytes,
                                  "deadline_seconds": s.request_timeout_seconds, "timed": True}
        for path, inbound in {**media.JSON_ROUTES, **media.FORM_ROUTES}.items():
            chain = self.gateway.chain(inbound.operation, terminal)
            if path in media.FORM_ROUTES:  # multipart uploads, parsed as they arrive
                endpoint: Endpoint = media.FormEndpoint(inbound, chain, self.state, limits=limits, **common)
            else:  # streamed answers (speech, SSE) relayed as they arrive
                endpoint = media.RelayEndpoint(inbound, chain, self.state, **common)
            if not path.startswith("/v2/"):
                self.routes[("POST", "/v1" + path)] = endpoint
            self.routes[("POST", path)] = endpoint

    def _endpoint(self, inbound: InboundAPI, terminal: Handler, *, reads_body: bool,
                  max_body_bytes: int | None = None) -> Endpoint:
        """``max_body_bytes``: a tighter bound than ``server.max_body_bytes`` (None: that one)."""
        s = self.settings.server
        return Endpoint(
            inbound,
            self.gateway.chain(inbound.operation, terminal),
            self.state,
            max_body_bytes=(max_body_bytes or s.max_body_bytes) if reads_body else None,
            deadline_seconds=s.request_timeout_seconds,
            timed=inbound.operation in MODEL_CALLS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._cors is not None:  # before routing: a preflight is answered before auth
                cors_send = await self._cors.edge(scope, send)
                if cors_send is None:  # a preflight, answered
                    return
                send = cors_send
            path = scope["path"]
            handler = self.routes.get((scope["method"], path))
            if handler is not None:
                await handler(scope, receive, send)
            elif is_files_path(path):
                await self._files(scope, receive, send)
            elif is_services_path(path):
                await self._services(scope, receive, send)
            elif path.startswith("/admin/"):
                await self._admin(scope, receive, send)
            elif (self._docs is not None and path.startswith(admin_docs.ASSETS)
                  and scope["method"] in ("GET", "HEAD")):
                await self._docs.asset(scope, receive, send)
            elif self._mock is not None and path.startswith("/mock/"):
                # A write after its caller left raises ClientGone (http/cycle.py); the mock
                # also watches receive() and may not have stopped first: not its error.
                with contextlib.suppress(ClientGone):
                    await self._mock({**scope, "path": path[5:], "root_path": "/mock"}, receive, send)
            elif is_gemini(scope["method"], path):
                await self._gemini(scope, receive, send)
            # (A path with routes of its own, /v1/responses/input_tokens, names no stored response:
            # another method there is a 405 naming its own.)
            elif path.startswith(RESPONSES_PREFIX) and path not in self._allowed and scope["method"] in (
                    ("POST",) if _is_cancel(path) else ("GET", "DELETE", "HEAD")):
                await self._stored_response(scope, receive, send)
            elif path.startswith(("/v1/models/", "/models/")) and scope["method"] in ("GET", "HEAD"):
                await self._model(scope, receive, send)
            elif path.startswith(APIS_PREFIX) and (api := self._apis.route(scope["method"], path)):
                await api(scope, receive, send)
            elif path == "/mcp" and scope["method"] in ("GET", "DELETE") and _has_session(scope):
                await self._mcp_session(scope, receive, send)
            elif path.startswith(MCP_OAUTH_PREFIX):
                await self._mcp_oauth(scope, receive, send)
            elif path.startswith(GEMINI_ONLY_PREFIX):  # no other API answers there
                await self._gemini.not_served(scope, send)
            else:
                await self.not_routed(scope, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await _refuse_websocket(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            try:
                message = await receive()
            except asyncio.CancelledError:
                # A forced exit (a second Ctrl-C) skips the shutdown event and cancels this task
                # instead: release what the gateway holds and end quietly.
                self.state.restore_signal_handlers()
                await self.gateway.close()
                self._closed()
                return
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.state.install_signal_handlers(self.settings.server.drain_seconds)
                # Everything built so far lives as long as the process: keep it out of the cyclic
                # garbage collector's scans, and collect the young generation less often (requests
                # allocate many short-lived containers, almost none in cycles). Measured in bench/.
                gc.freeze()
                gc.set_threshold(20_000, 20, 20)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.restore_signal_handlers()
                await self.gateway.close()
                self._closed()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _closed(self) -> None:
        if self.on_closed is not None:
            self.on_closed()

    # -- outside the chain: health probes and unrouted requests ------------------------------

    async def _json(self, scope: Scope, send: Send, status: int, body: object,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        rid = request_id({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        extra = [(b"x-request-id", rid.encode()), *(headers or ())]
        await send_bytes(send, status, orjson.dumps(body), extra, JSON_CT)

    async def _error(self, scope: Scope, send: Send, err: GatewayError,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if not from_anthropic_client(scope["path"], scope["headers"]):
            await self._json(scope, send, err.status, err.to_openai(), headers)
            return
        # An Anthropic SDK reads only its own error shape, and the request id from `request-id`.
        rid = request_id(header_dict(scope))
        await send_bytes(send, err.status, orjson.dumps(anthropic_error_body(err)),
                         [*request_id_headers(rid, "anthropic"), *(headers or ())], JSON_CT)

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(scope, send, 200, {"status": "ok"})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.state.draining:
            await self._json(scope, send, 503, {"status": "draining"})
        elif self.gateway.ready and self.gateway.stores is not None:
            models = len(self.gateway.routing.current.routes)
            checks = await self.gateway.stores.checks.results()  # cached ~1 s, bounded
            strict = self.settings.server.ready_requires_stores or _strict(scope["query_string"])
            if strict and DOWN in checks.values():
                await self._json(scope, send, 503, {"status": "unavailable", "models": models,
                                                    "checks": checks})
            else:
                await self._json(scope, send, 200, {"status": "ready", "models": models, "checks": checks})
        else:
            await self._json(scope, send, 503, {"status": "starting"})

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Prometheus metrics, for the master key or metrics.key (observability/metrics.py)."""
        metrics = self.gateway.metrics
        assert metrics is not None, "routed only when metrics are on"
        rid = request_id({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        await metrics.respond(scope["headers"], send, [(b"x-request-id", rid.encode())])

    async def not_routed(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        allowed = self._allowed.get(path) or _allowed_by_prefix(path, docs=self._docs is not None)
        if allowed is not None:
            err: GatewayError = MethodNotAllowed(f"method {method} is not allowed on {path}")
            await self._error(scope, send, err, [(b"allow", ", ".join(sorted(allowed)).encode())])
        else:
            err = unknown_url(method, path)
            await self._error(scope, send, err)
        count_refused(self.state, scope, started, err)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """No endpoint speaks WebSocket (a service behind ``/services/`` included): an upgrade is
    answered 400 ``websocket_not_supported`` as plain HTTP where the server can send one (the
    ASGI ``websocket.http.response`` extension), else refused by closing before the handshake
    (uvicorn answers 403). Returning without either made uvicorn answer a bare 500."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = orjson.dumps(websocket_refused(scope["path"]).to_openai())
    await send({"type": "websocket.http.response.start", "status": 400,
                "headers": [JSON_CT, (b"content-length", b"%d" % len(body))]})
    await send({"type": "websocket.http.response.body", "body": body})


def _has_session(scope: Scope) -> bool:
    # An empty Mcp-Session-Id is no session (http/mcp/server.py): GET and DELETE answer 405 as without.
    return any(name == b"mcp-session-id" and value for name, value in scope["headers"])


def _strict(query: bytes) -> bool:
    """``?strict=1`` (or ``true``) on /health/ready: a store down makes it 503. Other
    parameters are ignored, as probes may add their own."""
    return bool(query) and any(part in (b"strict=1", b"strict=true") for part in query.split(b"&"))


def _allowed_by_prefix(path: str, *, docs: bool) -> list[str] | None:
    """The methods of a path with a parameter (a stored response, a model), for a 405."""
    if path.startswith(RESPONSES_PREFIX):
        parts = path.removeprefix("/v1").removeprefix("/responses/").split("/")
        if len(parts) == 1 and parts[0]:
            return ["DELETE", "GET", "HEAD"]
        if len(parts) == 2 and parts[0] and parts[1] == "input_items":
            return ["GET", "HEAD"]
        if len(parts) == 2 and parts[0] and parts[1] == "cancel":
            return ["POST"]
    elif path.startswith(("/v1/models/", "/models/")) or (docs and path.startswith(admin_docs.ASSETS)):
        return ["GET", "HEAD"]
    return None


def _is_cancel(path: str) -> bool:
    """``/v1/responses/{id}/cancel`` (POST only), a path of the stored responses' endpoint."""
    return path.endswith("/cancel") and path.count("/") == 3 + path.startswith("/v1/")


def create_app(settings: Settings) -> SwitchboardApp:
    return SwitchboardApp(settings)
