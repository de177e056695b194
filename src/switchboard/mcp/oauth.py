"""Per-user OAuth 2.1 for MCP servers that need it (docs/mcp.md, "Credentials and OAuth").

Each user authorizes once, through the gateway: the confirmation of the user's authorization
link (http/mcp_oauth.py, http/mcp_consent.py) sends the browser to the server's authorization
server with PKCE (S256), a ``state`` bound to the user and to that browser and short-lived (kept,
sealed, in the shared cache; used once), and the ``resource`` parameter of RFC 8707;
``GET /mcp/oauth/callback`` exchanges the code and stores the access and refresh tokens per
(tenant, user, server), sealed under the server secret. Links are spent once (``spend_ticket``).
Tokens are refreshed before they expire (one refresh at a time per user and server in a
process) and applied to every operation.

The authorization server is found from the MCP server (RFC 9728 protected-resource metadata: the
401's ``WWW-Authenticate: Bearer resource_metadata=...``, else ``/.well-known/
oauth-protected-resource``), then its RFC 8414 / OpenID Connect metadata, unless the server's
``oauth.authorization_url`` and ``oauth.token_url`` are configured. Without a configured
``client_id`` the gateway registers itself (RFC 7591) where the authorization server offers it.

Tokens the gateway forgets (a user unlinks the server; an admin change deletes every user's) are
revoked at the authorization server where its metadata offers revocation (RFC 7009), or at the
configured ``oauth.revocation_url``, in the background (mcp/revocation.py).

Every URL called here is a registered server's or one its metadata names: never a caller's. No
token, code, verifier or secret is ever logged or put in an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.config.urls import check_http_url, url_origin
from switchboard.crypto.keyring import DecryptError, Keyring, mcp_token_aad
from switchboard.errors import GatewayError, InvalidRequest
from switchboard.mcp.revocation import Revocation, RevocationFailed, Revoker
from switchboard.providers.errors import loads
from switchboard.stores.feedcache import STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ChangeFeed, McpStore, McpTokenRecord, SharedCache, utcnow
from switchboard.upstream.egress import ONLY_PUBLIC, Egress, refusal

log = logging.getLogger("switchboard.mcp")

MAX_REPLY_BYTES = 256 * 1024  # metadata and token answers
DISCOVERY_TTL = 3600.0
# The longest token lifetime taken from ``expires_in``: a hundred years is "does not expire" in
# practice, and a longer one would put the stored expiry past year 9999, which no date holds.
MAX_TOKEN_LIFETIME = 100 * 365 * 86_400
TOKEN_TOPIC = "mcp-oauth-tokens"
_STATE_PREFIX = "mcp-oauth-state:"
_TICKET_PREFIX = "mcp-oauth-ticket-used:"
_RESOURCE_METADATA = re.compile(r'resource_metadata\s*=\s*"([^"]{1,2048})"', re.I)
# The error codes an authorization server's refusal is shown by (RFC 6749 4.1.2.1 and 5.2, the
# bearer-token, revocation, device-grant, resource-indicator and DPoP codes). Anything else is
# left out: the field is free text to a server that echoes what it was sent (the client secret).
KNOWN_ERRORS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "access_denied", "unsupported_response_type", "server_error", "temporarily_unavailable",
    "invalid_token", "insufficient_scope", "unsupported_token_type", "authorization_pending", "slow_down",
    "expired_token", "invalid_target", "invalid_dpop_proof", "use_dpop_nonce", "consent_required",
    "login_required", "interaction_required", "account_selection_required",
})

TokenKey = tuple[str, str, str]  # (tenant, user, server)


class OAuthFailed(GatewayError):
    """The authorization server (or the discovery of it) failed; nothing secret in the message."""

    status = 502
    type = "api_error"
    code = "mcp_oauth_failed"


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    resource: str
    scopes: tuple[str, ...]
    revocation: str | None = None
    registration: str | None = None
    auth_methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: float | None  # epoch seconds
    token_url: str
    client_id: str
    resource: str
    revocation_url: str | None = None

    def __repr__(self) -> str:  # never a token in a log line or a traceback
        return f"TokenSet(expires_at={self.expires_at}, client_id={self.client_id!r})"


token_aad = mcp_token_aad


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")), parts.path.rstrip("/")


def _http_url(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise OAuthFailed(f"the {what} is missing from the authorization server's metadata")
    try:
        return check_http_url(value)
    except ValueError:
        raise OAuthFailed(f"the {what} in the authorization server's metadata is not an http(s) URL"
                          ) from None


_ACCEPT_JSON = {"accept": "application/json"}


class OAuthClient:
    """Discovery, the authorization code flow with PKCE, token storage and refresh."""

    def __init__(self, config: McpConfig, store: McpStore, cache: SharedCache, feed: ChangeFeed,
                 keyring: Callable[[], Keyring | None],
                 egress: Callable[[McpServerConfig], Egress | None] = lambda server: None) -> None:
        self._config = config
        # Where the requests made for a server may connect: a tenant's stored server's are held
        # to public addresses like its own connections (upstream/egress.py).
        self._egress = egress
        self._guarded: dict[Egress, aiohttp.ClientSession] = {}
        self._store = store
        self._cache = cache
        self._keyring = keyring
        self._http: aiohttp.ClientSession | None = None
        # By the server's identity (_server_key): a server whose URL or OAuth settings change is
        # discovered and registered anew, never with what was found for its old settings.
        self._discovered: dict[tuple[Any, ...], tuple[float, Endpoints]] = {}
        self._registered: dict[tuple[Any, ...], tuple[str, str | None]] = {}
        self._locks: dict[TokenKey, asyncio.Lock] = {}
        self._tokens: FeedCache[TokenKey, TokenSet] = FeedCache(
            TOKEN_TOPIC, self._load, feed, encode=lambda k: orjson.dumps(list(k)).decode(),
            decode=_decode_key, ttl=60.0, read_timeout=STORE_READ_SECONDS)
        self.revoker = Revoker(self._revoke)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.oauth_timeout_seconds)
        self._http = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        await self._tokens.start()

    async def close(self) -> None:
        await self.revoker.close()  # before the sessions its requests use
        await self._tokens.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
        guarded, self._guarded = list(self._guarded.values()), {}
        for session in guarded:
            await session.close()

    def _ring(self) -> Keyring:
        keyring = self._keyring()
        if keyring is None:
            raise GatewayError("per-user OAuth needs a server secret (auth.secret_key) to seal tokens with",
                               status=503, code="mcp_oauth_unavailable")
        return keyring

    # -- HTTP, bounded ------------------------------------------------------------------------

    def _session(self, egress: Egress | None) -> aiohttp.ClientSession:
        if self._http is None:
            raise OAuthFailed("the OAuth client is not started")
        if egress is None:
            return self._http
        session = self._guarded.get(egress)
        if session is None:
            session = self._guarded[egress] = aiohttp.ClientSession(
                timeout=self._http.timeout, raise_for_status=False, trace_configs=egress.traces(),
                connector=aiohttp.TCPConnector(resolver=egress.resolver()))
        return session

    async def _request(self, method: str, url: str, *, egress: Egress | None,
                       data: Mapping[str, str] | None = None, json: Any = None,
                       headers: Mapping[str, str] | None = None) -> tuple[int, Mapping[str, str], bytes]:
        session = self._session(egress)
        try:
            async with session.request(method, url, data=data, json=json, headers=headers,
                                       allow_redirects=False) as resp:
                body = await resp.content.read(MAX_REPLY_BYTES + 1)
                if len(body) > MAX_REPLY_BYTES:
                    raise OAuthFailed(f"an answer from {url_origin(url)} is larger than "
                                      f"{MAX_REPLY_BYTES} bytes")
                return resp.status, resp.headers, body
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            refused = refusal(exc)
            if refused is not None:
                raise OAuthFailed(f"{url_origin(url)} may not be reached: {refused}; {ONLY_PUBLIC}") from None
            raise OAuthFailed(f"{url_origin(url)} did not answer ({type(exc).__name__})") from None

    async def _json(self, method: str, url: str, *, egress: Egress | None, **kw: Any) -> tuple[int, Any]:
        status, _, body = await self._request(method, url, egress=egress, **kw)
        try:
            # BOM-tolerant, as the providers' replies are read: a server writing its JSON through a
            # BOM-emitting encoder is not taken for one that refused (a well-formed one costs nothing).
            return status, loads(body) if body else None
        except orjson.JSONDecodeError:
            return status, None

    # -- discovery ----------------------------------------------------------------------------

    async def endpoints(self, server: McpServerConfig) -> Endpoints:
        oauth = server.oauth
        assert oauth is not None and server.url is not None
        if oauth.authorization_url and oauth.token_url:
            # No metadata is read: revocation is where the configuration says, if it says.
            return Endpoints(oauth.authorization_url, oauth.token_url, server.url, tuple(oauth.scopes),
                             revocation=oauth.revocation_url)
        key = _server_key(server)
        cached = self._discovered.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await self._discover(server)
        if len(self._discovered) > 10_000:
            self._discovered.clear()
        self._discovered[key] = (time.monotonic() + DISCOVERY_TTL, found)
        return found

    async def _discover(self, server: McpServerConfig) -> Endpoints:
        oauth = server.oauth
        assert oauth is not None and server.url is not None
        prm = await self._protected_resource(server)
        issuers = prm.get("authorization_servers")
        if not isinstance(issuers, list) or not issuers or not isinstance(issuers[0], str):
            raise OAuthFailed(f"the MCP server '{server.name}' names no authorization server")
        issuer = _http_url(issuers[0], "authorization server")
        meta = await self._as_metadata(issuer, self._egress(server))
        methods = meta.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or "S256" not in methods:
            raise OAuthFailed(f"the authorization server of '{server.name}' does not support PKCE S256")
        given = prm.get("resource")
        resource: str = given if isinstance(given, str) else server.url
        supported = prm.get("scopes_supported")
        scopes = tuple(oauth.scopes) or tuple(
            s for s in (supported if isinstance(supported, list) else ()) if isinstance(s, str))
        auth_methods = meta.get("token_endpoint_auth_methods_supported")
        return Endpoints(
            authorization=oauth.authorization_url or _http_url(meta.get("authorization_endpoint"),
                                                               "authorization endpoint"),
            token=oauth.token_url or _http_url(meta.get("token_endpoint"), "token endpoint"),
            resource=resource,
            scopes=scopes[:50],
            revocation=oauth.revocation_url or (_http_url(meta["revocation_endpoint"], "revocation endpoint")
                                                if meta.get("revocation_endpoint") else None),
            registration=_http_url(meta["registration_endpoint"], "registration endpoint")
            if meta.get("registration_endpoint") else None,
            auth_methods=tuple(m for m in auth_methods if isinstance(m, str))
            if isinstance(auth_methods, list) else (),
        )

    async def _protected_resource(self, server: McpServerConfig) -> dict[str, Any]:
        """RFC 9728 metadata: the URL the server's 401 names, else the well-known locations."""
        assert server.url is not None
        candidates: list[str] = []
        probe = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "switchboard", "version": "1"}}}
        static = {k: v.get_secret_value() for k, v in server.headers.items()}
        egress = self._egress(server)
        try:
            status, headers, _ = await self._request(
                "POST", server.url, egress=egress, json=probe,
                headers={**static, "accept": "application/json, text/event-stream"})
            if status == 401:
                match = _RESOURCE_METADATA.search(headers.get("www-authenticate", ""))
                if match:
                    candidates.append(match.group(1))
        except OAuthFailed:
            pass  # try the well-known locations
        origin, path = _origin(server.url)
        if path:
            candidates.append(f"{origin}/.well-known/oauth-protected-resource{path}")
        candidates.append(f"{origin}/.well-known/oauth-protected-resource")
        for url in candidates:
            try:
                check_http_url(url)
                status, body = await self._json("GET", url, egress=egress, headers=_ACCEPT_JSON)
            except (OAuthFailed, ValueError):
                continue
            if status == 200 and isinstance(body, dict) and body.get("authorization_servers"):
                resource = body.get("resource")
                if isinstance(resource, str) and not _same_resource(resource, server.url):
                    raise OAuthFailed(f"the protected-resource metadata of '{server.name}' is for another "
                                      "resource")
                return body
        raise OAuthFailed(f"no protected-resource metadata found for the MCP server '{server.name}'")

    async def _as_metadata(self, issuer: str, egress: Egress | None) -> dict[str, Any]:
        origin, path = _origin(issuer)
        candidates = [f"{origin}/.well-known/oauth-authorization-server{path}",
                      f"{origin}/.well-known/openid-configuration{path}"]
        if path:
            candidates.append(f"{origin}{path}/.well-known/openid-configuration")
        for url in candidates:
            try:
                status, body = await self._json("GET", url, egress=egress, headers=_ACCEPT_JSON)
            except OAuthFailed:
                continue
            if status == 200 and isinstance(body, dict) and body.get("authorization_endpoint"):
                return body
        raise OAuthFailed(f"no authorization server metadata found at {origin}")

    async def _client(self, server: McpServerConfig, endpoints: Endpoints, redirect_uri: str
                      ) -> tuple[str, str | None]:
        """(client id, client secret): configured, else registered (RFC 7591) once per process."""
        oauth = server.oauth
        assert oauth is not None
        if oauth.client_id:
            return oauth.client_id, oauth.client_secret.get_secret_value() if oauth.client_secret else None
        key = (*_server_key(server), endpoints.token, redirect_uri)
        if key in self._registered:
            return self._registered[key]
        if endpoints.registration is None:
            raise OAuthFailed(f"the MCP server '{server.name}' needs an oauth.client_id (its authorization "
                              "server offers no client registration)")
        status, body = await self._json("POST", endpoints.registration, egress=self._egress(server), json={
            "client_name": "Switchboard", "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none"})
        if (status not in (200, 201) or not isinstance(body, dict)
                or not isinstance(body.get("client_id"), str)):
            raise OAuthFailed(f"the authorization server of '{server.name}' refused the client registration")
        secret = body.get("client_secret") if isinstance(body.get("client_secret"), str) else None
        if len(self._registered) > 10_000:
            self._registered.clear()
        self._registered[key] = (body["client_id"], secret)
        return self._registered[key]

    # -- the authorization code flow ----------------------------------------------------------

    async def authorize_url(self, server: McpServerConfig, tenant: str, user: str, redirect_uri: str, *,
                            browser: str) -> str:
        """Where to send the user's browser; the pending authorization kept for the callback,
        bound to ``browser`` (a digest of the cookie of the browser that confirmed it: the
        callback completes in that browser only)."""
        keyring = self._ring()
        endpoints = await self.endpoints(server)
        client_id, _ = await self._client(server, endpoints, redirect_uri)
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(32)
        ttl = self._config.oauth_state_seconds
        pending = {"tenant": tenant, "user": user, "server": server.name, "url": server.url,
                   "verifier": verifier, "redirect_uri": redirect_uri, "client_id": client_id,
                   "browser": browser, "expires": time.time() + ttl}
        sealed = keyring.encrypt(orjson.dumps(pending).decode(), "mcp-oauth-state")
        await self._cache.set(_state_key(state), sealed.encode(), ttl)
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                  "resource": endpoints.resource}
        if endpoints.scopes:
            params["scope"] = " ".join(endpoints.scopes)
        sep = "&" if urlsplit(endpoints.authorization).query else "?"
        return endpoints.authorization + sep + urlencode(params)

    async def ticket_used(self, nonce: str) -> bool:
        return await self._cache.get(_ticket_key(nonce)) is not None

    async def spend_ticket(self, nonce: str, expires: float) -> bool:
        """Mark an authorization link used (in the shared cache, for its remaining life); False
        when it already was: a link starts one authorization."""
        # One atomic set-if-absent: two confirmations racing on one link cannot both pass.
        return await self._cache.add(_ticket_key(nonce), b"1", max(1.0, expires - time.time() + 1.0))

    async def pending(self, state: str) -> dict[str, Any]:
        """The authorization a callback's ``state`` belongs to, used up (400 when unknown,
        expired or already used)."""
        if not state or len(state) > 512:
            raise InvalidRequest("state: missing or invalid", param="state", code="invalid_state")
        raw = await self._cache.take(_state_key(state))  # atomic: two callbacks cannot both use it
        if raw is None:
            raise InvalidRequest("state: unknown, expired or already used; start the authorization again",
                                 param="state", code="invalid_state")
        try:
            pending: dict[str, Any] = orjson.loads(self._ring().decrypt(raw.decode(), "mcp-oauth-state"))
        except (DecryptError, orjson.JSONDecodeError, UnicodeDecodeError):
            raise InvalidRequest("state: invalid", param="state", code="invalid_state") from None
        if pending.get("expires", 0) < time.time():
            raise InvalidRequest("state: expired; start the authorization again", param="state",
                                 code="invalid_state")
        return pending

    async def complete(self, server: McpServerConfig, pending: Mapping[str, Any], code: str) -> None:
        """Exchange the code for tokens and store them for the user who started the flow."""
        if server.url != pending["url"]:
            raise InvalidRequest("the MCP server changed during the authorization; start again",
                                 param="state", code="invalid_state")
        endpoints = await self.endpoints(server)
        client_id = pending["client_id"]
        secret = self._secret(server, endpoints, pending["redirect_uri"], client_id)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending["redirect_uri"],
                "code_verifier": pending["verifier"], "resource": endpoints.resource}
        tokens = await self._token_request(server, endpoints.token, form, client_id, secret, endpoints)
        ts = _token_set(tokens, None, endpoints, client_id)
        await self._save(pending["tenant"], pending["user"], server.name, ts)

    def _secret(self, server: McpServerConfig, endpoints: Endpoints, redirect_uri: str, client_id: str
                ) -> str | None:
        oauth = server.oauth
        assert oauth is not None
        if oauth.client_id == client_id:
            return oauth.client_secret.get_secret_value() if oauth.client_secret else None
        registered = self._registered.get((*_server_key(server), endpoints.token, redirect_uri))
        return registered[1] if registered and registered[0] == client_id else None

    async def _token_request(self, server: McpServerConfig, url: str, form: dict[str, str], client_id: str,
                             secret: str | None, endpoints: Endpoints | None) -> dict[str, Any]:
        headers, form = _client_auth(client_id, secret, endpoints.auth_methods if endpoints else (), form)
        status, body = await self._json("POST", url, egress=self._egress(server), data=form, headers=headers)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            error = known_error(body.get("error") if isinstance(body, dict) else None)
            raise OAuthFailed(
                f"the authorization server of '{server.name}' refused the token request"
                + (f" ({error})" if error else f" (HTTP {status})"),
                code="mcp_oauth_refused" if status in (400, 401) else "mcp_oauth_failed",
            )
        token_type = body.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise OAuthFailed(f"the authorization server of '{server.name}' issued a token that is not "
                              "a bearer token")
        return body

    # -- tokens -------------------------------------------------------------------------------

    async def _load(self, key: TokenKey) -> TokenSet | None:
        record = await self._store.get_token(*key)
        return None if record is None else self._open(record)

    def _open(self, record: McpTokenRecord) -> TokenSet | None:
        try:
            data = orjson.loads(self._ring().decrypt(
                record.sealed, token_aad(record.tenant_id, record.user_id, record.server)))
            return TokenSet(**data)
        except (DecryptError, orjson.JSONDecodeError, TypeError):
            log.warning("the stored OAuth tokens of a user for the MCP server %r do not open", record.server)
            return None

    async def _save(self, tenant: str, user: str, server: str, ts: TokenSet) -> None:
        sealed = self._ring().encrypt(orjson.dumps(asdict(ts)).decode(), token_aad(tenant, user, server))
        expires = None
        if ts.expires_at is not None:
            from datetime import UTC, datetime

            expires = datetime.fromtimestamp(ts.expires_at, UTC)
        await self._store.put_token(McpTokenRecord(tenant, user, server, sealed, expires, utcnow()))
        await self._tokens.changed((tenant, user, server))

    async def access_token(self, server: McpServerConfig, tenant: str, user: str) -> str | None:
        """The user's access token for the server, refreshed when it is about to expire; None
        when the user has not authorized (or the authorization is no longer valid)."""
        key = (tenant, user, server.name)
        seen = await self._tokens.get(key)
        if seen is None:
            return None
        if not _issued_for(server, seen):
            # Issued for the server's old URL or by its old authorization server or client (the
            # server was changed; the admin API deletes them then, this is for a changed YAML):
            # never sent to the new one. The user authorizes again.
            log.info("a user's OAuth tokens for the MCP server %r were issued for its old settings; "
                     "forgotten", server.name)
            await self.forget_local(key)
            return None
        if not self._stale(seen):
            return seen.access_token
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # one refresh at a time per user and server
                ts = await self._tokens.get(key)
                if ts is None or ts.access_token != seen.access_token or not self._stale(ts):
                    # gone, or refreshed by whoever held the lock before
                    return None if ts is None else ts.access_token
                fresh = await self._refresh(server, key, ts)
                return None if fresh is None else fresh.access_token
        finally:
            if not lock.locked() and len(self._locks) > 1000:
                self._locks.pop(key, None)

    def _stale(self, ts: TokenSet) -> bool:
        margin = self._config.oauth_refresh_margin_seconds
        return ts.expires_at is not None and time.time() >= ts.expires_at - margin

    async def _refresh(self, server: McpServerConfig, key: TokenKey, ts: TokenSet) -> TokenSet | None:
        expired = ts.expires_at is not None and time.time() >= ts.expires_at
        if ts.refresh_token is None:
            if expired:
                await self.forget_local(key)
                return None
            return ts
        endpoints = None
        with contextlib.suppress(OAuthFailed):
            endpoints = await self.endpoints(server)
        secret = None
        oauth = server.oauth
        if oauth is not None and oauth.client_id == ts.client_id and oauth.client_secret is not None:
            secret = oauth.client_secret.get_secret_value()
        form = {"grant_type": "refresh_token", "refresh_token": ts.refresh_token, "resource": ts.resource}
        try:
            body = await self._token_request(server, ts.token_url, form, ts.client_id, secret, endpoints)
        except OAuthFailed as exc:
            if exc.code == "mcp_oauth_refused":  # the grant is gone: the user authorizes again
                await self.forget_local(key)
                return None
            if not expired:
                return ts  # still valid for a moment: use it, refresh next time
            raise
        fresh = _token_set(body, ts, endpoints, ts.client_id)
        await self._save(*key, fresh)
        return fresh

    async def forget_local(self, key: TokenKey) -> bool:
        deleted = await self._store.delete_token(*key)
        await self._tokens.changed(key)
        return deleted

    async def forget(self, server: McpServerConfig, tenant: str, user: str) -> bool:
        """Delete the user's tokens for the server; they are revoked at the authorization server
        where it offers revocation (RFC 7009), in the background: the caller answers at once."""
        key = (tenant, user, server.name)
        # The stored tokens, not this instance's cached copy: another instance may have refreshed
        # them since (a rotated refresh token is the one to revoke).
        ts = await self._load(key)
        deleted = await self.forget_local(key)
        if ts is not None:
            revocation = self._revocation(server, ts, self._egress(server))
            if revocation is not None:
                self.revoker.revoke(server.name, [revocation])
        return deleted

    def revoke_deleted(self, server: McpServerConfig, records: Sequence[McpTokenRecord],
                       egress: Egress | None) -> None:
        """Revoke, in the background, every user's tokens deleted from the store for ``server``
        (as it was configured when they were issued: its client and secret; ``egress``, where
        requests made for it may go). Returns at once; the tokens are opened in the task."""
        if records:
            self.revoker.revoke(server.name, self._revocations(server, records, egress))

    def _revocations(self, server: McpServerConfig, records: Sequence[McpTokenRecord],
                     egress: Egress | None) -> Iterator[Revocation]:
        for record in records:
            ts = self._open(record) if self._keyring() is not None else None
            revocation = None if ts is None else self._revocation(server, ts, egress)
            if revocation is not None:
                yield revocation

    def _revocation(self, server: McpServerConfig, ts: TokenSet, egress: Egress | None) -> Revocation | None:
        """What revoking ``ts`` takes; None where its authorization server offers no revocation
        (no ``oauth.revocation_url`` is configured, and its metadata named no
        ``revocation_endpoint`` or none was read: configured endpoints). The configured URL
        comes first: it holds for tokens issued before it was set, too."""
        oauth = server.oauth
        url = (oauth.revocation_url if oauth is not None else None) or ts.revocation_url
        if not url:
            return None
        secret = None
        if oauth is not None and oauth.client_id == ts.client_id and oauth.client_secret is not None:
            secret = oauth.client_secret.get_secret_value()
        # The client authenticates as at the token endpoint: its methods as last discovered.
        found = self._discovered.get(_server_key(server))
        tokens = [(ts.refresh_token, "refresh_token")] if ts.refresh_token else []
        tokens.append((ts.access_token, "access_token"))
        return Revocation(url, ts.client_id, secret, found[1].auth_methods if found else (),
                          egress, tuple(tokens))

    async def _revoke(self, revocation: Revocation, token: str, hint: str) -> None:
        """One revocation request (RFC 7009 section 2.1); raises RevocationFailed."""
        headers, form = _client_auth(revocation.client_id, revocation.secret, revocation.auth_methods,
                                     {"token": token, "token_type_hint": hint})
        try:
            status, body = await self._json("POST", revocation.url, egress=revocation.egress, data=form,
                                            headers=headers)
        except OAuthFailed as exc:
            raise RevocationFailed(exc.message) from None
        if status == 200:
            return
        error = known_error(body.get("error") if isinstance(body, dict) else None)
        if hint == "access_token" and error == "unsupported_token_type":
            return  # it revokes refresh tokens only: the access token ends when it expires
        raise RevocationFailed(f"{url_origin(revocation.url)} answered HTTP {status}"
                               + (f" ({error})" if error else ""))


def known_error(error: object) -> str | None:
    """An authorization server's ``error`` fit to show: one of the registered codes, else None."""
    return error if isinstance(error, str) and error in KNOWN_ERRORS else None


def _token_set(body: Mapping[str, Any], old: TokenSet | None, endpoints: Endpoints | None,
               client_id: str) -> TokenSet:
    expires_in = body.get("expires_in")
    expires_at = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        expires_at = time.time() + min(expires_in, MAX_TOKEN_LIFETIME)
    refresh = body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None
    if refresh is None and old is not None:
        refresh = old.refresh_token  # not rotated: keep the one we have
    token_url = endpoints.token if endpoints else (old.token_url if old else "")
    resource = endpoints.resource if endpoints else (old.resource if old else "")
    revocation = endpoints.revocation if endpoints else (old.revocation_url if old else None)
    return TokenSet(str(body["access_token"]), refresh, expires_at, token_url, client_id, resource,
                    revocation)


def _client_auth(client_id: str, secret: str | None, methods: tuple[str, ...], form: dict[str, str]
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, form) of a request to the authorization server as the client: HTTP Basic with
    a secret unless the server's methods exclude it (``client_secret_basic`` is the default,
    RFC 8414), else the client's id (and secret) in the form."""
    headers = {"accept": "application/json"}
    if secret is not None and (not methods or "client_secret_basic" in methods):
        pair = f"{_form_quote(client_id)}:{_form_quote(secret)}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers, form
    form = {**form, "client_id": client_id}
    if secret is not None:
        form["client_secret"] = secret
    return headers, form


def _server_key(server: McpServerConfig) -> tuple[Any, ...]:
    oauth = server.oauth
    settings = (None,) if oauth is None else (oauth.client_id, oauth.authorization_url, oauth.token_url,
                                              oauth.revocation_url, tuple(oauth.scopes))
    return (server.tenant, server.name, server.url, *settings)


def _issued_for(server: McpServerConfig, ts: TokenSet) -> bool:
    """Whether stored tokens belong to the server as it is now configured: issued for its URL
    (the resource, RFC 8707) by its configured client and token endpoint."""
    oauth = server.oauth
    if oauth is None or server.url is None or not _same_resource(ts.resource, server.url):
        return False
    if oauth.client_id is not None and ts.client_id != oauth.client_id:
        return False
    return oauth.token_url is None or ts.token_url == oauth.token_url


def _form_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _state_key(state: str) -> str:
    return _STATE_PREFIX + hashlib.sha256(state.encode()).hexdigest()


def _ticket_key(nonce: str) -> str:
    return _TICKET_PREFIX + hashlib.sha256(nonce.encode()).hexdigest()


def _decode_key(message: str) -> TokenKey | None:
    try:
        value = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value):
        return (value[0], value[1], value[2])
    return None


Lookup = Callable[[str, str], Awaitable[McpServerConfig | None]]
