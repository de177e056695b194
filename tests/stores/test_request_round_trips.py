"""Redis round trips of one request in cluster mode (PostgreSQL and Redis), counted on the request
path's pipelined connection (stores/redis/wire.py) of a gateway run in process and called with
the openai SDK: a key with RPM and TPM limits and a budget waits for one round trip before its
upstream call (the limits and the reservation in one script) and makes one after the response
(the token correction and the budget settlement in one pipeline), streaming or not."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from switchboard.app import SwitchboardApp
from switchboard.config.schema import Settings
from switchboard.context import RequestContext, Result
from switchboard.gateway import Gateway
from switchboard.settings.loader import validate
from switchboard.stores.redis.wire import Then, Wire
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, SECRET_KEY, UPSTREAM_KEY, Mock, openai_config
from tests.services import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Sent:
    """The batches written to Redis, and how many had been when each upstream call started."""

    batches: list[bytes] = field(default_factory=list)
    at_upstream: list[int] = field(default_factory=list)


class CountingGateway(Gateway):
    def __init__(self, settings: Settings, sent: Sent) -> None:
        self.sent = sent
        super().__init__(settings)

    def model_terminal(self, operation: str) -> Callable[[RequestContext], Awaitable[Result]]:
        terminal = super().model_terminal(operation)

        def counted(ctx: RequestContext) -> Awaitable[Result]:
            self.sent.at_upstream.append(len(self.sent.batches))
            return terminal(ctx)

        return counted


@dataclass
class Served:
    sent: Sent
    http: httpx.AsyncClient
    redis: Redis

    async def sdk(self, **key: Any) -> openai.AsyncOpenAI:
        resp = await self.http.post("/admin/v1/keys", json={"models": ["*"], **key},
                                    headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert resp.status_code == 201, resp.text
        return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=resp.json()["key"], max_retries=0,
                                  http_client=self.http)

    async def commands(self) -> dict[str, int]:
        """Redis's calls per command so far (INFO commandstats)."""
        stats = await self.redis.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    async def round_trips(self, call: Callable[[], Awaitable[Any]]) -> tuple[int, int]:
        """(before the upstream call, in all) for one request, its after-response work included
        (the in-process transport returns once the application has finished)."""
        start, upstream = len(self.sent.batches), len(self.sent.at_upstream)
        await call()
        assert len(self.sent.at_upstream) == upstream + 1
        return self.sent.at_upstream[-1] - start, len(self.sent.batches) - start


@pytest_asyncio.fixture
async def served(mock_upstream: Mock, redis_server: RedisServer, migrated_database_url: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    sent = Sent()
    call, post = Wire.call, Wire.post

    async def called(self: Wire, payload: bytes, count: int) -> list[Any]:
        sent.batches.append(payload)
        return await call(self, payload, count)

    def posted(self: Wire, payload: bytes, count: int, then: Then, arg: Any) -> None:
        sent.batches.append(payload)
        post(self, payload, count, then, arg)

    monkeypatch.setattr(Wire, "call", called)
    monkeypatch.setattr(Wire, "post", posted)
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    env = {**os.environ, "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY}
    config = openai_config(mock_upstream)
    config["auth"]["secret_key"] = SECRET_KEY
    config["database"] = {"url": migrated_database_url}
    config["redis"] = {"url": redis_server.url}
    settings = validate(config, "test", env=env)
    gateway = CountingGateway(settings, sent)
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=SwitchboardApp(settings, gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as http:
            redis = Redis.from_url(redis_server.url)
            try:
                yield Served(sent, http, redis)
            finally:
                await redis.aclose()
    finally:
        await gateway.close()


async def test_limits_and_a_budget_wait_for_one_round_trip_before_the_upstream_call(served: Served) -> None:
    sdk = await served.sdk(rpm_limit=1000, tpm_limit=1_000_000, max_budget_usd=100)

    async def chat() -> None:
        reply = await sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("hello"), max_tokens=20)
        assert reply.choices[0].message.content

    async def stream() -> None:
        chunks = await sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("hello"), max_tokens=20,
                                                   stream=True, stream_options={"include_usage": True})
        assert [c async for c in chunks if c.usage is not None]

    await chat()  # connects the wire and loads the budget's counter from the ledger
    assert await served.round_trips(chat) == (1, 2)
    assert await served.round_trips(stream) == (1, 2)
    # Three scripts: the limits and the reservation, then the correction and the settlement.
    before = await served.commands()
    await chat()
    assert (await served.commands())["evalsha"] - before["evalsha"] == 3
    # A budget alone, limits alone: one round trip each way as well.
    for key in ({"max_budget_usd": 100}, {"rpm_limit": 1000, "tpm_limit": 1_000_000}):
        alone = await served.sdk(**key)

        async def one(alone: openai.AsyncOpenAI = alone) -> None:
            await alone.chat.completions.create(model="gpt-4o-mini", messages=ask("hello"), max_tokens=20)

        await one()
        assert await served.round_trips(one) == (1, 2), key
