"""Who supplies the credentials of an upstream MCP server (:class:`~switchboard.mcp.interfaces.
Credentials`): the server's static headers (the YAML's, or the admin API's, sealed at rest) and,
for a server with ``oauth``, the calling user's own access token (mcp/oauth.py), applied to every
operation, listing and calling alike. A user without a token gets :class:`AuthorizationRequired`
with the link that starts the authorization through the gateway; one user's token is never sent
for another (tokens are keyed by tenant, user and server).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson

from switchboard.config.mcp import McpServerConfig
from switchboard.context import Principal
from switchboard.crypto.keyring import DecryptError, Keyring
from switchboard.mcp.interfaces import AuthorizationRequired

if TYPE_CHECKING:
    from switchboard.mcp.oauth import OAuthClient

DEFAULT_TENANT = "default"
_TICKET_AAD = "mcp-oauth-ticket"


def identity(principal: Principal) -> tuple[str, str]:
    """(tenant, user) whose tokens a caller uses: the principal's user; a key without a user: the
    key itself (the master key: "master")."""
    return principal.tenant_id or DEFAULT_TENANT, principal.user_id or principal.key_id or principal.id


def static_headers(server: McpServerConfig) -> dict[str, str]:
    return {name: value.get_secret_value() for name, value in server.headers.items()}


class StaticCredentials:
    """The server's own headers, the same for every caller."""

    async def headers(self, server: McpServerConfig, principal: Principal | None) -> dict[str, str]:
        return static_headers(server)


@dataclass(frozen=True)
class Ticket:
    """Whose authorization a link starts, for which server; ``nonce`` makes it single-use (the
    confirmation spends it: mcp/oauth.py ``spend_ticket``)."""

    tenant: str
    user: str
    server: str
    nonce: str
    expires: float  # epoch seconds
    key_prefix: str | None = None  # the key that asked, shown on the confirmation page


class Tickets:
    """Short-lived, sealed, single-use links that start one user's authorization for one server
    from a browser (which holds no Switchboard key): ``/mcp/oauth/<server>/authorize?ticket=...``.
    The link opens a confirmation page naming that user (http/mcp_consent.py): whoever is sent
    someone else's link sees whose account it would be linked to."""

    def __init__(self, keyring: Callable[[], Keyring | None], ttl: float) -> None:
        self._keyring = keyring
        self._ttl = ttl

    def issue(self, tenant: str, user: str, server: str, key_prefix: str | None = None) -> str | None:
        keyring = self._keyring()
        if keyring is None:
            return None
        plain = orjson.dumps({"t": tenant, "u": user, "s": server, "e": time.time() + self._ttl,
                              "n": secrets.token_urlsafe(16), "p": key_prefix}).decode()
        return keyring.encrypt(plain, _TICKET_AAD)

    def open(self, ticket: str, server: str) -> Ticket | None:
        """The valid (unexpired, genuine) ticket for ``server``; None otherwise. Whether it was
        used already is the shared cache's to say."""
        keyring = self._keyring()
        if keyring is None or len(ticket) > 2048:
            return None
        try:
            data = orjson.loads(keyring.decrypt(ticket, _TICKET_AAD))
        except (DecryptError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("s") != server or float(data.get("e", 0)) < time.time():
            return None
        nonce, prefix = data.get("n"), data.get("p")
        if not isinstance(nonce, str):
            return None
        return Ticket(str(data["t"]), str(data["u"]), server, nonce, float(data["e"]),
                      prefix if isinstance(prefix, str) else None)


class GatewayCredentials:
    """Static headers, plus the user's OAuth access token for servers with ``oauth``."""

    def __init__(self, oauth: Callable[[], OAuthClient | None], tickets: Tickets, public_url: str | None
                 ) -> None:
        self._oauth = oauth
        self._tickets = tickets
        self._base = public_url or ""

    def authorize_link(self, server: str, principal: Principal | None) -> str:
        link = f"{self._base}/mcp/oauth/{quote(server, safe='')}/authorize"
        if principal is None:
            return link
        ticket = self._tickets.issue(*identity(principal), server, principal.key_prefix)
        return link if ticket is None else f"{link}?ticket={ticket}"

    async def headers(self, server: McpServerConfig, principal: Principal | None) -> dict[str, str]:
        headers = static_headers(server)
        if server.oauth is None:
            return headers
        token = None
        oauth = self._oauth()
        if principal is not None and oauth is not None:
            token = await oauth.access_token(server, *identity(principal))
        if token is None:
            raise AuthorizationRequired(server.name, self.authorize_link(server.name, principal))
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
        return headers

    async def refused(self, server: McpServerConfig, principal: Principal | None) -> AuthorizationRequired:
        """The server refused the user's token: forget it; the error asks for a new authorization."""
        oauth = self._oauth()
        if principal is not None and oauth is not None:
            tenant, user = identity(principal)
            await oauth.forget_local((tenant, user, server.name))
        return AuthorizationRequired(server.name, self.authorize_link(server.name, principal))
