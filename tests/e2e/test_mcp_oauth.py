"""Per-user OAuth for MCP servers and servers managed at run time, end to end: the official
``mcp`` SDK as the client, an OAuth-protected test MCP server written with it and a small test
authorization server (tests/mcp_oauth_servers.py). Two users of the same server each authorize
through the gateway and call with their own token (the server answers which subject called);
neither can use the other's; tokens are refreshed (one refresh at a time), forgotten and revoked;
bad authorization requests get clear errors; no token reaches the gateway's log. Servers
registered through the admin API serve their tenant's callers only, with their static
credentials. On the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import html
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.tenancy_world import Admin
from tests.mcp_oauth_servers import STATIC_SUBJECT, AuthorizationServer, ProtectedMcp, start_protected_mcp
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import Gateway, start_gateway
from tests.services import Postgres

STATIC_TOKEN = "static-" + uuid.uuid4().hex
PINNED_TENANT = "pinned-" + uuid.uuid4().hex[:6]  # the tenant of the YAML's server with set endpoints
CLIENT_SECRET = "as-client-secret-" + uuid.uuid4().hex
NOTICES = "switchboard/notices"


@dataclass
class World:
    kind: str
    gateway: Gateway
    auth: AuthorizationServer
    mcp: ProtectedMcp
    math: McpUpstream
    database: str = ""  # the cluster's PostgreSQL database (its name)

    @property
    def admin(self) -> Admin:
        return Admin(self.gateway.url)

    def user_key(self, tenant: str = "default") -> tuple[str, str]:
        """A key of a new user of ``tenant``: (the key, the user id)."""
        user = self.admin.ok("POST", "/admin/v1/users", {"tenant": tenant, "name": "someone"}, status=201)
        body = {"tenant": tenant, "user": user["id"], "models": ["*"]}
        key = self.admin.ok("POST", "/admin/v1/keys", body, status=201)
        return str(key["key"]), str(user["id"])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[AuthorizationServer, ProtectedMcp, McpUpstream]]:
    auth = AuthorizationServer(client_secret=CLIENT_SECRET).start()
    mcp = start_protected_mcp(auth.issuer, STATIC_TOKEN)
    auth.resource = mcp.url
    math = start_mcp_server("math")
    yield auth, mcp, math
    math.process.stop()
    mcp.process.stop()
    auth.stop()


def configured_oauth(auth: AuthorizationServer) -> dict[str, Any]:
    """OAuth settings naming every endpoint of the test authorization server, revocation too."""
    return {"client_id": auth.client_id, "client_secret": CLIENT_SECRET,
            "authorization_url": f"{auth.issuer}/authorize", "token_url": f"{auth.issuer}/token",
            "revocation_url": f"{auth.issuer}/revoke"}


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, servers: tuple[AuthorizationServer, ProtectedMcp, McpUpstream],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from _world(request, str(request.param), servers, tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, servers: tuple[AuthorizationServer, ProtectedMcp, McpUpstream],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A cluster world of its own, for what only PostgreSQL shows (a connection cut midway)."""
    yield from _world(request, "cluster", servers, tmp_path_factory)


def _world(request: pytest.FixtureRequest, kind: str,
           servers: tuple[AuthorizationServer, ProtectedMcp, McpUpstream],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    auth, mcp, math = servers
    config: dict[str, Any] = {
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "mcp_servers": [
            {"name": "whoami", "url": mcp.url,
             "oauth": {"client_id": auth.client_id, "client_secret": CLIENT_SECRET}},
            {"name": "plain", "url": math.url},
            # Endpoints configured: no metadata is read, revocation is where it says.
            {"name": "pinned", "url": mcp.url, "tenant": PINNED_TENANT, "oauth": configured_oauth(auth)},
        ],
        # Tokens live 3600 s at the authorization server; refreshed 60 s before they expire.
        "mcp": {"list_timeout_seconds": 5},
        # Tenants' stored servers here are local test servers: the operator lets tenants reach them.
        "egress": {"allowed_hosts": ["127.0.0.1"]},
    }
    database = ""
    if kind == "cluster":
        database = f"mcpoauth_{uuid.uuid4().hex[:8]}"
        config["database"] = {"url": request.getfixturevalue("postgres").create_database(database)}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"mcp-oauth-{kind}"))
    yield World(kind, gw, auth, mcp, math, database)
    gw.process.stop()


@asynccontextmanager
async def session(world: World, key: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(world.gateway.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as client,
    ):
        await client.initialize()
        yield client


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def whoami(world: World, key: str) -> str:
    async with session(world, key) as client:
        result = await client.call_tool("whoami__whoami", {})
        assert not result.is_error, text_of(result)
        return text_of(result)


async def tools_and_notices(world: World, key: str) -> tuple[set[str], list[str]]:
    async with session(world, key) as client:
        listed = await client.list_tools()
        return {t.name for t in listed.tools}, list((listed.meta or {}).get(NOTICES, []))


async def refused(world: World, key: str, name: str = "whoami__whoami") -> MCPError:
    async with session(world, key) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool(name, {})
        return caught.value


_HIDDEN = re.compile(r'<input type="hidden" name="(ticket|csrf)" value="([^"]*)">')


def link_of(world: World, key: str, server: str = "whoami") -> str:
    """The caller's authorization link, as ``GET /mcp/oauth/{server}/authorize`` with its key
    answers it (the same the errors carry)."""
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        start = client.get(f"{world.gateway.url}/mcp/oauth/{server}/authorize",
                           headers={"Authorization": f"Bearer {key}"})
    assert start.status_code == 302, start.text
    assert start.json()["authorize_url"] == start.headers["location"]
    return str(start.headers["location"])


def open_link(world: World, browser: httpx.Client, link: str) -> tuple[httpx.Response, dict[str, str]]:
    """A link opened in a browser: the confirmation page, and its form's fields."""
    page = browser.get(world.gateway.url + link if link.startswith("/") else link)
    assert page.status_code == 200, page.text
    return page, {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}


def confirm(world: World, browser: httpx.Client, key: str | None = None, link: str | None = None,
            server: str = "whoami", host: str | None = None) -> str:
    """The browser's steps at the gateway: the link (the key's, or given), its confirmation page,
    the confirmation. The authorization server's URL the browser is sent to."""
    page, fields = open_link(world, browser, link or link_of(world, str(key), server))
    headers = {"Host": host} if host else {}
    done = browser.post(str(page.url.join("authorize").copy_with(query=None)), data=fields, headers=headers)
    assert done.status_code == 303, done.text
    return str(done.headers["location"])


def authorize(world: World, login: str, key: str | None = None, link: str | None = None,
              server: str = "whoami") -> httpx.Response:
    """The browser's steps: the gateway's authorization link (the key's, or a link from an error
    or a notice) and its confirmation, the authorization server (the user ``login`` logs in and
    consents), back to the gateway's callback."""
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        at_server = confirm(world, browser, key, link, server)
        assert at_server.startswith(world.auth.issuer + "/authorize?")
        consent = browser.get(at_server + "&" + f"login={login}")
        assert consent.status_code == 302, consent.text
        back = consent.headers["location"]
        assert back.startswith(world.gateway.url + "/mcp/oauth/callback?")
        return browser.get(back)


def test_two_users_each_authorize_and_call_with_their_own_token(world: World) -> None:
    alice_key, _ = world.user_key()
    bob_key, _ = world.user_key()

    async def before() -> tuple[list[str], MCPError]:
        names, notices = await tools_and_notices(world, bob_key)
        # Unauthorized: the server is left out of the list with a notice naming the link; the
        # other server is listed as usual.
        assert "plain__add" in names and "whoami__whoami" not in names
        return notices, await refused(world, alice_key)

    notices, error = asyncio.run(before())
    assert "needs your authorization" in error.error.message
    assert "/mcp/oauth/whoami/authorize" in error.error.message
    assert error.error.data["authorize_url"].startswith("/mcp/oauth/whoami/authorize?ticket=")  # type: ignore[index]
    link = next(n for n in notices if n.startswith("whoami:")).split("authorization: ", 1)[1]
    assert link.startswith("/mcp/oauth/whoami/authorize?ticket=")

    # The authorize request: PKCE S256, a state, the resource (RFC 8707), the configured client.
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        query = parse_qs(urlsplit(confirm(world, browser, alice_key)).query)
    assert (query["code_challenge_method"], query["resource"], query["client_id"]) == (
        ["S256"], [world.mcp.url], [world.auth.client_id])
    assert query["redirect_uri"] == [world.gateway.url + "/mcp/oauth/callback"]

    done = authorize(world, "alice@idp", key=alice_key)  # with her key
    assert done.status_code == 200 and "whoami" in done.text
    done = authorize(world, "bob@idp", link=link)  # from the link in the notice, in a browser
    assert done.status_code == 200

    async def after() -> None:
        assert await whoami(world, alice_key) == "alice@idp"
        assert await whoami(world, bob_key) == "bob@idp"
        names, notices = await tools_and_notices(world, alice_key)
        assert "whoami__whoami" in names and not any(n.startswith("whoami:") for n in notices)
        # A third user of the same tenant has no token of theirs: never alice's or bob's.
        carol_key, _ = world.user_key()
        assert "needs your authorization" in (await refused(world, carol_key)).error.message

    asyncio.run(after())
    # No token, code or client secret in the gateway's log.
    for secret in [*world.auth.issued, CLIENT_SECRET]:
        assert secret not in world.gateway.process.output


def test_a_user_forgets_their_authorization_and_the_tokens_are_revoked(world: World) -> None:
    dave_key, _ = world.user_key()
    erin_key, _ = world.user_key()
    assert authorize(world, "dave@idp", key=dave_key).status_code == 200
    assert authorize(world, "erin@idp", key=erin_key).status_code == 200
    assert asyncio.run(whoami(world, dave_key)) == "dave@idp"
    daves, erins = world.auth.tokens_of("dave@idp"), world.auth.tokens_of("erin@idp")
    world.auth.hold_revocations()  # the authorization server is slow to answer: nobody waits for it
    try:
        with httpx.Client(timeout=10) as client:
            forgot = client.delete(f"{world.gateway.url}/mcp/oauth/whoami",
                                   headers={"Authorization": f"Bearer {dave_key}"})
            assert forgot.status_code == 200, forgot.text
            assert forgot.json() == {"object": "mcp_authorization", "server": "whoami", "deleted": True}
            world.auth.revocations_of(daves, count=1)  # asked, not answered yet
            assert "needs your authorization" in asyncio.run(refused(world, dave_key)).error.message
            again = client.delete(f"{world.gateway.url}/mcp/oauth/whoami",
                                  headers={"Authorization": f"Bearer {dave_key}"})
            assert again.json()["deleted"] is False
    finally:
        world.auth.release_revocations()
    # The refresh token, then the access token, revoked with the client's credentials.
    revocations = world.auth.revocations_of(daves)
    assert [r.hint for r in revocations] == ["refresh_token", "access_token"]
    assert all(r.authenticated for r in revocations)
    assert {r.token for r in revocations} == daves
    assert world.auth.tokens_of("dave@idp") == set()
    assert asyncio.run(whoami(world, erin_key)) == "erin@idp"  # another user's is untouched
    # Nothing else: the second unlink had no tokens (another test's may be revoked meanwhile).
    assert len(world.auth.revocations_of(daves | erins, count=0)) == 2


def test_tokens_are_refreshed_before_they_expire_one_refresh_at_a_time(world: World) -> None:
    frank_key, _ = world.user_key()
    world.auth.lifetime = 30  # shorter than the gateway's 60 s margin: due for refresh at once
    try:
        assert authorize(world, "frank@idp", key=frank_key).status_code == 200
    finally:
        world.auth.lifetime = 3600  # the refreshed token is good for an hour
    refreshed = world.auth.grants["refresh_token"]

    async def concurrently() -> list[str]:
        async with session(world, frank_key) as client:
            results = await asyncio.gather(*(client.call_tool("whoami__whoami", {}) for _ in range(5)))
            return [text_of(r) for r in results]

    # Five calls at once: one refresh (the others wait for it and use its token); the old access
    # token ended with the refresh, so the answers prove the new one is sent.
    assert asyncio.run(concurrently()) == ["frank@idp"] * 5
    assert world.auth.grants["refresh_token"] == refreshed + 1
    assert asyncio.run(whoami(world, frank_key)) == "frank@idp"
    assert world.auth.grants["refresh_token"] == refreshed + 1  # fresh: not refreshed again


def test_a_token_whose_lifetime_runs_past_the_calendar_is_kept(world: World) -> None:
    """``expires_in`` of 10**12 seconds (some 31,700 years): the expiry was stored as a date past
    year 9999, which datetime cannot hold, and the callback failed with a 500 after the user had
    consented. A lifetime that long is taken as a token that does not expire in practice."""
    heidi_key, _ = world.user_key()
    world.auth.lifetime = 10**12
    try:
        done = authorize(world, "heidi@idp", key=heidi_key)
    finally:
        world.auth.lifetime = 3600
    assert done.status_code == 200, done.text
    refreshed = world.auth.grants["refresh_token"]
    assert asyncio.run(whoami(world, heidi_key)) == "heidi@idp"
    assert world.auth.grants["refresh_token"] == refreshed  # not due for refresh


def test_a_refresh_the_authorization_server_refuses_asks_the_user_to_authorize_again(world: World) -> None:
    grace_key, _ = world.user_key()
    world.auth.lifetime = 30  # due for refresh at once
    try:
        assert authorize(world, "grace@idp", key=grace_key).status_code == 200
    finally:
        world.auth.lifetime = 3600
    world.auth.withdraw("grace@idp")  # the user revoked the grant at the authorization server
    error = asyncio.run(refused(world, grace_key))
    assert "needs your authorization" in error.error.message
    # Authorizing again works.
    assert authorize(world, "grace@idp", key=grace_key).status_code == 200
    assert asyncio.run(whoami(world, grace_key)) == "grace@idp"
    # A token the MCP server refuses before it is due for refresh (revoked at the authorization
    # server): forgotten, and the user is asked to authorize again, in lists and in calls.
    world.auth.withdraw("grace@idp")
    assert "needs your authorization" in asyncio.run(refused(world, grace_key)).error.message
    names, notices = asyncio.run(tools_and_notices(world, grace_key))
    assert "whoami__whoami" not in names and any(n.startswith("whoami:") for n in notices)
    assert authorize(world, "grace@idp", key=grace_key).status_code == 200
    assert asyncio.run(whoami(world, grace_key)) == "grace@idp"


def test_bad_authorization_requests_get_clear_errors(world: World) -> None:
    key, _ = world.user_key()
    base = world.gateway.url
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        bearer = {"Authorization": f"Bearer {key}"}
        # No key and no ticket; a forged, and another server's ticket.
        assert client.get(f"{base}/mcp/oauth/whoami/authorize").status_code == 401
        forged = client.get(f"{base}/mcp/oauth/whoami/authorize", params={"ticket": "v1.abc.def"})
        assert (forged.status_code, forged.json()["error"]["code"]) == (401, "invalid_ticket")
        # Unknown server, a server without OAuth, another path shape, a wrong method.
        unknown = client.get(f"{base}/mcp/oauth/nope/authorize", headers=bearer)
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "mcp_server_not_found")
        plain = client.get(f"{base}/mcp/oauth/plain/authorize", headers=bearer)
        assert (plain.status_code, plain.json()["error"]["code"]) == (400, "oauth_not_used")
        assert client.get(f"{base}/mcp/oauth/bad..name/authorize", headers=bearer).status_code == 404
        assert client.put(f"{base}/mcp/oauth/whoami/authorize", headers=bearer).status_code == 405
        assert client.post(f"{base}/mcp/oauth/whoami", headers=bearer).status_code == 405
        assert client.delete(f"{base}/mcp/oauth/nope", headers=bearer).status_code == 404
        # A confirmation without a ticket (a key does not stand for one).
        nothing = client.post(f"{base}/mcp/oauth/whoami/authorize", headers=bearer)
        assert (nothing.status_code, nothing.json()["error"]["code"]) == (401, "invalid_ticket")
        # The callback: no state, an unknown state, a state used twice, a denied authorization.
        missing = client.get(f"{base}/mcp/oauth/callback", params={"code": "x"})
        assert (missing.status_code, missing.json()["error"]["code"]) == (400, "invalid_state")
        made_up = client.get(f"{base}/mcp/oauth/callback", params={"code": "x", "state": "made-up"})
        assert made_up.json()["error"]["code"] == "invalid_state"
        consent = client.get(confirm(world, client, key) + "&login=mallory@idp")
        back = consent.headers["location"]
        assert client.get(back).status_code == 200
        replay = client.get(back)
        assert (replay.status_code, replay.json()["error"]["code"]) == (400, "invalid_state")
        denied = client.get(client.get(confirm(world, client, key) + "&deny=1").headers["location"])
        assert (denied.status_code, denied.json()["error"]["code"]) == (400, "authorization_denied")
        # A code the authorization server refuses (its state is genuine).
        state = parse_qs(urlsplit(confirm(world, client, key)).query)["state"][0]
        bad_code = client.get(f"{base}/mcp/oauth/callback", params={"code": "forged", "state": state})
        assert (bad_code.status_code, bad_code.json()["error"]["code"]) == (502, "mcp_oauth_refused")
        huge = client.get(f"{base}/mcp/oauth/callback", params={"state": "s" * 9000})
        assert huge.status_code == 400
        # A flow started under a forged Host sends the code to that host; brought back here
        # from there, it is refused, and nothing is linked to the starter.
        key, _ = world.user_key()  # one with no authorization yet
        started = confirm(world, client, key, host="evil.example")
        assert "redirect_uri=http%3A%2F%2Fevil.example%2Fmcp%2Foauth%2Fcallback" in started
        elsewhere = client.get(started + "&login=victim@idp").headers["location"]
        assert elsewhere.startswith("http://evil.example/mcp/oauth/callback?")
        brought = client.get(f"{base}/mcp/oauth/callback?{urlsplit(elsewhere).query}")
        assert (brought.status_code, brought.json()["error"]["code"]) == (400, "redirect_mismatch")
    assert "needs your authorization" in asyncio.run(refused(world, key)).error.message


def test_stored_servers_serve_their_tenant_only_with_their_static_credentials(world: World) -> None:
    admin = world.admin
    tenant, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    for t in (tenant, other):
        admin.ok("POST", "/admin/v1/tenants", {"id": t, "name": t}, status=201)
    key, _ = world.user_key(tenant)
    other_key, _ = world.user_key(other)
    name = f"svc{uuid.uuid4().hex[:6]}"
    admin.ok("POST", "/admin/v1/mcp/servers", {
        "name": name, "url": world.mcp.url, "tenant": tenant,
        "headers": {"Authorization": f"Bearer {STATIC_TOKEN}"}}, status=201)
    admin.ok("POST", "/admin/v1/mcp/servers", {"name": "calc", "url": world.math.url, "tenant": tenant},
             status=201)

    async def check() -> None:
        names, _ = await tools_and_notices(world, key)
        assert {f"{name}__whoami", "calc__add", "plain__add"} <= names
        async with session(world, key) as client:
            assert text_of(await client.call_tool(f"{name}__whoami", {})) == STATIC_SUBJECT
            assert (await client.call_tool("calc__add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        # Another tenant neither sees nor calls them.
        names, _ = await tools_and_notices(world, other_key)
        assert not any(n.startswith((f"{name}__", "calc__")) for n in names) and "plain__add" in names
        assert "unknown tool" in (await refused(world, other_key, "calc__add")).error.message

    asyncio.run(check())
    # A stored server with per-user OAuth: its sealed client secret authenticates the exchange.
    admin.ok("POST", "/admin/v1/mcp/servers", {
        "name": "wiki", "url": world.mcp.url, "tenant": tenant,
        "oauth": {"client_id": world.auth.client_id, "client_secret": CLIENT_SECRET}}, status=201)
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        consent = browser.get(confirm(world, browser, key, server="wiki") + "&login=tenant-user@idp")
        assert browser.get(consent.headers["location"]).status_code == 200
        # Another tenant has no server of that name.
        theirs = browser.get(f"{world.gateway.url}/mcp/oauth/wiki/authorize",
                             headers={"Authorization": f"Bearer {other_key}"})
        assert theirs.status_code == 404

    async def stored_oauth() -> str:
        async with session(world, key) as client:
            return text_of(await client.call_tool("wiki__whoami", {}))

    assert asyncio.run(stored_oauth()) == "tenant-user@idp"
    # A changed credential is used at once; a removed server is gone at once.
    admin.ok("PATCH", f"/admin/v1/mcp/servers/{name}", {"headers": {"Authorization": "Bearer wrong"}},
             params={"tenant": tenant})
    assert "refused" in asyncio.run(refused(world, key, f"{name}__whoami")).error.message
    admin.ok("DELETE", "/admin/v1/mcp/servers/calc", params={"tenant": tenant})
    names, _ = asyncio.run(tools_and_notices(world, key))
    assert "calc__add" not in names
    assert STATIC_TOKEN not in world.gateway.process.output


def test_a_stored_servers_new_url_or_client_drops_every_users_tokens(world: World) -> None:
    """Tokens are issued for one resource (the server's URL) by one authorization server and
    client: when a tenant admin moves the server or changes its client, every user's tokens for
    it are deleted (audited), never sent to the new URL, and each user authorizes again."""
    admin = world.admin
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant}, status=201)
    key, _ = world.user_key(tenant)
    name = f"moving{uuid.uuid4().hex[:6]}"
    path, scope = f"/admin/v1/mcp/servers/{name}", {"tenant": tenant}
    oauth = {"client_id": world.auth.client_id, "client_secret": CLIENT_SECRET}
    admin.ok("POST", "/admin/v1/mcp/servers", {"name": name, "url": world.mcp.url, "tenant": tenant,
                                               "oauth": oauth}, status=201)

    async def call(tool: str, arguments: dict[str, Any]) -> str:
        async with session(world, key) as client:
            return text_of(await client.call_tool(f"{name}__{tool}", arguments))

    def must_authorize(tool: str, arguments: dict[str, Any]) -> None:
        async def attempt() -> MCPError:
            async with session(world, key) as client:
                with pytest.raises(MCPError) as caught:
                    await client.call_tool(f"{name}__{tool}", arguments)
                return caught.value

        error = asyncio.run(attempt())
        assert error.error.data["code"] == "mcp_authorization_required", error.error  # type: ignore[index]

    def deleted_audits() -> list[dict[str, Any]]:
        found = admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant,
                                                           "action": "mcp_server.tokens_deleted"})
        return list(found["data"])

    assert authorize(world, "mover@idp", key=key, server=name).status_code == 200
    assert asyncio.run(call("whoami", {})) == "mover@idp"
    admin.ok("PATCH", path, {"description": "still the same server"}, params=scope)  # kept
    assert asyncio.run(call("whoami", {})) == "mover@idp" and deleted_audits() == []
    # Moved to another server (one that would accept any bearer token): nothing is sent there.
    # (the client secret given again: stored secrets never follow a server to another origin)
    admin.ok("PATCH", path, {"url": world.math.url, "oauth": oauth}, params=scope)
    must_authorize("add", {"a": 1, "b": 2})
    entry = deleted_audits()[0]
    assert entry["after"] == {"name": name, "tokens_deleted": 1, "reason": "its url changed"}
    # Back where it was: the old token is gone for good; authorizing again works.
    admin.ok("PATCH", path, {"url": world.mcp.url, "oauth": oauth}, params=scope)
    must_authorize("whoami", {})
    assert len(deleted_audits()) == 1  # no user had a token any more: nothing deleted, no entry
    assert authorize(world, "mover@idp", key=key, server=name).status_code == 200
    assert asyncio.run(call("whoami", {})) == "mover@idp"
    # Another client of the authorization server: the tokens go as well.
    admin.ok("PATCH", path, {"oauth": {**oauth, "client_id": "another-client"}}, params=scope)
    must_authorize("whoami", {})
    assert deleted_audits()[0]["after"]["reason"] == "its oauth settings changed"


def test_a_move_cut_off_midway_keeps_the_server_where_its_users_tokens_were_issued(
    cluster: World, postgres: Postgres
) -> None:
    """A stored server moved to another URL while a user's token row is busy, and the connection
    doing it is cut (a failover, an administrator's pg_terminate_backend): 503, and the server
    is still where the token was issued, the token with it; the retry moves it and deletes the
    token. Were the server moved alone, the retry would find nothing to change, and the token
    would be sent to the new URL."""
    world, admin = cluster, cluster.admin
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant}, status=201)
    key, _ = world.user_key(tenant)
    name = f"cut{uuid.uuid4().hex[:6]}"
    path, scope, oauth = f"/admin/v1/mcp/servers/{name}", {"tenant": tenant}, stored_oauth(world)
    admin.ok("POST", "/admin/v1/mcp/servers", {"name": name, "url": world.mcp.url, "tenant": tenant,
                                               "oauth": oauth}, status=201)

    async def whoami() -> str:
        async with session(world, key) as client:
            return text_of(await client.call_tool(f"{name}__whoami", {}))

    assert authorize(world, "stayer@idp", key=key, server=name).status_code == 200
    assert asyncio.run(whoami()) == "stayer@idp"
    busy = f"SELECT 1 FROM mcp_oauth_tokens WHERE server = '{name}' FOR UPDATE"
    holder = postgres.hold(world.database, busy)
    try:
        answers: list[httpx.Response] = []
        moving = threading.Thread(target=lambda: answers.append(
            admin.call("PATCH", path, {"url": world.math.url, "oauth": oauth}, params=scope)))
        moving.start()
        postgres.cut_waiting(world.database)
        moving.join(60)
    finally:
        postgres.release(world.database, holder)
    (cut,) = answers
    assert cut.status_code == 503 and cut.json()["error"]["code"] == "store_unavailable", cut.text
    shown = admin.ok("GET", path, params=scope)["url"]  # by its origin only
    assert urlsplit(shown).netloc == urlsplit(world.mcp.url).netloc != urlsplit(world.math.url).netloc
    assert asyncio.run(whoami()) == "stayer@idp"  # where it was issued, still

    admin.ok("PATCH", path, {"url": world.math.url, "oauth": oauth}, params=scope)
    deleted = {"tenant": tenant, "action": "mcp_server.tokens_deleted"}
    audits = admin.ok("GET", "/admin/v1/audit", params=deleted)
    assert [e["after"]["tokens_deleted"] for e in audits["data"]] == [1]

    async def add() -> MCPError:
        async with session(world, key) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool(f"{name}__add", {"a": 1, "b": 2})
            return caught.value

    refused = asyncio.run(add())
    assert refused.error.data["code"] == "mcp_authorization_required", refused.error  # type: ignore[index]


def stored_oauth(world: World) -> dict[str, Any]:
    """The OAuth settings of :func:`stored_oauth_server`, its client secret included (a change
    moving the server to another origin gives it again)."""
    return {"client_id": world.auth.client_id, "client_secret": CLIENT_SECRET}


def stored_oauth_server(world: World, tenant: str) -> str:
    """A stored server (of a new tenant) for the protected MCP server; its name."""
    world.admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant}, status=201)
    name = f"rev{uuid.uuid4().hex[:6]}"
    world.admin.ok("POST", "/admin/v1/mcp/servers", {"name": name, "url": world.mcp.url, "tenant": tenant,
                                                     "oauth": stored_oauth(world)}, status=201)
    return name


def test_every_users_tokens_deleted_by_a_server_change_or_removal_are_revoked(world: World) -> None:
    """Tokens a server's new URL or client makes unusable, and those of a removed server, are
    revoked at the authorization server that issued them (its metadata offers revocation), in
    the background: the admin's answer never waits for the authorization server."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    name = stored_oauth_server(world, tenant)
    path, scope = f"/admin/v1/mcp/servers/{name}", {"tenant": tenant}
    users = {f"u{n}-{uuid.uuid4().hex[:4]}@idp": world.user_key(tenant)[0] for n in range(2)}
    for login, key in users.items():
        assert authorize(world, login, key=key, server=name).status_code == 200
    issued = set().union(*(world.auth.tokens_of(login) for login in users))
    assert len(issued) == 4
    world.auth.hold_revocations()
    try:
        started = time.monotonic()
        world.admin.ok("PATCH", path, {"url": world.math.url, "oauth": stored_oauth(world)}, params=scope)
        assert time.monotonic() - started < 5  # answered while the authorization server holds
        world.auth.revocations_of(issued, count=1)
    finally:
        world.auth.release_revocations()
    revocations = world.auth.revocations_of(issued)
    assert {r.token for r in revocations} == issued and all(r.authenticated for r in revocations)
    assert all(world.auth.tokens_of(login) == set() for login in users)
    # Removed: the tokens authorized since are revoked too.
    world.admin.ok("PATCH", path, {"url": world.mcp.url, "oauth": stored_oauth(world)}, params=scope)
    login, key = next(iter(users.items()))
    assert authorize(world, login, key=key, server=name).status_code == 200
    again = world.auth.tokens_of(login)
    world.admin.ok("DELETE", path, params=scope)
    revocations = world.auth.revocations_of(again)
    assert {r.token for r in revocations} == again and world.auth.tokens_of(login) == set()
    # The removal's audit says how many users' tokens went with it, as a change's does.
    entries = world.admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "limit": 10})["data"]
    assert [e["action"] for e in entries[:2]] == ["mcp_server.tokens_deleted", "mcp_server.delete"]
    assert entries[0]["after"] == {"name": name, "tokens_deleted": 1, "reason": "the server was deleted"}


def test_a_change_or_removal_that_deletes_no_token_audits_no_deletion(world: World) -> None:
    """An OAuth server no user has authorized yet: moving it and removing it delete no token, so
    only the change and the removal are audited."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    name = stored_oauth_server(world, tenant)
    path, scope = f"/admin/v1/mcp/servers/{name}", {"tenant": tenant}
    world.admin.ok("PATCH", path, {"url": world.math.url, "oauth": stored_oauth(world)}, params=scope)
    world.admin.ok("DELETE", path, params=scope)
    entries = world.admin.ok("GET", "/admin/v1/audit", params={"tenant": tenant, "limit": 10})["data"]
    servers = [e["action"] for e in entries if e["action"].startswith("mcp_server.")]
    assert servers == ["mcp_server.delete", "mcp_server.update", "mcp_server.create"]


def test_with_configured_endpoints_tokens_are_revoked_at_the_configured_revocation_url(world: World) -> None:
    """``authorization_url`` and ``token_url`` configured: no metadata is read, so the tokens a
    user unlinks (a YAML server) or a removal deletes (a stored one) are revoked at
    ``oauth.revocation_url`` (docs/mcp.md, "Revocation")."""
    created = world.admin.call("POST", "/admin/v1/tenants", {"id": PINNED_TENANT, "name": PINNED_TENANT})
    assert created.status_code in (201, 409), created.text
    key, _ = world.user_key(PINNED_TENANT)
    login = f"pinned-{uuid.uuid4().hex[:6]}@idp"
    assert authorize(world, login, key=key, server="pinned").status_code == 200
    issued = world.auth.tokens_of(login)
    assert len(issued) == 2
    with httpx.Client(timeout=10) as client:
        forgot = client.delete(f"{world.gateway.url}/mcp/oauth/pinned",
                               headers={"Authorization": f"Bearer {key}"})
    assert forgot.status_code == 200 and forgot.json()["deleted"] is True, forgot.text
    revocations = world.auth.revocations_of(issued)
    assert [r.hint for r in revocations] == ["refresh_token", "access_token"]
    assert {r.token for r in revocations} == issued and all(r.authenticated for r in revocations)
    assert world.auth.tokens_of(login) == set()
    # Stored through the admin API: shown in its answers, used when the server is removed.
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    world.admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant}, status=201)
    name = f"pin{uuid.uuid4().hex[:6]}"
    path, scope = f"/admin/v1/mcp/servers/{name}", {"tenant": tenant}
    body = {"name": name, "url": world.mcp.url, "tenant": tenant, "oauth": configured_oauth(world.auth)}
    stored = world.admin.ok("POST", "/admin/v1/mcp/servers", body, status=201)
    revoke_url = f"{world.auth.issuer}/revoke"
    assert stored["oauth"]["revocation_url"] == revoke_url
    pinned = world.admin.ok("GET", "/admin/v1/mcp/servers/pinned", params={"tenant": PINNED_TENANT})
    assert pinned["oauth"]["revocation_url"] == revoke_url
    users = {f"p{n}-{uuid.uuid4().hex[:4]}@idp": world.user_key(tenant)[0] for n in range(2)}
    for login, key in users.items():
        assert authorize(world, login, key=key, server=name).status_code == 200
    issued = set().union(*(world.auth.tokens_of(login) for login in users))
    assert len(issued) == 4
    world.admin.ok("DELETE", path, params=scope)
    revocations = world.auth.revocations_of(issued)
    assert {r.token for r in revocations} == issued and all(r.authenticated for r in revocations)
    assert all(world.auth.tokens_of(login) == set() for login in users)


def test_a_revocation_the_authorization_server_refuses_is_one_warning(world: World) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    name = stored_oauth_server(world, tenant)
    key, _ = world.user_key(tenant)
    assert authorize(world, "refused@idp", key=key, server=name).status_code == 200
    world.auth.revocation_status = 503
    try:
        with httpx.Client(timeout=10) as client:
            forgot = client.delete(f"{world.gateway.url}/mcp/oauth/{name}",
                                   headers={"Authorization": f"Bearer {key}"})
        assert forgot.status_code == 200 and forgot.json()["deleted"] is True, forgot.text
        line = world.gateway.process.wait_for_all("revoking OAuth tokens", f"'{name}'", timeout=15)
    finally:
        world.auth.revocation_status = None
    assert "WARNING" in line and "2 of 2 failed" in line and "HTTP 503" in line, line
    warned = [ln for ln in world.gateway.process.lines if "revoking OAuth tokens" in ln and f"'{name}'" in ln]
    assert len(warned) == 1
    for token in world.auth.issued:  # no token in the warning
        assert token not in line


def test_an_authorization_servers_error_shows_only_as_a_registered_code(world: World) -> None:
    """The ``error`` of an authorization server's refusal (token request, revocation, callback)
    is shown only when it is a registered OAuth code: a server echoing what it was sent there
    (the client secret) has it reach neither the user nor the gateway's log."""
    key, _ = world.user_key()
    base = world.gateway.url
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        state = parse_qs(urlsplit(confirm(world, browser, key)).query)["state"][0]
        plain = browser.get(f"{base}/mcp/oauth/callback", params={"code": "forged", "state": state})
        assert (plain.status_code, plain.json()["error"]["code"]) == (502, "mcp_oauth_refused")
        assert "(invalid_grant)" in plain.json()["error"]["message"]
        world.auth.refusal_error = CLIENT_SECRET
        try:
            state = parse_qs(urlsplit(confirm(world, browser, key)).query)["state"][0]
            echoed = browser.get(f"{base}/mcp/oauth/callback", params={"code": "forged", "state": state})
        finally:
            world.auth.refusal_error = None
        assert (echoed.status_code, echoed.json()["error"]["code"]) == (502, "mcp_oauth_refused")
        assert "(HTTP 400)" in echoed.json()["error"]["message"] and CLIENT_SECRET not in echoed.text
        # A callback carrying free text as its error: not echoed either.
        state = parse_qs(urlsplit(confirm(world, browser, key)).query)["state"][0]
        denied = browser.get(f"{base}/mcp/oauth/callback", params={"error": CLIENT_SECRET, "state": state})
        assert (denied.status_code, denied.json()["error"]["code"]) == (400, "authorization_denied")
        assert CLIENT_SECRET not in denied.text
    # A refused revocation: its warning names the status only.
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    name = stored_oauth_server(world, tenant)
    key, _ = world.user_key(tenant)
    assert authorize(world, "echoed@idp", key=key, server=name).status_code == 200
    world.auth.revocation_status, world.auth.refusal_error = 400, CLIENT_SECRET
    try:
        with httpx.Client(timeout=10) as client:
            forgot = client.delete(f"{base}/mcp/oauth/{name}", headers={"Authorization": f"Bearer {key}"})
        assert forgot.status_code == 200, forgot.text
        line = world.gateway.process.wait_for_all("revoking OAuth tokens", f"'{name}'", timeout=15)
    finally:
        world.auth.revocation_status, world.auth.refusal_error = None, None
    assert "HTTP 400" in line and CLIENT_SECRET not in line, line
    assert CLIENT_SECRET not in world.gateway.process.output


def test_a_link_passed_to_another_user_never_links_their_account(world: World) -> None:
    """Bob sends Alice his authorization link, or the authorization server's URL it led him to
    (docs/mcp.md, "The browser step"): the link's page says it is Bob's connection and starts
    nothing by itself; a confirmation not made on that page in that browser is refused; the
    authorization completes only in the browser that confirmed it; a link is used once."""
    bob_key, bob = world.user_key()
    link = asyncio.run(refused(world, bob_key)).error.data["authorize_url"]  # type: ignore[index]
    bob_prefix = bob_key[:10]
    base = world.gateway.url

    with httpx.Client(timeout=10, follow_redirects=False) as alices_browser:
        page, fields = open_link(world, alices_browser, link)
        # Whose connection it is, to which server; a page that cannot be framed or cached.
        assert bob in page.text and "whoami" in page.text and bob_prefix in page.text
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/mcp/oauth" in cookie
        # The same form posted from elsewhere (another browser, or another site's form in hers,
        # which cannot read the page): refused, and the link is not spent.
        with httpx.Client(timeout=10, follow_redirects=False) as elsewhere:
            forged = elsewhere.post(f"{base}/mcp/oauth/whoami/authorize", data=fields)
            assert (forged.status_code, forged.json()["error"]["code"]) == (403, "invalid_consent")
            _, own_fields = open_link(world, elsewhere, link)  # a page of its own: another cookie
            crossed = alices_browser.post(f"{base}/mcp/oauth/whoami/authorize", data=own_fields)
            assert (crossed.status_code, crossed.json()["error"]["code"]) == (403, "invalid_consent")
        # Alice closes the page: nothing was started, nothing is linked.
    assert "needs your authorization" in asyncio.run(refused(world, bob_key)).error.message

    # Bob confirms in his own browser and sends Alice the authorization server's URL.
    with httpx.Client(timeout=10, follow_redirects=False) as bobs_browser:
        at_server = confirm(world, bobs_browser, link=link)
        # The link is spent: its page and a second confirmation are refused.
        again = bobs_browser.get(base + link)
        assert (again.status_code, again.json()["error"]["code"]) == (401, "invalid_ticket")
        assert "used" in again.json()["error"]["message"]
        replayed = bobs_browser.post(f"{base}/mcp/oauth/whoami/authorize", data=fields)
        assert replayed.json()["error"]["code"] == "invalid_ticket"
    with httpx.Client(timeout=10, follow_redirects=False) as alices_browser:
        back = alices_browser.get(at_server + "&login=alice@idp").headers["location"]
        linked = alices_browser.get(back)  # her login comes back in her browser, not Bob's
        assert (linked.status_code, linked.json()["error"]["code"]) == (400, "browser_mismatch")
    assert "needs your authorization" in asyncio.run(refused(world, bob_key)).error.message

    # Bob completing his own authorization in his own browser works, and says whose it is.
    with httpx.Client(timeout=10, follow_redirects=False) as bobs_browser:
        at_server = confirm(world, bobs_browser, bob_key)
        done = bobs_browser.get(bobs_browser.get(at_server + "&login=bob@idp").headers["location"])
        assert done.status_code == 200 and bob in done.text
    assert asyncio.run(whoami(world, bob_key)) == "bob@idp"
