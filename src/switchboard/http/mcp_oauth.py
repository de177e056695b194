"""Per-user OAuth for MCP servers, through the gateway (docs/mcp.md, "Credentials and OAuth"):

- ``GET /mcp/oauth/{server}/authorize`` with a Switchboard key or JWT (through the chain):
  302 to the caller's authorization link (a short-lived, single-use ``ticket``), the one
  "authorization required" errors carry, to open in a browser.
- ``GET /mcp/oauth/{server}/authorize?ticket=`` (a browser, no key): the confirmation page naming
  whose connection it is (http/mcp_consent.py); it sets the browser's cookie.
- ``POST /mcp/oauth/{server}/authorize`` (the page's form: ``ticket``, ``csrf``, with the
  cookie): spends the ticket, and 303 to the server's authorization server (PKCE S256, a
  ``state`` bound to the user and to this browser, ``resource``).
- ``GET /mcp/oauth/callback``: where the authorization server sends the browser back; in the
  browser that confirmed only, exchanges the code and stores the tokens for that user.
- ``DELETE /mcp/oauth/{server}``: forget the caller's tokens (revoked where the authorization
  server offers it, in the background: the answer does not wait).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from switchboard.config.mcp import McpServerConfig
from switchboard.config.schema import Settings
from switchboard.context import Principal, RawReply, RequestContext, Result
from switchboard.crypto.keyring import Keyring
from switchboard.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound, PermissionDenied
from switchboard.http import mcp_consent as consent
from switchboard.http.asgi import JSON_CT, Receive, Scope, Send, read_body, send_bytes
from switchboard.http.endpoint import Endpoint, request_id
from switchboard.http.errors import MethodNotAllowed
from switchboard.http.openai_api import OpenAIJson
from switchboard.http.state import ServerState
from switchboard.mcp.auth import McpAuth
from switchboard.mcp.credentials import Ticket, identity
from switchboard.mcp.oauth import OAuthClient, known_error
from switchboard.pipeline.chain import Handler

log = logging.getLogger("switchboard.mcp")

PREFIX = "/mcp/oauth/"
CALLBACK = "/mcp/oauth/callback"
INBOUND = OpenAIJson("mcp_oauth")
_ROUTE = re.compile(r"^/mcp/oauth/([A-Za-z0-9][A-Za-z0-9_-]{0,63})(/authorize)?$")
_HTML = (b"content-type", b"text/html; charset=utf-8")
_MAX_QUERY = 8192
_MAX_FORM = _MAX_QUERY


def _query(raw: str) -> dict[str, str]:
    """A query string or a form's body (``application/x-www-form-urlencoded``), bounded."""
    if len(raw) > _MAX_QUERY:
        raise InvalidRequest("the query string (or form) is too long", code="invalid_value")
    try:
        return {k: v[0] for k, v in parse_qs(raw, max_num_fields=20).items()}
    except ValueError:
        raise InvalidRequest("too many parameters", code="invalid_value") from None


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
            if method not in (("GET", "POST") if match.group(2) else ("DELETE",)):
                raise MethodNotAllowed(f"method {method} is not allowed on {path[:200]}")
            if method == "POST":  # the confirmation page's form: no key, the ticket and the cookie
                await self._confirm(scope, receive, send, match.group(1))
                return
            query = _query(scope.get("query_string", b"").decode("latin-1"))
            has_key = any(k in (b"authorization", b"x-api-key") for k, _ in scope["headers"])
            if method == "GET" and "ticket" in query and not has_key:
                await self._page(scope, send, match.group(1), query["ticket"])
                return
        except GatewayError as err:
            await self._error(scope, send, err)
            return
        except ConnectionAbortedError:
            return  # the browser left while sending its form
        await self._authed(scope, receive, send)

    # -- through the chain (a key or a JWT) -------------------------------------------------------

    async def terminal(self, ctx: RequestContext) -> Result:
        match = _ROUTE.match(ctx.path)
        assert match is not None and ctx.principal is not None
        name = match.group(1)
        if ctx.method == "DELETE":
            return await self._forget(ctx.principal, name)
        mcp, _ = self._auth()
        self._server(mcp, identity(ctx.principal)[0], name)
        self._keyring(mcp)
        # Not the authorization server itself: every authorization is confirmed in a browser,
        # which the callback is then bound to (http/mcp_consent.py).
        return _redirect(mcp.credentials.authorize_link(name, ctx.principal))

    async def _forget(self, principal: Principal, name: str) -> RawReply:
        mcp, oauth = self._auth()
        tenant, user = identity(principal)
        server = mcp.server(tenant, name)
        if server is None or server.oauth is None:
            raise _no_server(name)
        deleted = await oauth.forget(server, tenant, user)  # revoked in the background
        body = {"object": "mcp_authorization", "server": name, "deleted": deleted}
        return RawReply(200, [JSON_CT], orjson.dumps(body))

    # -- outside the chain: the ticket of a link, and the callback ---------------------------------

    async def _ticket(self, mcp: McpAuth, raw: str, name: str) -> Ticket:
        """The link's ticket, valid and unused (401 ``invalid_ticket`` otherwise)."""
        ticket = mcp.tickets.open(raw, name)
        if ticket is None:
            raise AuthenticationFailed("this authorization link is invalid or has expired; ask again",
                                       code="invalid_ticket")
        oauth = mcp.oauth
        if oauth is not None and await oauth.ticket_used(ticket.nonce):
            raise AuthenticationFailed("this authorization link was used already; ask again for a new one",
                                       code="invalid_ticket")
        return ticket

    async def _page(self, scope: Scope, send: Send, name: str, raw: str) -> None:
        """The confirmation page of a link: whose connection it is; nothing starts yet."""
        mcp, _ = self._auth()
        ticket = await self._ticket(mcp, raw, name)
        self._server(mcp, ticket.tenant, name)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        browser = consent.browser_of(headers.get("cookie", "")) or consent.new_browser()
        body = consent.page(ticket, raw, consent.seal_csrf(self._keyring(mcp), browser, ticket))
        path, secure = self._cookie_scope(headers)
        max_age = int(self._settings.mcp.oauth_ticket_seconds + self._settings.mcp.oauth_state_seconds)
        sent = [consent.cookie(browser, path, secure, max_age), *consent.PAGE_HEADERS, *self._rid(scope)]
        await send_bytes(send, 200, body, sent, _HTML)

    async def _confirm(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """The page's form, in the browser the page set its cookie in: the link is spent and the
        browser sent to the authorization server, the flow bound to that browser."""
        mcp, oauth = self._auth()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        form = _query((await read_body(receive, _MAX_FORM, headers.get("content-length"))).decode("latin-1"))
        ticket = await self._ticket(mcp, form.get("ticket", ""), name)
        browser = consent.browser_of(headers.get("cookie", ""))
        if not consent.csrf_ok(self._keyring(mcp), form.get("csrf", ""), browser, ticket):
            raise PermissionDenied("this confirmation did not come from the authorization page opened in "
                                   "this browser; open the authorization link again", code="invalid_consent")
        assert browser is not None
        server = self._server(mcp, ticket.tenant, name)
        if not await oauth.spend_ticket(ticket.nonce, ticket.expires):
            raise AuthenticationFailed("this authorization link was used already; ask again for a new one",
                                       code="invalid_ticket")
        url = await oauth.authorize_url(server, ticket.tenant, ticket.user, self._base(headers) + CALLBACK,
                                        browser=consent.binding(browser))
        reply = _redirect(url, status=303)
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
        # Only in the browser that confirmed it: the authorization server's URL passed on to
        # someone else would otherwise link their account to the user who confirmed.
        if not consent.same_browser(consent.browser_of(headers.get("cookie", "")), pending.get("browser")):
            raise InvalidRequest("this authorization was confirmed in another browser; open your own "
                                 "authorization link in this one", code="browser_mismatch")
        if "error" in query:
            reason = known_error(query["error"])  # a registered code; free text is not echoed
            raise InvalidRequest("the authorization was not granted" + (f" ({reason})" if reason else ""),
                                 code="authorization_denied")
        code = query.get("code", "")
        if not code or len(code) > 4096:
            raise InvalidRequest("code: missing or invalid", param="code", code="invalid_value")
        server = mcp.server(pending["tenant"], pending["server"])
        if server is None or server.oauth is None:
            raise _no_server(pending["server"])
        await oauth.complete(server, pending, code)
        page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorized</title></head><body>"
                f"<p>The Switchboard user <b>{html.escape(str(pending['user']))}</b> may now use the MCP "
                f"server <b>{html.escape(server.name)}</b> with your account there. "
                "You can close this window.</p></body></html>")
        await send_bytes(send, 200, page.encode(), [*consent.PAGE_HEADERS, *self._rid(scope)], _HTML)

    # -- shared ---------------------------------------------------------------------------------

    @staticmethod
    def _server(mcp: McpAuth, tenant: str, name: str) -> McpServerConfig:
        server = mcp.server(tenant, name)
        if server is None:
            raise _no_server(name)
        if server.oauth is None:
            raise InvalidRequest(f"the MCP server '{name}' does not use per-user OAuth",
                                 code="oauth_not_used")
        return server

    @staticmethod
    def _keyring(mcp: McpAuth) -> Keyring:
        if mcp.keyring is None:
            raise GatewayError("per-user OAuth needs a server secret (auth.secret_key)", status=503,
                               code="mcp_oauth_unavailable")
        return mcp.keyring

    def _cookie_scope(self, headers: dict[str, str]) -> tuple[str, bool]:
        """The browser cookie's path (the OAuth routes, under public_url's path) and whether it
        is HTTPS-only."""
        public = self._settings.mcp.public_url
        if public is None:
            return "/mcp/oauth", headers.get("x-forwarded-proto", "").lower() == "https"
        parts = urlsplit(public)
        return parts.path.rstrip("/") + "/mcp/oauth", parts.scheme.lower() == "https"

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


def _redirect(url: str, status: int = 302) -> RawReply:
    body: dict[str, Any] = {"object": "mcp_authorization", "authorize_url": url}
    return RawReply(status, [JSON_CT, (b"location", url.encode("latin-1", "replace")),
                          (b"cache-control", b"no-store")], orjson.dumps(body))


def _no_server(name: str) -> NotFound:
    return NotFound(f"no MCP server named '{name[:64]}'", code="mcp_server_not_found")
