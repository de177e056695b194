"""Per-user OAuth for MCP servers, through the gateway (docs/mcp.md, "Credentials and OAuth"):

- ``GET /mcp/oauth/{server}/authorize``: authenticated by a Switchboard key or JWT (through the
  chain), or by the short-lived ``ticket`` of an "authorization required" link (a browser holds no
  key); answers 302 to the server's authorization server (PKCE S256, state, resource).
- ``GET /mcp/oauth/callback``: where the authorization server sends the browser back; exchanges
  the code and stores the tokens for the user who started the flow.
- ``DELETE /mcp/oauth/{server}``: forget (and revoke where offered) the caller's tokens.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from switchboard.config.schema import Settings
from switchboard.context import Principal, RawReply, RequestContext, Result
from switchboard.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, send_bytes
from switchboard.http.endpoint import Endpoint, request_id
from switchboard.http.errors import MethodNotAllowed
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.state import ServerState
from switchboard.mcp.auth import McpAuth
from switchboard.mcp.credentials import identity
from switchboard.mcp.oauth import OAuthClient
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.mcp")

PREFIX = "/mcp/oauth/"
CALLBACK = "/mcp/oauth/callback"
INBOUND = OpenAIJson("mcp_oauth")
_ROUTE = re.compile(r"^/mcp/oauth/([A-Za-z0-9][A-Za-z0-9_-]{0,63})(/authorize)?$")
_HTML = (b"content-type", b"text/html; charset=utf-8")
_MAX_QUERY = 8192


def _query(raw: str) -> dict[str, str]:
    if len(raw) > _MAX_QUERY:
        raise InvalidRequest("the query string is too long", code="invalid_value")
    return {k: v[0] for k, v in parse_qs(raw, max_num_fields=20).items()}


class McpOAuthRoutes:
    def __init__(self, settings: Settings, chain: Callable[[Handler], Handler], state: ServerState,
                 mcp: Callable[[], McpAuth | None]) -> None:
        self._settings = settings
        self._mcp = mcp
        self._authed = Endpoint(INBOUND, chain(self.terminal), state, max_body_bytes=None,
                                deadline_seconds=settings.server.request_timeout_seconds)

    def _auth(self) -> tuple[McpAuth, OAuthClient]:
        mcp = self._mcp()
        if mcp is None or mcp.oauth is None:
            raise GatewayError("the MCP gateway is starting", status=503)
        return mcp, mcp.oauth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        try:
            if path == CALLBACK:
                if method != "GET":
                    raise MethodNotAllowed(f"method {method} is not allowed on {path}")
                await self._callback(scope, send)
                return
            match = _ROUTE.match(path)
            if match is None:
                raise NotFound(f"unknown URL: {method} {path[:200]}", code="unknown_url")
            if bool(match.group(2)) != (method == "GET") or method not in ("GET", "DELETE"):
                raise MethodNotAllowed(f"method {method} is not allowed on {path[:200]}")
            query = _query(scope.get("query_string", b"").decode("latin-1"))
            has_key = any(k in (b"authorization", b"x-api-key") for k, _ in scope["headers"])
            if method == "GET" and "ticket" in query and not has_key:
                await self._ticket(scope, send, match.group(1), query["ticket"])
                return
        except GatewayError as err:
            await self._error(scope, send, err)
            return
        await self._authed(scope, receive, send)

    # -- through the chain (a key or a JWT) -------------------------------------------------------

    async def terminal(self, ctx: RequestContext) -> Result:
        match = _ROUTE.match(ctx.path)
        assert match is not None and ctx.principal is not None
        name = match.group(1)
        if ctx.method == "DELETE":
            return await self._forget(ctx.principal, name)
        tenant, user = identity(ctx.principal)
        url = await self._start(tenant, user, name, self._base(ctx.headers))
        return _redirect(url)

    async def _forget(self, principal: Principal, name: str) -> RawReply:
        mcp, oauth = self._auth()
        tenant, user = identity(principal)
        server = mcp.server(tenant, name)
        if server is None or server.oauth is None:
            raise _no_server(name)
        deleted = await oauth.forget(server, tenant, user, name)
        body = {"object": "mcp_authorization", "server": name, "deleted": deleted}
        return RawReply(200, [JSON_CT], orjson.dumps(body))

    # -- outside the chain: the ticket of a link, and the callback ---------------------------------

    async def _ticket(self, scope: Scope, send: Send, name: str, ticket: str) -> None:
        mcp, _ = self._auth()
        who = mcp.tickets.open(ticket, name)
        if who is None:
            raise AuthenticationFailed("this authorization link is invalid or has expired; ask again",
                                       code="invalid_ticket")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        url = await self._start(*who, name, self._base(headers))
        reply = _redirect(url)
        await send_bytes(send, reply.status, reply.body, [*reply.headers[1:], *self._rid(scope)], JSON_CT)

    async def _callback(self, scope: Scope, send: Send) -> None:
        mcp, oauth = self._auth()
        query = _query(scope.get("query_string", b"").decode("latin-1"))
        pending = await oauth.pending(query.get("state", ""))  # used up, whatever follows
        # The code must come back to the address the flow sent the authorization server: a flow
        # started with a forged Host sends the code elsewhere, and bringing it here from there
        # would link someone else's account to the starter (mcp.public_url fixes the address).
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if pending.get("redirect_uri") != self._base(headers) + CALLBACK:
            raise InvalidRequest("this authorization was started for another address of the gateway; "
                                 "start it again from here", code="redirect_mismatch")
        if "error" in query:
            reason = re.sub(r"[^A-Za-z0-9_.-]", "", query["error"])[:64]
            raise InvalidRequest(f"the authorization was not granted ({reason})", code="authorization_denied")
        code = query.get("code", "")
        if not code or len(code) > 4096:
            raise InvalidRequest("code: missing or invalid", param="code", code="invalid_value")
        server = mcp.server(pending["tenant"], pending["server"])
        if server is None or server.oauth is None:
            raise _no_server(pending["server"])
        await oauth.complete(server, pending, code)
        page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorized</title></head><body>"
                f"<p>Switchboard may now use the MCP server <b>{html.escape(server.name)}</b> "
                "on your behalf. "
                "You can close this window.</p></body></html>")
        await send_bytes(send, 200, page.encode(), self._rid(scope), _HTML)

    # -- shared ---------------------------------------------------------------------------------

    async def _start(self, tenant: str, user: str, name: str, base: str) -> str:
        mcp, oauth = self._auth()
        server = mcp.server(tenant, name)
        if server is None:
            raise _no_server(name)
        if server.oauth is None:
            raise InvalidRequest(f"the MCP server '{name}' does not use per-user OAuth",
                                 code="oauth_not_used")
        return await oauth.authorize_url(server, tenant, user, base + CALLBACK)

    def _base(self, headers: dict[str, str]) -> str:
        """The gateway's address for the callback: mcp.public_url, else the request's Host."""
        public = self._settings.mcp.public_url
        if public is not None:
            return public
        host = headers.get("host", "")
        if not re.fullmatch(r"[A-Za-z0-9.\-]{1,253}(:\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?", host):
            raise InvalidRequest("cannot tell the gateway's address: set mcp.public_url",
                                 code="invalid_value")
        return f"http://{host}"

    @staticmethod
    def _rid(scope: Scope) -> list[tuple[bytes, bytes]]:
        rid = request_id({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        return [(b"x-request-id", rid.encode())]

    async def _error(self, scope: Scope, send: Send, err: GatewayError) -> None:
        await send_bytes(send, err.status, orjson.dumps(err.to_openai()), self._rid(scope), JSON_CT)


def _redirect(url: str) -> RawReply:
    body: dict[str, Any] = {"object": "mcp_authorization", "authorize_url": url}
    return RawReply(302, [JSON_CT, (b"location", url.encode("latin-1", "replace")),
                          (b"cache-control", b"no-store")], orjson.dumps(body))


def _no_server(name: str) -> NotFound:
    return NotFound(f"no MCP server named '{name[:64]}'", code="mcp_server_not_found")
