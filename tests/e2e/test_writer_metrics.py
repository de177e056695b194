"""The background writers' health in Prometheus, end to end: while the database cannot take the
usage records, ``switchboard_ledger_pending_records`` counts the calls answered meanwhile and
``switchboard_ledger_oldest_pending_seconds`` ages; once it takes them again both are back to 0
and the records are in the ledger. A record and a body the database refuses for what they hold
count as a held record and a dropped body (``reason="refused"``), not as pending. On the
embedded default (SQLite, whose "outage" is another process holding its write lock) and on a
cluster (PostgreSQL, stopped and started again, and Redis)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests import ledger
from tests.e2e.test_metrics import Samples, parse, poll, total
from tests.e2e.test_store_outage import _cluster, _pg_ctl, _pg_start
from tests.e2e.test_unstorable_values import REFUSED_PREFIX, _refuse
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_postgres

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PENDING = "switchboard_ledger_pending_records"
OLDEST = "switchboard_ledger_oldest_pending_seconds"


def scrape(gw: Gateway) -> Samples:
    resp = httpx.get(f"{gw.url}/metrics", headers=ADMIN, timeout=10)
    assert resp.status_code == 200, resp.text
    return parse(resp.text)


def until(gw: Gateway, check: Callable[[Samples], bool], what: str, deadline: float = 30.0) -> Samples:
    """Scrape until ``check`` holds (polled with a deadline); the last scrape."""
    last: list[Samples] = []

    def ready() -> bool:
        last[:] = [scrape(gw)]
        return check(last[0])

    poll(ready, what, deadline)
    return last[0]


def chat(gw: Gateway, key: str, content: str) -> str:
    rid = f"writers-{uuid.uuid4().hex}"
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30,
                           default_headers={"x-request-id": rid})
    assert client.chat.completions.create(model="gpt-4o-mini",
                                          messages=[{"role": "user", "content": content}]).choices
    return rid


@contextmanager
def sqlite_write_lock(tmp: Path) -> Iterator[None]:
    """Another process's write transaction on the embedded database: the gateway's writes wait."""
    conn = sqlite3.connect(tmp / "data" / "switchboard.db", isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@contextmanager
def outage(kind: str, tmp: Path, pg: Postgres | None) -> Iterator[None]:
    if kind == "cluster":
        assert pg is not None
        _pg_ctl(pg, "stop", "-m", "fast", "-w")
        try:
            yield
        finally:
            _pg_start(pg)
    else:
        with sqlite_write_lock(tmp):
            yield


@pytest.fixture
def own_postgres(request: pytest.FixtureRequest) -> Iterator[Postgres | None]:
    """A PostgreSQL server of the test's own on the cluster backend (the test stops it)."""
    if request.param != "cluster":
        yield None
        return
    pg = start_postgres()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.mark.parametrize("own_postgres", ["embedded", "cluster"], indirect=True)
def test_usage_records_the_database_cannot_take_are_pending_until_it_takes_them(
    own_postgres: Postgres | None, mock_upstream: Mock, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kind = "embedded" if own_postgres is None else "cluster"
    if own_postgres is not None:
        redis: RedisServer = request.getfixturevalue("redis_server")
        config = _cluster(mock_upstream, redis, own_postgres, "writers")
    else:
        config = openai_config(mock_upstream)
    config["spend"] = {"flush_seconds": 0.1}
    config["auth"]["last_used_interval_seconds"] = 0.2
    gw = start_gateway(config, tmp_path)
    try:
        made = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        first = chat(gw, key, "before")  # the key is cached: served while the database is away
        ledger.wait_for(ledger.database_of(config, tmp_path), {first})
        before = until(gw, lambda s: total(s, PENDING) == 0, "records pending with the database up")
        assert total(before, OLDEST) == 0
        stored = total(before, "switchboard_ledger_stored_records_total")
        assert stored >= 1

        with outage(kind, tmp_path, own_postgres):
            during = [chat(gw, key, f"during {i}") for i in range(3)]
            # The three calls wait for the database; the oldest of them grows older.
            waiting = until(gw, lambda s: total(s, PENDING) == 3 and total(s, OLDEST) > 0.3,
                            "the pending records never showed the calls answered during the outage")
            assert total(waiting, "switchboard_ledger_spool_bytes") > 0
            assert total(waiting, "switchboard_ledger_stored_records_total") == stored
            if kind == "cluster":  # the keys' last-used times fail too, and are kept for later
                waiting = until(gw, lambda s: total(s, "switchboard_key_last_used_failed_writes_total") > 0,
                                "the failing last-used writes were never counted")
                assert total(waiting, "switchboard_key_last_used_pending") == 1

        after = until(gw, lambda s: total(s, PENDING) == 0 and total(s, OLDEST) == 0,
                      "the pending records never came back to 0 once the database was back")
        assert total(after, "switchboard_ledger_stored_records_total") >= stored + 3
        assert total(after, "switchboard_ledger_held_records_total") == 0
        assert total(after, "switchboard_ledger_dropped_records_total") == 0
        until(gw, lambda s: total(s, "switchboard_key_last_used_pending") == 0,
              "the keys' last-used times were never written once the database was back")
        ledger.wait_for(ledger.database_of(config, tmp_path), set(during))
    finally:
        gw.process.stop()


@pytest.fixture(params=["embedded", "cluster"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "embedded":
        return {}
    postgres: Postgres = request.getfixturevalue("postgres")
    redis: RedisServer = request.getfixturevalue("redis_server")
    return {"database": {"url": postgres.create_database(f"writers_{uuid.uuid4().hex[:8]}")},
            "redis": {"url": redis.url}}


def test_a_body_and_a_record_the_database_refuses_count_as_dropped_and_held(
    backend: dict[str, Any], mock_upstream: Mock, tmp_path: Path
) -> None:
    kind = "cluster" if backend else "embedded"
    config = {**openai_config(mock_upstream), **backend}
    config["request_log"] = {"bodies": [{"model": "gpt-4o-mini"}], "flush_seconds": 0.1}
    config["spend"] = {"flush_seconds": 0.1}
    gw = start_gateway(config, tmp_path)
    try:
        database = ledger.database_of(config, tmp_path)
        ledger.wait_for(database, {chat(gw, MASTER_KEY, "before the constraint")})
        dropped = "switchboard_request_log_bodies_dropped_total"
        before = scrape(gw)
        # Every reason is exported from the start, at 0, so a rate() over it has a beginning.
        for reason in ("queue_full", "database_failed", "refused"):
            assert (dropped, frozenset({("reason", reason)})) in before
        assert total(before, dropped) == 0
        assert total(before, "switchboard_ledger_held_records_total") == 0
        asyncio.run(_refuse(database, kind, on=True))
        refused = f"{REFUSED_PREFIX}{uuid.uuid4().hex}"
        openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30,
                      default_headers={"x-request-id": refused}).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "refused whatever is done"}])
        ledger.wait_for(database, {chat(gw, MASTER_KEY, "after the refused one")})
        # Held in the spool for the next start, not pending: nothing waits on the database (the
        # last request's body may still be on its way to it when the counts are first seen).
        after = until(gw, lambda s: total(s, dropped, reason="refused") == 1
                      and total(s, "switchboard_ledger_held_records_total") == 1
                      and total(s, "switchboard_request_log_pending_bodies") == 0
                      and total(s, PENDING) == 0 and total(s, OLDEST) == 0,
                      "the refused body and record were never counted, or others stayed pending")
        assert total(after, dropped) == 1  # no other reason
        assert total(after, "switchboard_ledger_spool_bytes") > 0
    finally:
        gw.process.stop()
