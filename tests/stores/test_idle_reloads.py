"""The database reads an idle gateway makes on its own: the periodic reloads of the model table,
of the count of keys without a check, of the OIDC token revocations (with the purge of expired
ones) and of the stored MCP servers, the bound on staleness when a change-feed message is lost.
They follow ``database.cache_seconds`` as the request path's other caches of stored records do
(the MCP servers' never more often than every 30 s), so a longer setting costs fewer reads. A
gateway run in process on the embedded database; the reloads' sleeps end when the test moves a
virtual clock on, so each round is driven by its own trigger and every statement is counted
with an event listener."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.engine import Engine

from switchboard.app import SwitchboardApp
from switchboard.gateway import Gateway
from switchboard.settings.loader import validate
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Mock, openai_config, refused_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

# What each periodic reload reads, by a table its statements name.
READS = {"model table": "FROM providers", "unchecked keys": "FROM api_keys",
         "token revocations": "FROM token_revocations", "MCP servers": "FROM mcp_servers"}
# A JWT issuer (its keys at a port that refuses: only its being configured matters here, as the
# token revocations are then kept).
ISSUER = {"issuer": "https://idp.idle.test", "audience": "switchboard", "discovery": False}


class VirtualClock:
    """Stands for ``asyncio`` in the periodic reloads' modules: their ``sleep`` ends when
    :meth:`advance` moves the clock past it; everything else is asyncio's."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeping: list[tuple[float, asyncio.Future[None]]] = []
        self.asleep = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleeping.append((self.now + seconds, wake))
        self.asleep.set()
        await wake

    async def advance(self, seconds: float) -> None:
        """Wake each sleep due by then in turn, and wait until its loop sleeps again (its round
        done)."""
        end = self.now + seconds
        while due := sorted((s for s in self.sleeping if s[0] <= end), key=lambda s: s[0]):
            self.sleeping.remove(due[0])
            self.now = due[0][0]
            self.asleep.clear()
            due[0][1].set_result(None)
            await asyncio.wait_for(self.asleep.wait(), 60)
        self.now = end


class Idle:
    def __init__(self, clock: VirtualClock, http: httpx.AsyncClient) -> None:
        self.clock = clock
        self.http = http
        self.statements: list[str] = []

    def reads(self) -> dict[str, int]:
        """The statements so far of each periodic reload."""
        return {what: sum(table in s for s in self.statements) for what, table in READS.items()}

    async def answers(self) -> None:
        client = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=MASTER_KEY, max_retries=0,
                                    http_client=self.http)
        reply = await client.chat.completions.create(model="gpt-4o-mini",
                                                     messages=[{"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content


def idle_gateway(cache_seconds: float | None) -> Callable[..., Any]:
    @pytest_asyncio.fixture
    async def fixture(mock_upstream: Mock, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Idle]:
        clock = VirtualClock()
        monkeypatch.setattr("switchboard.stores.reloader.asyncio", clock)
        monkeypatch.setattr("switchboard.mcp.stored.asyncio", clock)
        monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
        config = openai_config(mock_upstream)
        config["auth"]["oidc"] = [{**ISSUER, "jwks_url": f"http://127.0.0.1:{refused_port()}/jwks"}]
        if cache_seconds is not None:
            config["database"] = {"cache_seconds": cache_seconds}
        env = {**os.environ, "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY}
        settings = validate(config, "test", env=env)
        gateway = Gateway(settings)
        await gateway.start()
        transport = httpx.ASGITransport(app=SwitchboardApp(settings, gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as http:
            idle = Idle(clock, http)

            def executed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                idle.statements.append(statement)

            event.listen(Engine, "before_cursor_execute", executed)
            try:
                yield idle
            finally:
                event.remove(Engine, "before_cursor_execute", executed)
                await gateway.close()

    return fixture


default_cache = idle_gateway(None)
hour_cache = idle_gateway(3600)


async def test_an_idle_gateway_rereads_its_stored_tables_every_cache_period_by_default(
    default_cache: Idle,
) -> None:
    await default_cache.clock.advance(60)
    # Every 10 s: the model table (its providers' read is counted), the count of keys without a
    # check and the token revocations (the purge of expired ones and the read: two statements);
    # the MCP servers every 30 s.
    assert default_cache.reads() == {"model table": 6, "unchecked keys": 6, "token revocations": 12,
                                     "MCP servers": 2}
    await default_cache.answers()


async def test_a_longer_cache_period_leaves_an_idle_gateway_without_reads(hour_cache: Idle) -> None:
    await hour_cache.clock.advance(60)
    assert hour_cache.reads() == {"model table": 0, "unchecked keys": 0, "token revocations": 0,
                                  "MCP servers": 0}
    await hour_cache.answers()
    await hour_cache.clock.advance(3600 - 60)
    # One hour: one round of each.
    assert hour_cache.reads() == {"model table": 1, "unchecked keys": 1, "token revocations": 2,
                                  "MCP servers": 1}
    await hour_cache.answers()
