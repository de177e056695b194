"""MCP client sessions (docs/mcp.md, "Server-initiated requests"), through a gateway run in
process and called over HTTP, embedded (its stores on a manual clock, so a session's expiry is
moved rather than waited for) and on PostgreSQL + Redis (the session's Redis entry read and set):

- only the owner's requests keep a session alive: another key presenting its id is answered 404
  and leaves its expiry as it was;
- in a cluster a request presenting a session looks it up in one Redis round trip, what it
  declared included (counted on the request path's pipelined connection, as
  tests/stores/test_request_round_trips.py does, and on redis-py's connections);
- embedded, sessions are kept apart from OAuth states: a burst of OAuth sign-ins evicts no live
  session;
- while Redis cannot be reached (a Redis of the test's own, shut down mid-test), clients are
  served without a session rather than failed;
- a key holds at most ``mcp.max_client_sessions_per_key`` sessions: its next ``initialize`` is
  refused (-32029 ``mcp_too_many_sessions``), other keys' are not, and a session ended or expired
  frees its place while one kept in use keeps its own."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

import switchboard.gateway
from switchboard.app import SwitchboardApp
from switchboard.gateway import Gateway
from switchboard.settings.loader import validate
from switchboard.stores import open_stores
from switchboard.stores.clock import ManualClock
from switchboard.stores.redis.wire import Then, Wire
from tests.mcp_servers import McpUpstream, start_mcp_server
from tests.servers import MASTER_KEY, SECRET_KEY, UPSTREAM_KEY, Mock, openai_config
from tests.services import RedisServer, start_redis

pytestmark = pytest.mark.asyncio(loop_scope="session")

SESSION_SECONDS = 3600  # mcp.client_session_seconds (its default)
ENTRY = "sb:cache:mcp:client-session:"  # a session's Redis key, before its id
PER_KEY = 3  # mcp.max_client_sessions_per_key
OAUTH_STATES = 10_000  # embedded, the bound of the cache of OAuth states (docs/mcp.md)
# A client declaring elicitation: given a session.
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
                         "clientInfo": {"name": "t", "version": "1"}}}


@pytest.fixture(scope="module")
def asker() -> Iterator[McpUpstream]:
    server = start_mcp_server("asker")
    yield server
    server.process.stop()


@dataclass
class World:
    gateway: Gateway
    http: httpx.AsyncClient
    clock: ManualClock | None = None  # embedded: the stores' clock
    redis: Redis | None = None  # cluster
    sent: list[bytes] = field(default_factory=list)  # everything written to Redis

    async def key(self) -> str:
        resp = await self.http.post("/admin/v1/keys", json={"models": ["*"]},
                                    headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    async def initialize(self, key: str) -> str:
        resp = await self.http.post("/mcp", headers=headers(key), json=INITIALIZE)
        assert resp.status_code == 200, resp.text
        return resp.headers["mcp-session-id"]

    async def ping(self, key: str, sid: str, rid: int = 1) -> httpx.Response:
        return await self.http.post("/mcp", headers=headers(key, sid),
                                    json={"jsonrpc": "2.0", "id": rid, "method": "ping"})

    def round_trips(self, sid: str, since: int) -> int:
        """Writes to Redis naming the session since ``since`` (each one round trip)."""
        return sum(1 for payload in self.sent[since:] if (ENTRY + sid).encode() in payload)


def headers(key: str, session: str | None = None) -> dict[str, str]:
    out = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    if session is not None:
        out["Mcp-Session-Id"] = session
    return out


def not_found(resp: httpx.Response) -> None:
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["data"]["code"] == "mcp_session_not_found"


def _joined(command: bytes | str | Iterable[bytes]) -> bytes:
    if isinstance(command, str):
        return command.encode()
    if isinstance(command, bytes):
        return command
    return b"".join(bytes(part) for part in command)


@pytest_asyncio.fixture(params=["embedded", "cluster"])
async def world(request: pytest.FixtureRequest, mock_upstream: Mock, asker: McpUpstream, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    config = openai_config(mock_upstream)
    config["auth"]["secret_key"] = SECRET_KEY
    config["mcp_servers"] = [
        {"name": "asker", "url": asker.url, "timeout_seconds": 30},
        # Signs users in with a configured client and endpoints: starting a sign-in asks nothing.
        {"name": "signin", "url": asker.url, "oauth": {
            "client_id": "switchboard", "authorization_url": "https://idp.example/authorize",
            "token_url": "https://idp.example/token"}},
    ]
    # A request to the client nobody answers here ends after a second, the server told.
    config["mcp"] = {"client_session_seconds": SESSION_SECONDS, "client_request_timeout_seconds": 1,
                     "max_client_sessions_per_key": PER_KEY}
    sent: list[bytes] = []
    clock: ManualClock | None = None
    if request.param == "cluster":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": request.getfixturevalue("migrated_database_url")}
        config["redis"] = {"url": redis_server.url}
        call, post, send = Wire.call, Wire.post, AbstractConnection.send_packed_command

        async def called(self: Wire, payload: bytes, count: int) -> list[Any]:
            sent.append(payload)
            return await call(self, payload, count)

        def posted(self: Wire, payload: bytes, count: int, then: Then, arg: Any) -> None:
            sent.append(payload)
            post(self, payload, count, then, arg)

        async def sent_packed(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
            sent.append(_joined(command))
            await send(self, command, check_health)

        monkeypatch.setattr(Wire, "call", called)
        monkeypatch.setattr(Wire, "post", posted)
        monkeypatch.setattr(AbstractConnection, "send_packed_command", sent_packed)
    else:
        clock = ManualClock()
        monkeypatch.setattr(switchboard.gateway, "open_stores", functools.partial(open_stores, clock=clock))
    async with serving(config) as (gateway, http):
        if request.param == "embedded":
            yield World(gateway, http, clock=clock, sent=sent)
            return
        redis = Redis.from_url(config["redis"]["url"])
        try:
            yield World(gateway, http, redis=redis, sent=sent)
        finally:
            await redis.aclose()


@contextlib.asynccontextmanager
async def serving(config: dict[str, Any]) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """The gateway of ``config``, started in process, and a client calling it."""
    env = {**os.environ, "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY}
    settings = validate(config, "test", env=env)
    gateway = Gateway(settings)
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=SwitchboardApp(settings, gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as http:
            yield gateway, http
    finally:
        await gateway.close()


async def test_another_keys_requests_do_not_keep_a_session_alive(world: World) -> None:
    owner, stranger = await world.key(), await world.key()
    sid = await world.initialize(owner)
    if world.clock is not None:
        world.clock.advance(SESSION_SECONDS - 600)  # the owner idle for 50 minutes
        for rid in range(3):  # another key presenting the id meanwhile: 404, nothing extended
            not_found(await world.ping(stranger, sid, rid))
        world.clock.advance(601)  # an hour and a second since the owner's last request
        not_found(await world.ping(owner, sid))  # expired on time
        return
    assert world.redis is not None
    entry = ENTRY + sid
    await world.redis.pexpire(entry, 5000)  # as if the owner had been idle for 59 minutes 55
    for rid in range(3):
        not_found(await world.ping(stranger, sid, rid))
    assert 0 < await world.redis.pttl(entry) <= 5000  # still expires on time
    # The owner's own request gives it its hour again.
    assert (await world.ping(owner, sid)).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert await world.redis.pttl(entry) > (SESSION_SECONDS - 10) * 1000


async def test_a_request_with_a_session_looks_it_up_once(world: World) -> None:
    """A tool call whose server asks the client (elicitation): the session's capabilities come
    from the request's own lookup, in a cluster one round trip for the whole request."""
    key = await world.key()
    sid = await world.initialize(key)
    assert (await world.ping(key, sid)).status_code == 200  # the lookup's script loaded
    since = len(world.sent)
    greet = {"name": "asker__greet", "arguments": {}}
    resp = await world.http.post("/mcp", headers=headers(key, sid),
                                 json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": greet})
    assert resp.status_code == 200, resp.text
    messages = [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
    # The server's request passed to the client (its capability read from the one lookup); the
    # client does not answer here, so the call's reply follows once the wait is over.
    assert messages[0]["method"] == "elicitation/create" and messages[0]["id"].startswith("sb-")
    assert messages[-1]["id"] == 7
    if world.redis is not None:
        assert world.round_trips(sid, since) == 1


async def test_a_burst_of_oauth_sign_ins_evicts_no_session(world: World) -> None:
    """More OAuth sign-ins started than the embedded cache of their states holds (each keeps a
    state until its callback): the live session is still served, its client not sent to
    initialize again."""
    key = await world.key()
    sid = await world.initialize(key)
    oauth = world.gateway.mcp_auth.oauth
    assert oauth is not None
    server = next(s for s in world.gateway.settings.mcp_servers if s.name == "signin")
    for n in range(OAUTH_STATES + 1):
        await oauth.authorize_url(server, "default", f"user-{n}", "http://gateway/mcp/oauth/callback",
                                  browser=f"browser-{n}")
    assert (await world.ping(key, sid)).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_clients_are_served_without_a_session_while_redis_is_down(
    mock_upstream: Mock, migrated_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    redis = start_redis()  # this test's own: shut down while the gateway runs
    config = openai_config(mock_upstream)
    config["database"] = {"url": migrated_database_url}
    config["redis"] = {"url": redis.url}
    try:
        async with serving(config) as (gateway, http):
            world = World(gateway, http)
            try:
                sid = await world.initialize(MASTER_KEY)
                redis.shut_down_keeping_data()
                # A new client: initialized without a session (a server's request to it is then
                # refused, as to a client that declared nothing), not an internal error.
                resp = await http.post("/mcp", headers=headers(MASTER_KEY), json=INITIALIZE)
                assert resp.status_code == 200, resp.text
                assert resp.json()["result"]["serverInfo"], resp.text
                assert "mcp-session-id" not in resp.headers
                # A client of a session the gateway cannot look up: served, and its end accepted.
                assert (await world.ping(MASTER_KEY, sid)).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
                resp = await http.delete("/mcp", headers=headers(MASTER_KEY, sid))
                assert resp.status_code == 204, resp.text
            finally:
                if redis.proc.poll() is not None:  # back for the gateway's shutdown
                    redis.restart()
    finally:
        redis.stop()


async def test_a_key_holds_at_most_its_number_of_sessions(world: World) -> None:
    key, other = await world.key(), await world.key()
    sids = [await world.initialize(key) for _ in range(PER_KEY)]

    async def refused() -> None:
        resp = await world.http.post("/mcp", headers=headers(key), json=INITIALIZE)
        assert resp.status_code == 200, resp.text  # a JSON-RPC error, as the rate limits' are
        assert "mcp-session-id" not in resp.headers
        error = resp.json()["error"]
        assert error["code"] == -32029, error
        assert error["data"]["code"] == "mcp_too_many_sessions" and error["data"]["status"] == 429
        assert "mcp.max_client_sessions_per_key" in error["message"]

    await refused()
    # Another key is not held back by this one, and the key's own sessions all live on.
    await world.initialize(other)
    for sid in sids:
        assert (await world.ping(key, sid)).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    # A session ended frees its place: one more, no more.
    assert (await world.http.delete("/mcp", headers=headers(key, sids.pop()))).status_code == 204
    sids.append(await world.initialize(key))
    await refused()
    kept = sids[0]
    if world.clock is not None:
        world.clock.advance(SESSION_SECONDS - 600)
        assert (await world.ping(key, kept)).status_code == 200  # kept in use
        world.clock.advance(601)  # the others expired
    else:
        assert world.redis is not None
        # The count of the key's sessions lives as long as the session kept in use: its TTL
        # (shortened here, as if it had been set long ago) is extended by the session's lookup.
        count = [name async for name in world.redis.scan_iter(match="sb:cache:mcp:client-sessions-of:*")
                 if kept.encode() in b"".join(await world.redis.smembers(name))]
        assert len(count) == 1
        await world.redis.pexpire(count[0], 5000)
        assert (await world.ping(key, kept)).status_code == 200
        assert await world.redis.pttl(count[0]) > (SESSION_SECONDS - 10) * 1000
        await world.redis.delete(*(ENTRY + sid for sid in sids[1:]))  # the others expired
    # The expired ones' places are free again; the one in use still holds its own.
    for _ in range(PER_KEY - 1):
        await world.initialize(key)
    await refused()
    assert (await world.ping(key, kept)).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
