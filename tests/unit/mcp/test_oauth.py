"""Per-user OAuth pieces (mcp/oauth.py, mcp/credentials.py) against the test authorization
server (tests/mcp_oauth_servers.py), which also plays a protected MCP server at ``/mcp``:
discovery with and without the 401's ``resource_metadata``, refusals (another resource's
metadata, no S256), configured endpoints (no discovery), dynamic client registration, the state
used once, and the authorize links' tickets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal
from switchboard.crypto.keyring import Keyring
from switchboard.errors import InvalidRequest
from switchboard.mcp.credentials import GatewayCredentials, Tickets
from switchboard.mcp.interfaces import AuthorizationRequired
from switchboard.mcp.oauth import OAuthClient, OAuthFailed, TokenSet
from switchboard.mcp.revocation import CONCURRENCY, GIVE_UP, Revocation, RevocationFailed, Revoker
from switchboard.stores.clock import ManualClock
from switchboard.stores.memory.cache import MemoryCache
from switchboard.stores.memory.feed import MemoryFeed
from switchboard.stores.protocols import McpTokenRecord
from switchboard.upstream.egress import Egress
from tests.mcp_oauth_servers import AuthorizationServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEYRING = Keyring.from_secrets("a server secret for the oauth unit tests")
REDIRECT = "http://gateway.example/mcp/oauth/callback"


@pytest.fixture(scope="module")
def auth() -> Iterator[AuthorizationServer]:
    server = AuthorizationServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def defaults(auth: AuthorizationServer) -> None:
    auth.pkce_methods, auth.registration = ["S256"], False
    auth.www_authenticate, auth.prm_resource = True, None
    auth.bom = False
    auth.hits.clear()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[OAuthClient]:
    c = OAuthClient(McpConfig(), store=None, cache=MemoryCache(ManualClock()), feed=MemoryFeed(),  # type: ignore[arg-type]
                    keyring=lambda: KEYRING)
    await c.start()
    yield c
    await c.close()


def server(auth: AuthorizationServer, **oauth: Any) -> McpServerConfig:
    return McpServerConfig.model_validate({"name": "wiki", "url": f"{auth.issuer}/mcp", "oauth": oauth})


async def test_discovery_from_the_401_then_the_authorization_servers_metadata(
        auth: AuthorizationServer, client: OAuthClient) -> None:
    found = await client.endpoints(server(auth, client_id="c"))
    assert (found.authorization, found.token, found.resource, found.scopes, found.revocation) == (
        f"{auth.issuer}/authorize", f"{auth.issuer}/token", f"{auth.issuer}/mcp", ("notes",),
        f"{auth.issuer}/revoke")
    assert auth.hits["/mcp"] == 1 and auth.hits["/.well-known/oauth-protected-resource/mcp"] == 1
    await client.endpoints(server(auth, client_id="c"))  # kept: no second discovery
    assert auth.hits["/mcp"] == 1


async def test_discovery_falls_back_to_the_well_known_location(auth: AuthorizationServer,
                                                               client: OAuthClient) -> None:
    auth.www_authenticate = False
    found = await client.endpoints(server(auth, client_id="c", scopes=["wiki.read"]))
    assert found.token == f"{auth.issuer}/token" and found.scopes == ("wiki.read",)  # configured scopes win


@pytest.mark.parametrize(("setting", "message"), [
    ({"prm_resource": "https://elsewhere.example/mcp"}, "another resource"),
    ({"pkce_methods": ["plain"]}, "PKCE S256"),
    ({"pkce_methods": []}, "PKCE S256"),
])
async def test_discovery_refuses_metadata_it_cannot_trust(auth: AuthorizationServer, client: OAuthClient,
                                                          setting: dict[str, Any], message: str) -> None:
    for name, value in setting.items():
        setattr(auth, name, value)
    with pytest.raises(OAuthFailed) as failed:
        await client.endpoints(server(auth, client_id="c"))
    assert message in failed.value.message


async def test_a_tenants_server_is_discovered_on_public_addresses_only(auth: AuthorizationServer) -> None:
    """The requests made for a tenant's stored server follow its egress rules: the test
    authorization server is on this machine, so discovery reaches nothing there."""
    guarded = OAuthClient(McpConfig(), store=None, cache=MemoryCache(ManualClock()),  # type: ignore[arg-type]
                          feed=MemoryFeed(), keyring=lambda: KEYRING, egress=lambda server: Egress())
    await guarded.start()
    try:
        with pytest.raises(OAuthFailed) as failed:
            await guarded.endpoints(server(auth, client_id="c"))
        assert "no protected-resource metadata" in failed.value.message
        assert not auth.hits  # refused before anything was sent
        with pytest.raises(OAuthFailed) as refused:
            await guarded._request("GET", f"{auth.issuer}/.well-known/oauth-authorization-server",
                                   egress=Egress())
        message = refused.value.message
        assert "may not be reached" in message and "egress.allowed_hosts" in message
    finally:
        await guarded.close()


async def test_configured_endpoints_need_no_discovery(auth: AuthorizationServer, client: OAuthClient) -> None:
    config = server(auth, client_id="c", authorization_url="https://as.example/auth",
                    token_url="https://as.example/token")
    url = await client.authorize_url(config, "acme", "alice", REDIRECT, browser="b")
    assert url.startswith("https://as.example/auth?") and not auth.hits
    query = parse_qs(urlsplit(url).query)
    assert (query["client_id"], query["redirect_uri"], query["resource"], query["code_challenge_method"]) == (
        ["c"], [REDIRECT], [config.url], ["S256"])


async def test_dynamic_client_registration_when_no_client_id(auth: AuthorizationServer,
                                                             client: OAuthClient) -> None:
    with pytest.raises(OAuthFailed) as failed:
        await client.authorize_url(server(auth), "acme", "alice", REDIRECT, browser="b")
    assert "needs an oauth.client_id" in failed.value.message
    auth.registration = True
    client._discovered.clear()
    first = parse_qs(urlsplit(await client.authorize_url(server(auth), "acme", "alice", REDIRECT,
                                                         browser="b")).query)
    again = parse_qs(urlsplit(await client.authorize_url(server(auth), "acme", "bob", REDIRECT,
                                                         browser="b")).query)
    assert first["client_id"][0].startswith("registered-") and again["client_id"] == first["client_id"]
    assert auth.hits["/register"] == 1  # registered once per process


async def test_a_state_is_used_once_and_bound_to_its_user(auth: AuthorizationServer,
                                                          client: OAuthClient) -> None:
    url = await client.authorize_url(server(auth, client_id="c"), "acme", "alice", REDIRECT, browser="b")
    state = parse_qs(urlsplit(url).query)["state"][0]
    pending = await client.pending(state)
    kept = [pending[k] for k in ("tenant", "user", "server", "redirect_uri", "browser")]
    assert kept == ["acme", "alice", "wiki", REDIRECT, "b"]
    for bad in (state, "", "x" * 600, "made-up"):
        with pytest.raises(InvalidRequest) as refused:
            await client.pending(bad)
        assert refused.value.code == "invalid_state"


async def test_tokens_after_a_byte_order_mark_are_taken(auth: AuthorizationServer,
                                                        client: OAuthClient) -> None:
    """A token endpoint that writes its JSON after a UTF-8 BOM (RFC 8259 lets a reader ignore
    it) is understood, not taken for a refusal."""
    auth.bom = True
    with auth._lock:
        auth.refresh["rt-bom"] = {"sub": "alice", "resource": f"{auth.issuer}/mcp", "scope": "notes"}
    tokens = await client._token_request(server(auth, client_id=auth.client_id), f"{auth.issuer}/token",
                                         {"grant_type": "refresh_token", "refresh_token": "rt-bom"},
                                         auth.client_id, auth.client_secret, None)
    assert tokens["access_token"] in auth.tokens_of("alice") and tokens["token_type"] == "Bearer"
    assert auth.grants["refresh_token"] >= 1


async def test_tickets_open_for_their_server_only_and_expire() -> None:
    tickets = Tickets(lambda: KEYRING, 60)
    ticket = tickets.issue("acme", "alice", "wiki", "sk-sb-abcd")
    opened = tickets.open(ticket or "", "wiki")
    assert opened is not None
    assert (opened.tenant, opened.user, opened.key_prefix) == ("acme", "alice", "sk-sb-abcd")
    again = tickets.open(tickets.issue("acme", "alice", "wiki") or "", "wiki")
    assert again is not None and again.nonce != opened.nonce  # each link is spent on its own
    assert tickets.open(ticket, "other") is None
    assert tickets.open(ticket[:-2] + "AA", "wiki") is None
    expired = Tickets(lambda: KEYRING, -1).issue("acme", "alice", "wiki")
    assert expired is not None and tickets.open(expired, "wiki") is None
    assert Tickets(lambda: None, 60).issue("acme", "alice", "wiki") is None  # no server secret


async def test_credentials_ask_for_authorization_without_a_token(auth: AuthorizationServer) -> None:
    credentials = GatewayCredentials(lambda: None, Tickets(lambda: KEYRING, 60), "https://gw.example")
    static = McpServerConfig.model_validate({"name": "s", "url": "https://s.example/mcp",
                                             "headers": {"X-Api-Key": "k"}})
    assert await credentials.headers(static, None) == {"X-Api-Key": "k"}
    alice = Principal(id="key_1", role="developer", key_id="key_1", tenant_id="acme", user_id="alice")
    with pytest.raises(AuthorizationRequired) as needed:
        await credentials.headers(server(auth, client_id="c"), alice)
    link = needed.value.authorize_url
    assert link.startswith("https://gw.example/mcp/oauth/wiki/authorize?ticket=")
    assert (needed.value.status, needed.value.code) == (403, "mcp_authorization_required")
    opened = Tickets(lambda: KEYRING, 60).open(link.split("ticket=")[1], "wiki")
    assert opened is not None and (opened.tenant, opened.user) == ("acme", "alice")


class _TokenRows:
    """The token half of an McpStore, in memory."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], McpTokenRecord] = {}

    async def get_token(self, tenant: str, user: str, server: str) -> McpTokenRecord | None:
        return self.rows.get((tenant, user, server))

    async def put_token(self, record: McpTokenRecord) -> None:
        self.rows[(record.tenant_id, record.user_id, record.server)] = record

    async def delete_token(self, tenant: str, user: str, server: str) -> bool:
        return self.rows.pop((tenant, user, server), None) is not None


async def test_tokens_issued_for_a_servers_old_url_or_client_are_never_sent() -> None:
    """A server whose configuration changed (its URL, its client, its token endpoint: e.g. the
    YAML edited between two starts) does not get the tokens issued for the old one."""
    store = _TokenRows()
    c = OAuthClient(McpConfig(), store=store, cache=MemoryCache(ManualClock()), feed=MemoryFeed(),  # type: ignore[arg-type]
                    keyring=lambda: KEYRING)
    await c.start()

    def wiki(url: str = "https://wiki.example/mcp", client_id: str = "c",
             token_url: str = "https://as.example/token") -> McpServerConfig:
        return McpServerConfig.model_validate({"name": "wiki", "url": url, "oauth": {
            "client_id": client_id, "authorization_url": "https://as.example/auth", "token_url": token_url}})

    try:
        for changed in (wiki(url="https://elsewhere.example/mcp"), wiki(client_id="d"),
                        wiki(token_url="https://other-as.example/token")):
            issued = TokenSet("at-1", None, None, "https://as.example/token", "c", "https://wiki.example/mcp/")
            await c._save("acme", "alice", "wiki", issued)
            assert await c.access_token(wiki(), "acme", "alice") == "at-1"  # the same resource
            assert await c.access_token(changed, "acme", "alice") is None
            assert store.rows == {}  # forgotten: the user authorizes again
    finally:
        await c.close()


async def test_a_ticket_is_spent_once(client: OAuthClient) -> None:
    assert not await client.ticket_used("n1")
    assert await client.spend_ticket("n1", time.time() + 60)
    assert await client.ticket_used("n1") and not await client.spend_ticket("n1", time.time() + 60)
    assert await client.spend_ticket("n2", time.time() + 60)  # another link


# -- revocation (RFC 7009), in the background -------------------------------------------------------


def _grant(auth: AuthorizationServer, n: int, egress: Egress | None = None) -> Revocation:
    return Revocation(f"{auth.issuer}/revoke", auth.client_id, auth.client_secret, ("client_secret_basic",),
                      egress, ((f"rt-{n}", "refresh_token"), (f"at-{n}", "access_token")))


async def test_a_revocation_is_bounded_by_the_oauth_timeout(auth: AuthorizationServer) -> None:
    c = OAuthClient(McpConfig(oauth_timeout_seconds=0.3), store=None,  # type: ignore[arg-type]
                    cache=MemoryCache(ManualClock()), feed=MemoryFeed(), keyring=lambda: KEYRING)
    await c.start()
    auth.hold_revocations()
    try:
        started = time.monotonic()
        with pytest.raises(RevocationFailed) as failed:
            await c._revoke(_grant(auth, 1), "rt-1", "refresh_token")
        assert time.monotonic() - started < 2
        assert "did not answer" in str(failed.value) and "rt-1" not in str(failed.value)
    finally:
        auth.release_revocations()
        await c.close()


async def test_a_revocation_follows_the_servers_egress_rules(auth: AuthorizationServer,
                                                             client: OAuthClient) -> None:
    with pytest.raises(RevocationFailed) as refused:
        await client._revoke(_grant(auth, 2, Egress()), "rt-2", "refresh_token")
    assert "may not be reached" in str(refused.value)
    assert not auth.hits  # refused before anything was sent


async def test_a_batch_the_authorization_server_fails_is_given_up_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []

    async def down(revocation: Revocation, token: str, hint: str) -> None:
        sent.append(token)
        raise RevocationFailed("https://as.example did not answer (TimeoutError)")

    revoker = Revoker(down)
    auth = AuthorizationServer()  # not started: only its issuer's name is used
    with caplog.at_level("WARNING", logger="switchboard.mcp"):
        revoker.revoke("wiki", (_grant(auth, n) for n in range(50)))
        await revoker.wait()
    assert GIVE_UP <= len(sent) < GIVE_UP + CONCURRENCY  # not the 100 tokens, a timeout each
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "'wiki'" in warnings[0] and "the rest were not tried" in warnings[0]
    assert "did not answer (TimeoutError)" in warnings[0]
    assert not any(token in warnings[0] for token in sent)
