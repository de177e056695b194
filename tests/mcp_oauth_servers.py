"""Per-user OAuth for the MCP tests: a small OAuth 2.1 authorization server (aiohttp on a thread
of the test process, like tests/oidc_provider.py) and an OAuth-protected MCP server written with
the official SDK (its ``token_verifier`` support), run as a subprocess:
``python -m tests.mcp_oauth_servers <port> <issuer> <static token>``.

The authorization server serves RFC 8414 metadata, ``/authorize`` (no login page: the test names
the user who "logs in" with ``login=<subject>``; ``deny=1`` refuses), ``/token`` (authorization
code with PKCE S256 and refresh token grants, refresh tokens rotated, the client authenticated
with HTTP Basic), ``/introspect`` (RFC 7662, for the MCP server) and ``/revoke`` (RFC 7009: the
client authenticated as at ``/token``, or a registered public client by its id; every request
recorded in ``revocations``, those it accepted in ``revoked``; it can be made to fail or to hold
its answers). It records every token it issues, so a test can assert none reaches the gateway's
log.

The MCP server requires a bearer token: one the authorization server issued for it (checked by
introspection, its ``resource`` included), or the fixed static token (subject ``static-client``).
Its tool ``whoami`` answers the calling subject.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web

from tests.servers import Process, free_port

STATIC_SUBJECT = "static-client"


@dataclass(frozen=True)
class Revocation:
    """A revocation request the authorization server received."""

    token: str
    hint: str  # its token_type_hint
    authenticated: bool  # the client authenticated (or a registered public client named itself)


class AuthorizationServer:
    def __init__(self, client_id: str = "switchboard", client_secret: str = "as-client-secret") -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id = client_id
        self.client_secret = client_secret
        self.lifetime = 3600  # seconds an access token lives (expires_in)
        self.resource: str | None = None  # the MCP server's URL: tokens are issued for it only
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, dict[str, Any]] = {}
        self.refresh: dict[str, dict[str, Any]] = {}
        self.issued: list[str] = []  # every token issued (access and refresh)
        self.grants: Counter[str] = Counter()  # token requests by grant type
        self.revoked: list[str] = []  # the tokens revoked (accepted requests)
        self.revocations: list[Revocation] = []  # every revocation request, in order
        self.revocation_status: int | None = None  # answer every revocation with this instead
        # The "error" of every refusal at /token and /revoke instead of its code: a server echoing
        # what it was sent there (the client secret, say).
        self.refusal_error: str | None = None
        # True: the tokens issued at /token come after a UTF-8 byte order mark (a server writing
        # through a BOM-emitting encoder).
        self.bom = False
        self._held: asyncio.Event | None = None  # set: revocations wait until released
        self._registered: set[str] = set()  # dynamically registered (public) clients
        self._revocations_changed = threading.Condition()
        self.hits: Counter[str] = Counter()  # requests by path
        # For discovery tests: the PKCE methods advertised, dynamic registration offered, and a
        # protected resource of its own at /mcp (401 with or without resource_metadata; its
        # metadata at /.well-known/oauth-protected-resource/mcp naming ``prm_resource``).
        self.pkce_methods: list[str] = ["S256"]
        self.registration = False
        self.www_authenticate = True
        self.prm_resource: str | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> AuthorizationServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/.well-known/oauth-authorization-server", self._metadata)
            app.router.add_get("/authorize", self._authorize)
            app.router.add_post("/token", self._token)
            app.router.add_post("/introspect", self._introspect)
            app.router.add_post("/revoke", self._revoke)
            app.router.add_post("/register", self._register)
            app.router.add_post("/mcp", self._protected)
            app.router.add_get("/.well-known/oauth-protected-resource/mcp", self._resource_metadata)
            app.middlewares.append(self._count)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the authorization server did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def withdraw(self, subject: str) -> None:
        """The subject revokes every grant it gave (its refresh and access tokens end)."""
        with self._lock:
            for tokens in (self.refresh, self.access):
                for token in [t for t, g in tokens.items() if g["sub"] == subject]:
                    del tokens[token]

    def hold_revocations(self) -> None:
        """Revocation requests are not answered until :meth:`release_revocations` (30 s at most)."""
        assert self._loop is not None
        self._held = asyncio.Event()

    def release_revocations(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(held.set)

    def revocations_of(self, tokens: Collection[str], count: int | None = None,
                       timeout: float = 15.0) -> list[Revocation]:
        """The revocation requests for ``tokens``, in arrival order, once ``count`` of them (default:
        one per token) arrived, answered or not. Those of other tokens are left out: another
        test's tokens, revoked in the background, may arrive meanwhile."""
        wanted = len(tokens) if count is None else count

        def mine() -> list[Revocation]:
            return [r for r in self.revocations if r.token in tokens]

        with self._revocations_changed:
            if not self._revocations_changed.wait_for(lambda: len(mine()) >= wanted, timeout):
                raise AssertionError(f"the authorization server got {len(mine())} revocation request(s) "
                                     f"for these tokens within {timeout} s, expected {wanted}")
            return mine()

    def tokens_of(self, subject: str) -> set[str]:
        """The subject's refresh and access tokens still valid here."""
        with self._lock:
            return {t for tokens in (self.refresh, self.access) for t, g in tokens.items()
                    if g["sub"] == subject}

    def subject_of(self, refresh_token: str) -> str | None:
        with self._lock:
            grant = self.refresh.get(refresh_token)
        return None if grant is None else str(grant["sub"])

    # -- endpoints --------------------------------------------------------------------------

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.hits[request.path] += 1
        response: web.StreamResponse = await handler(request)
        return response

    async def _protected(self, request: web.Request) -> web.Response:
        metadata = f"{self.issuer}/.well-known/oauth-protected-resource/mcp"
        header = f'Bearer resource_metadata="{metadata}"' if self.www_authenticate else "Bearer"
        return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": header})

    async def _resource_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"resource": self.prm_resource or f"{self.issuer}/mcp",
                                  "authorization_servers": [self.issuer], "scopes_supported": ["notes"]})

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not self.registration or not body.get("redirect_uris"):
            return web.json_response({"error": "invalid_client_metadata"}, status=400)
        client_id = "registered-" + secrets.token_hex(4)
        with self._lock:
            self._registered.add(client_id)
        return web.json_response({"client_id": client_id, **body}, status=201)

    async def _metadata(self, request: web.Request) -> web.Response:
        extra = {"registration_endpoint": f"{self.issuer}/register"} if self.registration else {}
        return web.json_response({**extra,
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "introspection_endpoint": f"{self.issuer}/introspect",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": self.pkce_methods,
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        problems = [name for name, ok in (
            ("response_type", q.get("response_type") == "code"),
            ("client_id", q.get("client_id") == self.client_id),
            ("code_challenge_method", q.get("code_challenge_method") == "S256"),
            ("code_challenge", len(q.get("code_challenge", "")) == 43),
            ("state", bool(q.get("state"))),
            ("redirect_uri", q.get("redirect_uri", "").startswith("http")),
            ("resource", self.resource is None or q.get("resource") == self.resource),
        ) if not ok]
        if problems:
            return web.json_response({"error": "invalid_request", "error_description": problems}, status=400)
        redirect = q["redirect_uri"]
        if q.get("deny"):
            raise web.HTTPFound(redirect + "?" + urlencode({"error": "access_denied", "state": q["state"]}))
        subject = q.get("login")
        if not subject:
            return web.Response(text="log in first", status=401)
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = {"sub": subject, "challenge": q["code_challenge"], "redirect_uri": redirect,
                                "resource": q.get("resource"), "scope": q.get("scope", "")}
        raise web.HTTPFound(redirect + "?" + urlencode({"code": code, "state": q["state"]}))

    def _client_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return header == f"Basic {expected}"

    def _issue(self, grant: dict[str, Any]) -> dict[str, Any]:
        access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self.access[access] = {**grant, "exp": int(time.time()) + self.lifetime}
            self.refresh[refresh] = grant
            self.issued += [access, refresh]
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime,
                "refresh_token": refresh, "scope": grant["scope"]}

    def _issued(self, tokens: dict[str, Any]) -> web.Response:
        body = json.dumps(tokens).encode()
        return web.Response(body=b"\xef\xbb\xbf" + body if self.bom else body,
                            content_type="application/json")

    def _refused(self, code: str, status: int) -> web.Response:
        return web.json_response({"error": self.refusal_error or code}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        with self._lock:
            self.grants[grant_type] += 1
        if not self._client_ok(request):
            return self._refused("invalid_client", 401)
        if grant_type == "authorization_code":
            with self._lock:
                code = self.codes.pop(str(form.get("code", "")), None)
            verifier = str(form.get("code_verifier", ""))
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if (code is None or challenge != code["challenge"]
                    or form.get("redirect_uri") != code["redirect_uri"]
                    or form.get("resource") != code["resource"]):
                return self._refused("invalid_grant", 400)
            return self._issued(self._issue({"sub": code["sub"], "resource": code["resource"],
                                             "scope": code["scope"]}))
        if grant_type == "refresh_token":
            with self._lock:
                old = self.refresh.pop(str(form.get("refresh_token", "")), None)  # rotated: used once
                if old is not None:  # the access tokens of the grant end with it
                    for token in [t for t, g in self.access.items() if g["sub"] == old["sub"]]:
                        del self.access[token]
            if old is None:
                return self._refused("invalid_grant", 400)
            return self._issued(self._issue(old))
        return self._refused("unsupported_grant_type", 400)

    async def _introspect(self, request: web.Request) -> web.Response:
        form = await request.post()
        with self._lock:
            grant = self.access.get(str(form.get("token", "")))
        if grant is None or grant["exp"] < time.time():
            return web.json_response({"active": False})
        return web.json_response({"active": True, "sub": grant["sub"], "client_id": self.client_id,
                                  "scope": grant["scope"], "exp": grant["exp"], "aud": grant["resource"]})

    async def _revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        authenticated = self._client_ok(request) or str(form.get("client_id", "")) in self._registered
        with self._revocations_changed:
            self.revocations.append(Revocation(token, str(form.get("token_type_hint", "")), authenticated))
            self._revocations_changed.notify_all()
        held = self._held
        if held is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.wait(), 30)
        if self.revocation_status is not None:
            return self._refused("temporarily_unavailable", self.revocation_status)
        if not authenticated:
            return self._refused("invalid_client", 401)
        with self._lock:
            self.revoked.append(token)
            grant = self.refresh.pop(token, None)
            if grant is not None:
                for access in [t for t, g in self.access.items() if g["sub"] == grant["sub"]]:
                    del self.access[access]
            self.access.pop(token, None)
        return web.Response(status=200)


# -- the OAuth-protected MCP server (a subprocess) ------------------------------------------------


def protected_server(port: int, issuer: str, static_token: str) -> object:
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    resource = f"http://127.0.0.1:{port}/mcp"

    class Introspecting:
        async def verify_token(self, token: str) -> AccessToken | None:
            if token == static_token:
                return AccessToken(token=token, client_id="static", scopes=["notes"], resource=resource,
                                   subject=STATIC_SUBJECT)
            async with httpx.AsyncClient(timeout=5) as client:
                found = (await client.post(f"{issuer}/introspect", data={"token": token})).json()
            if not found.get("active"):
                return None
            return AccessToken(token=token, client_id=found["client_id"], scopes=found["scope"].split(),
                               expires_at=found["exp"], resource=found["aud"], subject=found["sub"])

    server = MCPServer("whoami", token_verifier=Introspecting(), auth=AuthSettings(
        issuer_url=issuer, resource_server_url=resource, required_scopes=["notes"],
        validate_token_resource=True))

    @server.tool(description="Who is calling: the subject of the bearer token")
    def whoami() -> str:
        token = get_access_token()
        return token.subject if token is not None and token.subject else "nobody"

    return server


def main() -> None:
    port, issuer, static_token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    protected_server(port, issuer, static_token).run(  # type: ignore[attr-defined]
        "streamable-http", host="127.0.0.1", port=port)


@dataclass
class ProtectedMcp:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def start_protected_mcp(issuer: str, static_token: str) -> ProtectedMcp:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_oauth_servers", str(port), issuer, static_token],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    process = Process(proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=1) as client:
                client.get(f"http://127.0.0.1:{port}/")
            return ProtectedMcp(port, process)
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"the protected MCP server exited:\n{process.output}") from None
            time.sleep(0.1)
    raise TimeoutError(f"the protected MCP server did not start:\n{process.output}")


if __name__ == "__main__":
    main()
