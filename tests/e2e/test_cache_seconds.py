"""``database.cache_seconds``: how long the request path keeps what it read (keys, limits,
budgets, subscriptions) before reading it again. A change that reaches the database without a
change-feed message (a lost message, another tool's write) is seen once the entry expires: within
the configured time, not the default 10 s. On the embedded default (SQLite) and on a cluster
(PostgreSQL and Redis). The key is bounded (> 0, at most an hour)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.ext.asyncio import create_async_engine

from tests import ledger
from tests.e2e.test_store_outage import _cluster
from tests.servers import MASTER_KEY, Mock, openai_config, spawn, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


async def _disable_behind_the_feed(database: str, key_id: str) -> None:
    """The key disabled in the database alone, as if the change feed's message were lost."""
    engine = create_async_engine(database)
    try:
        async with engine.begin() as conn:
            done = await conn.execute(sa.text("UPDATE api_keys SET enabled = false WHERE id = :id"),
                                      {"id": key_id})
            assert done.rowcount == 1
    finally:
        await engine.dispose()


def _ask(client: openai.OpenAI) -> int:
    """The status of one chat call: 200, or the error's."""
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


@pytest.mark.parametrize("backend", ["embedded", "cluster"])
def test_a_change_the_feed_never_announced_is_seen_within_cache_seconds(
    backend: str, mock_upstream: Mock, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "cluster":
        pg: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config = _cluster(mock_upstream, redis, pg, "cache_seconds")
    else:
        config = openai_config(mock_upstream)
    config.setdefault("database", {})["cache_seconds"] = 1
    gw = start_gateway(config, tmp_path)
    try:
        made = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
        assert made.status_code == 201, made.text
        client = openai.OpenAI(base_url=gw.base_url, api_key=made.json()["key"], max_retries=0, timeout=30)
        assert _ask(client) == 200  # the key is read and cached now, for a second
        asyncio.run(_disable_behind_the_feed(ledger.database_of(config, tmp_path), made.json()["id"]))
        # With the default 10 s the cached record would be served for some 10 s more.
        deadline = time.monotonic() + 5
        while (status := _ask(client)) == 200:
            assert time.monotonic() < deadline, "the disabled key was still served after 5 s"
            time.sleep(0.1)
        assert status == 401
    finally:
        gw.process.stop()


@pytest.mark.parametrize("value", [0, -1, 3601])
def test_cache_seconds_out_of_bounds_is_a_config_error(value: float, tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump({
        "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1",
                       "api_key": "sk-up"}],
        "database": {"cache_seconds": value},
    }))
    proc = spawn(["config", "check", str(path)], inherit=False)
    proc.proc.wait(60)
    assert proc.proc.returncode == 2, proc.output
    assert "database.cache_seconds" in proc.output, proc.output
