"""Stores that do not answer: a cluster whose Redis hangs (accepts connections, never answers)
stores admin changes and answers them within the change feed's publish bound, one warning each;
/health/ready reports each store's state, and answers 503 for one down only when asked to;
/metrics reports it as switchboard_store_up.
(The admin API while the database is down: test_store_outage.py.)"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.stores.checks import MAX_AGE as CHECK_SECONDS
from switchboard.stores.checks import TIMEOUT as CHECK_TIMEOUT
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_postgres, start_redis

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# A hung store's calls are cut by the gateway's own bounds (a second each); what they rule out is
# waiting for the driver's timeout: 60 s for PostgreSQL's commands, and for Redis's replies
# (10 s by default) 60 s too, asked in the URL (redis-py's socket_timeout). So BOUND, far above
# the answers' second and far below the driver's wait, tells the two apart on a loaded machine.
REDIS_REPLY_TIMEOUT = 60
BOUND = 15.0
# More admin writes than the embedded database's connection pool holds (5 + 10 overflow).
WRITERS = 20


def hanging_redis_url(redis: RedisServer) -> str:
    return f"{redis.url}?socket_timeout={REDIS_REPLY_TIMEOUT}"


@dataclass
class Cluster:
    gateway: Gateway
    redis: RedisServer

    def hang_redis(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing is ever answered."""
        self.redis.proc.send_signal(signal.SIGSTOP)

    def resume_redis(self) -> None:
        self.redis.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def cluster(postgres: Postgres, mock_upstream: Mock, tmp_path: Path) -> Iterator[Cluster]:
    redis = start_redis()  # our own: stopping it leaves the session's Redis alone
    try:  # a gateway that fails to start leaves no Redis server behind
        config = openai_config(mock_upstream)
        config["database"] = {"url": postgres.create_database(f"outage_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": hanging_redis_url(redis)}
        gateway = start_gateway(config, tmp_path)
        try:
            yield Cluster(gateway, redis)
        finally:
            redis.proc.send_signal(signal.SIGCONT)
            gateway.process.stop()
    finally:
        redis.stop()


def _timed(method: str, url: str, body: object = None) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.request(method, url, json=body, headers=ADMIN, timeout=2 * REDIS_REPLY_TIMEOUT)
    return resp, time.monotonic() - started


def test_admin_changes_answer_within_the_publish_bound_while_redis_hangs(cluster: Cluster) -> None:
    keys = f"{cluster.gateway.url}/admin/v1/keys"
    cluster.hang_redis()
    created, took = _timed("POST", keys, {"models": ["*"]})
    assert created.status_code == 201, created.text
    assert took < BOUND  # redis.publish_timeout_seconds (1 s), not the reply timeout
    key_id = created.json()["id"]
    changed, took = _timed("PATCH", f"{keys}/{key_id}", {"models": ["gpt-4o-mini"]})
    assert changed.status_code == 200, changed.text
    assert took < BOUND
    deleted, took = _timed("DELETE", f"{keys}/{key_id}")
    assert deleted.status_code == 200, deleted.text
    assert took < BOUND
    # Stored all the same, and each change logged one warning naming the bound (read as the
    # test's reader thread gets to it: a line may follow its answer by a moment).
    for answer in (created, changed, deleted):
        cluster.gateway.process.wait_for_all("change feed: redis did not answer a publish",
                                             f"request_id={answer.headers['x-request-id']}", timeout=10)
    warnings = [line for line in cluster.gateway.process.lines
                if "change feed: redis did not answer a publish" in line]
    assert len(warnings) == 3, warnings
    assert "within 1.0s" in warnings[0]
    cluster.resume_redis()
    revoked = httpx.get(f"{cluster.gateway.url}/v1/models", timeout=10,
                        headers={"Authorization": f"Bearer {created.json()['key']}"})
    assert revoked.status_code == 401


def test_budgets_answer_without_a_status_within_a_second_while_redis_hangs(cluster: Cluster) -> None:
    """Each budget's live status reads its counters in Redis: bounded (1 s), then null as when
    Redis is down, and once per list, not once per budget; after Redis answers again the status
    is back, the counters rebuilt from the ledger."""
    budgets = f"{cluster.gateway.url}/admin/v1/budgets"
    teams = []
    for _ in range(10):
        created, _ = _timed("POST", f"{cluster.gateway.url}/admin/v1/teams", {"name": uuid.uuid4().hex[:8]})
        assert created.status_code == 201, created.text
        teams.append(created.json()["id"])
    for team in teams[:9]:
        set_, _ = _timed("PUT", budgets, {"scope": "team", "subject": team, "max_amount": "5"})
        assert set_.status_code == 200 and set_.json()["status"] is not None, set_.text
    cluster.hang_redis()
    set_, took = _timed("PUT", budgets, {"scope": "team", "subject": teams[9], "max_amount": "7.5"})
    assert set_.status_code == 200, set_.text
    assert set_.json()["status"] is None and Decimal(str(set_.json()["max_amount"])) == Decimal("7.5")
    assert took < BOUND  # the publish bound (1 s) and the status bound (1 s), not the reply timeout
    listed, took = _timed("GET", budgets)
    assert listed.status_code == 200, listed.text
    mine = [b for b in listed.json()["data"] if b["subject"] in teams]
    assert len(mine) == 10 and all(b["status"] is None for b in mine)
    assert took < BOUND  # one bound for the whole list (10 budgets, read 8 at a time)
    one, took = _timed("GET", f"{budgets}/{set_.json()['id']}")
    assert one.status_code == 200 and one.json()["status"] is None
    assert took < BOUND
    warned = "no status (the counters did not answer in time)"
    assert any(warned in line for line in cluster.gateway.process.lines)
    cluster.resume_redis()
    back = httpx.get(f"{budgets}/{set_.json()['id']}", headers=ADMIN, timeout=30)
    assert back.status_code == 200, back.text
    status = back.json()["status"]
    assert Decimal(status["spent"]) == 0 and Decimal(status["remaining"]) == Decimal("7.5"), status


# -- /health/ready: each store's state in the body; 503 for one down only when asked


def _ready(gw: Gateway, query: str = "") -> httpx.Response:
    started = time.monotonic()
    resp = httpx.get(f"{gw.url}/health/ready{query}", timeout=2 * REDIS_REPLY_TIMEOUT)
    assert time.monotonic() - started < BOUND  # a hung store costs a probe at most its 1 s check
    return resp


def _until(check: Callable[[], httpx.Response], wanted: Callable[[dict[str, Any]], bool], what: str,
           deadline: float = 10.0) -> httpx.Response:
    """Probe until the answer is as wanted (the stores' state is at most a second old)."""
    end = time.monotonic() + deadline
    while True:
        resp = check()
        if wanted(resp.json()):
            return resp
        assert time.monotonic() < end, f"{what}: {resp.status_code} {resp.text}"


def test_ready_reports_the_embedded_database(gateway: Gateway) -> None:
    for query in ("", "?strict=1"):
        resp = _ready(gateway, query)
        assert resp.status_code == 200
        body = resp.json()
        assert (body["status"], body["checks"]) == ("ready", {"database": "ok"})
        assert body["models"] > 0


def test_ready_reports_a_hung_redis_and_refuses_only_when_strict(cluster: Cluster) -> None:
    gw = cluster.gateway
    up = _ready(gw, "?strict=1")
    assert up.status_code == 200
    assert up.json()["checks"] == {"database": "ok", "redis": "ok"}
    cluster.hang_redis()
    down = _until(lambda: _ready(gw), lambda b: b["checks"]["redis"] == "down", "redis reported down")
    assert down.status_code == 200 and down.json()["status"] == "ready"  # the default: reported only
    assert down.json()["checks"]["database"] == "ok"
    strict = _ready(gw, "?strict=1")
    assert strict.status_code == 503
    assert strict.json()["status"] == "unavailable"
    assert strict.json()["checks"] == {"database": "ok", "redis": "down"}
    assert any("store check: redis is down" in line for line in gw.process.lines)
    cluster.resume_redis()
    back = _until(lambda: _ready(gw, "?strict=1"), lambda b: b["checks"]["redis"] == "ok", "redis back")
    assert back.status_code == 200 and back.json()["status"] == "ready"


def test_ready_requires_stores_turns_a_database_down_into_503(
    redis_server: RedisServer, mock_upstream: Mock, tmp_path: Path
) -> None:
    postgres = start_postgres()  # our own, so stopping it leaves the session's alone
    started: list[Gateway] = []
    try:
        config = openai_config(mock_upstream, ready_requires_stores=True)
        config["database"] = {"url": postgres.create_database("ready")}
        config["redis"] = {"url": redis_server.url}
        gw = start_gateway(config, tmp_path)
        started.append(gw)
        assert _ready(gw).json()["checks"] == {"database": "ok", "redis": "ok"}
        postgres.stop()
        down = _until(lambda: _ready(gw), lambda b: b["checks"]["database"] == "down", "database down")
        assert down.status_code == 503  # no ?strict needed: the configuration asks for it
        assert down.json() == {"status": "unavailable", "models": down.json()["models"],
                               "checks": {"database": "down", "redis": "ok"}}
        assert _ready(gw, "?strict=0").status_code == 503
    finally:
        for each in started:
            each.process.stop()
        postgres.stop()


# -- switchboard_store_up: the same state, for alerting on metrics


def _store_up(gw: Gateway) -> dict[str, float]:
    """``{store: value}`` of every switchboard_store_up sample in /metrics."""
    started = time.monotonic()
    resp = httpx.get(f"{gw.url}/metrics", headers=ADMIN, timeout=2 * REDIS_REPLY_TIMEOUT)
    # A scrape waits for a check of the stores at most a second (when the last is older).
    assert time.monotonic() - started < BOUND
    assert resp.status_code == 200, resp.text
    found = {}
    for line in resp.text.splitlines():
        if line.startswith("switchboard_store_up{"):
            store = line.split('store="', 1)[1].split('"', 1)[0]
            found[store] = float(line.rsplit(" ", 1)[1])
    return found


def _until_up(gw: Gateway, wanted: dict[str, float], what: str, deadline: float = 15.0) -> None:
    """Scrape until the gauge reads ``wanted`` (a scrape starts a check when the last is old)."""
    end = time.monotonic() + deadline
    while True:
        seen = _store_up(gw)
        if seen == wanted:
            return
        assert time.monotonic() < end, f"{what}: {seen}"


def _freeze_postgres(pg: Postgres, sig: signal.Signals) -> None:
    """SIGSTOP: accepts connections (the kernel's backlog), never answers; SIGCONT: back."""
    postmaster = int((pg.directory / "data" / "postmaster.pid").read_text().split()[0])
    found = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, timeout=10)
    for pid in [postmaster, *(int(p) for p in found.stdout.split())]:
        os.kill(pid, sig)


def test_a_scrape_after_a_pause_reports_the_stores_as_they_are_now(cluster: Cluster) -> None:
    """A scrape after a pause longer than the check interval (a second, as between scrapes every
    15 s) reports a check made then, not the one before the pause; it waits for it a second at
    most (a frozen Redis is 0 after that long)."""
    gw = cluster.gateway
    assert _store_up(gw) == {"database": 1.0, "redis": 1.0}
    cluster.hang_redis()
    time.sleep(CHECK_SECONDS + 0.5)  # the pause between two scrapes: the case under test
    assert _store_up(gw) == {"database": 1.0, "redis": 0.0}
    cluster.resume_redis()


def test_store_up_reports_the_embedded_database_only(gateway: Gateway) -> None:
    assert _store_up(gateway) == {"database": 1.0}


def test_store_up_follows_redis_and_the_database_going_quiet_and_back(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    postgres = start_postgres()  # our own: freezing them leaves the session's alone
    redis = start_redis()
    started: list[Gateway] = []
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": postgres.create_database("store_up")}
        config["redis"] = {"url": hanging_redis_url(redis)}
        gw = start_gateway(config, tmp_path)
        started.append(gw)
        assert _store_up(gw) == {"database": 1.0, "redis": 1.0}  # checked before the first scrape
        redis.proc.send_signal(signal.SIGSTOP)
        _until_up(gw, {"database": 1.0, "redis": 0.0}, "redis reported down")
        redis.proc.send_signal(signal.SIGCONT)
        _until_up(gw, {"database": 1.0, "redis": 1.0}, "redis reported back")
        _freeze_postgres(postgres, signal.SIGSTOP)
        _until_up(gw, {"database": 0.0, "redis": 1.0}, "database reported down")
        _freeze_postgres(postgres, signal.SIGCONT)
        _until_up(gw, {"database": 1.0, "redis": 1.0}, "database reported back")
    finally:
        redis.proc.send_signal(signal.SIGCONT)
        _freeze_postgres(postgres, signal.SIGCONT)
        for each in started:
            each.process.stop()
        redis.stop()
        postgres.stop()


def test_the_embedded_database_slow_to_answer_is_not_down(mock_upstream: Mock, tmp_path: Path) -> None:
    """The SQLite file's check waiting past its second (here: for a pooled connection, every one
    held by admin writes waiting on a write lock another process holds, as a busy host's start-up
    can) is a slow answer, not an outage: /health/ready stays 200 with the database "ok" even when
    it requires the stores, nothing is logged down, and the writes succeed once the lock goes."""
    gw = start_gateway(openai_config(mock_upstream, ready_requires_stores=True), tmp_path)
    holder = sqlite3.connect(tmp_path / "data" / "switchboard.db", isolation_level=None)
    writes: list[httpx.Response] = []
    try:
        holder.execute("BEGIN EXCLUSIVE")  # the file's write lock, held until the rollback below
        with ThreadPoolExecutor(WRITERS) as pool:
            pending = [pool.submit(httpx.post, f"{gw.url}/admin/v1/keys", json={"models": ["*"]},
                                   headers=ADMIN, timeout=60) for _ in range(WRITERS)]
            slow = 0
            while slow < 2:  # until two checks waited out their whole bound, as the case under test
                started = time.monotonic()
                ready = _ready(gw)
                slow += time.monotonic() - started >= CHECK_TIMEOUT
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"] == {"database": "ok"}
                assert not any(done.done() for done in pending)  # still held: the lock is the cause
            holder.execute("ROLLBACK")
            writes = [done.result() for done in pending]
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        gw.process.stop()
    assert [w.status_code for w in writes] == [201] * WRITERS, [w.text for w in writes]
    assert not any("store check: database is down" in line for line in gw.process.lines)
