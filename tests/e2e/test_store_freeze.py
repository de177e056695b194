"""Keyed model calls while the cluster's Redis accepts connections and never answers (SIGSTOP):
every call is answered within a bound with what docs/limits.md and docs/budgets.md promise for
Redis out of reach (limits open: admitted without limits; budgets closed: 503
budget_unavailable), never a 500 and never held; /health/ready says Redis is down; once Redis
answers again the limits count, the budgets admit and the change feed delivers again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from switchboard.background import WRITE_SECONDS
from switchboard.stores.feedcache import STORE_READ_SECONDS
from switchboard.stores.sql.engine import SQLITE_BUSY_SECONDS
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_postgres, start_redis

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# The bound on one Redis command (stores/redis/client.py, 10 s), with room for a loaded machine:
# what the calls in flight as Redis goes quiet may wait. The calls after them do not wait it.
BOUND = 15.0
QUICK = 3.0


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _sdk(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=60)


def _timed(client: openai.OpenAI) -> tuple[Any, float]:
    """The raw answer (or the error) and how long it took."""
    started = time.monotonic()
    try:
        answer: Any = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as exc:
        answer = exc
    took = time.monotonic() - started
    return answer, took


def _key(gw: Gateway, **fields: Any) -> dict[str, Any]:
    created = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"], **fields}, headers=ADMIN,
                         timeout=10)
    assert created.status_code == 201, created.text
    return created.json()


def test_keyed_calls_with_limits_and_a_budget_while_redis_never_answers(
    postgres: Postgres, mock_upstream: Mock, tmp_path: Path
) -> None:
    redis = start_redis()  # our own: the test freezes it
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": postgres.create_database(f"freeze_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        gw = start_gateway(config, tmp_path / "a")
        other = start_gateway(config, tmp_path / "b")  # hears changes over the change feed only
        try:
            limited = _key(gw, rpm_limit=1000)
            budgeted = _key(gw, max_budget_usd=1)
            both = _key(gw, rpm_limit=1000, max_budget_usd=1)
            plain = _key(gw)
            clients = {name: _sdk(gw, k["key"]) for name, k in
                       (("limited", limited), ("budgeted", budgeted), ("both", both), ("plain", plain))}
            for client in clients.values():  # every key read, every counter loaded
                answer, _ = _timed(client)
                assert answer.http_response.status_code == 200
            raw, _ = _timed(clients["limited"])
            assert raw.headers["x-ratelimit-remaining-requests"] == "998"

            redis.proc.send_signal(signal.SIGSTOP)
            try:
                # The first call finds Redis silent: it waits out the bound on a reply once.
                raw, took = _timed(clients["limited"])
                assert took < BOUND and raw.http_response.status_code == 200
                for _ in range(3):
                    # Limits open (the default): admitted, without the limits' headers.
                    raw, took = _timed(clients["limited"])
                    assert took < QUICK
                    assert raw.http_response.status_code == 200
                    assert "x-ratelimit-limit-requests" not in raw.headers
                    # Budgets closed (the default): a clear 503, not a 500 nor a hung call.
                    for name in ("budgeted", "both"):
                        refused, took = _timed(clients[name])
                        assert took < QUICK
                        assert isinstance(refused, openai.APIStatusError), refused
                        assert refused.status_code == 503, refused.body
                        assert refused.body["code"] == "budget_unavailable"  # type: ignore[index]
                    # No limit, no budget: Redis is not on its path.
                    raw, took = _timed(clients["plain"])
                    assert took < QUICK and raw.http_response.status_code == 200
                started = time.monotonic()
                ready = httpx.get(f"{gw.url}/health/ready", timeout=10)
                assert time.monotonic() - started < 3
                assert ready.json()["checks"]["redis"] == "down"
                assert httpx.get(f"{gw.url}/health/live", timeout=5).status_code == 200
            finally:
                redis.proc.send_signal(signal.SIGCONT)

            # Redis answers again: the limits count again, the budget admits again.
            def limited_again() -> bool:
                raw, _ = _timed(clients["limited"])
                return "x-ratelimit-remaining-requests" in raw.headers
            _until(limited_again, "the rate limits never came back", timeout=60)

            def budgeted_again() -> bool:
                answer, _ = _timed(clients["budgeted"])
                return not isinstance(answer, openai.APIStatusError)
            _until(budgeted_again, "the budget never admitted again", timeout=60)
            # The change feed listens again: a key revoked on one instance is refused by the other
            # well within its key cache's 10 s (the bound when a message is lost).
            elsewhere = _sdk(other, plain["key"])
            assert elsewhere.models.list().data
            _until(lambda: "change feed: listening again" in other.process.output,
                   "the other instance's change feed never listened again")
            revoked = httpx.delete(f"{gw.url}/admin/v1/keys/{plain['id']}", headers=ADMIN, timeout=10)
            assert revoked.status_code == 200

            def refused_elsewhere() -> bool:
                try:
                    elsewhere.models.list()
                except openai.AuthenticationError:
                    return True
                return False
            _until(refused_elsewhere, "the revocation never reached the other instance", timeout=5)
            metrics = httpx.get(f"{gw.url}/metrics", headers=ADMIN, timeout=10).text
            assert 'code="budget_unavailable"' in metrics
        finally:
            gw.process.stop()
            other.process.stop()
        for each in (gw, other):
            each.process.wait_exit()
            output = each.process.output
            assert "unexpected error" not in output and "Traceback" not in output, output
    finally:
        redis.proc.send_signal(signal.SIGCONT)
        redis.stop()


# -- PostgreSQL that never answers the usage ledger's writes


def _postgres_processes(pg: Postgres) -> list[int]:
    """The postmaster and every backend it forked."""
    postmaster = int((pg.directory / "data" / "postmaster.pid").read_text().split()[0])
    found = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, timeout=10)
    return [postmaster, *(int(pid) for pid in found.stdout.split())]


def _freeze(pg: Postgres, sig: signal.Signals) -> None:
    """SIGSTOP: a database that accepts connections (the kernel's backlog) and never answers;
    SIGCONT: back."""
    for pid in _postgres_processes(pg):
        os.kill(pid, sig)


def _ledger_count(gw: Gateway, key_id: str) -> int:
    rows = httpx.get(f"{gw.url}/admin/v1/usage?key={key_id}", headers=ADMIN, timeout=10).json()["data"]
    return int(rows[0]["requests"]) if rows else 0


def _metric(gw: Gateway, name: str) -> float:
    for line in httpx.get(f"{gw.url}/metrics", headers=ADMIN, timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def test_usage_records_while_the_database_never_answers_arrive_once_and_survive_a_shutdown(
    redis_server: RedisServer, mock_upstream: Mock, tmp_path: Path
) -> None:
    """Calls are served while PostgreSQL never answers the ledger's writes; their records wait in
    the spool (the metrics say so, /health/ready too, at once) and are stored exactly once after
    it answers. A SIGTERM while
    it never answers ends the process within the graceful bound and keeps the spool, which the
    next start stores."""
    pg = start_postgres()  # its own server: the test freezes it
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": pg.create_database("ledger_freeze")}
        config["redis"] = {"url": redis_server.url}
        gw = start_gateway(config, tmp_path)
        try:
            created = _key(gw)
            client = _sdk(gw, created["key"])
            for _ in range(2):
                assert _timed(client)[0].http_response.status_code == 200
            _until(lambda: _ledger_count(gw, created["id"]) == 2, "the first calls never reached the ledger")

            _freeze(pg, signal.SIGSTOP)
            try:
                for _ in range(5):  # the key is cached: served, the records spooled
                    raw, took = _timed(client)
                    assert raw.http_response.status_code == 200 and took < QUICK
                _until(lambda: _metric(gw, "switchboard_ledger_pending_records") >= 5,
                       "the spooled records are not reported pending")
                # /health/ready answers within its store check's bound (1 s), not the driver's;
                # its answers may be a second old (a scrape's check just before the freeze).
                answers: list[httpx.Response] = []

                def ready_down() -> bool:
                    started = time.monotonic()
                    answers.append(httpx.get(f"{gw.url}/health/ready?strict=1", timeout=10))
                    assert time.monotonic() - started < 3
                    return answers[-1].status_code == 503

                _until(ready_down, "/health/ready never saw the database silent", timeout=10)
                assert answers[-1].json()["checks"] == {"database": "down", "redis": "ok"}
            finally:
                _freeze(pg, signal.SIGCONT)
            _until(lambda: httpx.get(f"{gw.url}/health/ready?strict=1", timeout=10).status_code == 200,
                   "/health/ready never saw the database back")
            _until(lambda: _ledger_count(gw, created["id"]) == 7, "the spooled records never arrived",
                   timeout=90)
            _until(lambda: _metric(gw, "switchboard_ledger_pending_records") == 0, "still pending")

            _freeze(pg, signal.SIGSTOP)
            try:
                for _ in range(3):
                    raw, took = _timed(client)
                    assert raw.http_response.status_code == 200 and took < QUICK
                started = time.monotonic()
                gw.process.stop(timeout=60)
                # No request in flight: the last writes' bound (5 s each), not the driver's minute
                # per statement.
                assert time.monotonic() - started < 25, gw.process.output
            finally:
                _freeze(pg, signal.SIGCONT)
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        output = gw.process.output
        assert "Traceback" not in output, output
        assert "the records not stored stay in the spool for the next start" in output, output
        spool = list((tmp_path / "data" / "spool").glob("usage-*.spool"))
        assert spool, "the spool was not kept"

        again = start_gateway(config, tmp_path)  # the same data directory: replays the spool
        try:
            _until(lambda: _ledger_count(again, created["id"]) == 10, "the kept spool never arrived")
            assert _ledger_count(again, created["id"]) == 10  # exactly once
        finally:
            again.process.stop()
    finally:
        pg.stop()


def test_a_usage_write_the_database_never_answers_fails_within_its_bound_and_is_retried(
    redis_server: RedisServer, mock_upstream: Mock, tmp_path: Path
) -> None:
    """A write of the usage ledger that PostgreSQL never answers counts as failed after
    WRITE_SECONDS (15 s), not asyncpg's minute per statement: the log says the database is
    unreachable, the metrics count the write's timeout and the records waiting, and the records
    are stored once it answers again, exactly once."""
    pg = start_postgres()  # its own server: the test freezes it
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": pg.create_database("ledger_bound")}
        config["redis"] = {"url": redis_server.url}
        gw = start_gateway(config, tmp_path)
        try:
            created = _key(gw)
            client = _sdk(gw, created["key"])
            assert _timed(client)[0].http_response.status_code == 200
            _until(lambda: _ledger_count(gw, created["id"]) == 1, "the first call never reached the ledger")
            assert _metric(gw, "switchboard_ledger_write_timeouts_total") == 0

            _freeze(pg, signal.SIGSTOP)
            try:
                frozen_at = time.monotonic()
                for _ in range(3):  # served, the records spooled; their write never answered
                    raw, took = _timed(client)
                    assert raw.http_response.status_code == 200 and took < QUICK
                _until(lambda: _metric(gw, "switchboard_ledger_write_timeouts_total") >= 1,
                       "the write never timed out", timeout=WRITE_SECONDS + 20)
                # Well before asyncpg's own 60 s: the writer's bound, plus a flush interval and a
                # loaded machine's slack.
                assert time.monotonic() - frozen_at < WRITE_SECONDS + 20
                assert "usage ledger: the database is unreachable (TimeoutError)" in gw.process.output
                assert _metric(gw, "switchboard_ledger_pending_records") >= 3
                assert _metric(gw, "switchboard_ledger_oldest_pending_seconds") >= WRITE_SECONDS - 1
            finally:
                _freeze(pg, signal.SIGCONT)
            _until(lambda: _ledger_count(gw, created["id"]) == 4, "the kept records never arrived",
                   timeout=60)
            _until(lambda: _metric(gw, "switchboard_ledger_pending_records") == 0, "still pending")
            assert _ledger_count(gw, created["id"]) == 4  # exactly once
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        assert "Traceback" not in gw.process.output, gw.process.output
    finally:
        pg.stop()


def test_a_prompt_read_while_the_database_never_answers_is_a_503_within_the_read_bound(
    redis_server: RedisServer, mock_upstream: Mock, tmp_path: Path
) -> None:
    """A call naming a stored prompt not in the cache, while PostgreSQL never answers: 503
    store_unavailable once the read has waited STORE_READ_SECONDS (10 s), as for a key, not a
    500 after the driver's minute; served again once the database answers."""
    pg = start_postgres()  # its own server: the test freezes it
    try:
        config = openai_config(mock_upstream)
        config["database"] = {"url": pg.create_database("prompt_freeze")}
        config["redis"] = {"url": redis_server.url}
        gw = start_gateway(config, tmp_path)
        try:
            name = f"p-{uuid.uuid4().hex[:8]}"
            prompt = {"name": name, "model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": "hi {{ who }}"}],
                      "variables": {"type": "object", "properties": {"who": {"type": "string"}}}}
            created = httpx.post(f"{gw.url}/admin/v1/prompts", headers=ADMIN, timeout=10, json=prompt)
            assert created.status_code == 201, created.text
            client = _sdk(gw, MASTER_KEY)

            def call() -> Any:
                return client.chat.completions.create(
                    model="", messages=[], extra_body={"prompt": {"id": name, "variables": {"who": "x"}}})

            _freeze(pg, signal.SIGSTOP)
            try:
                started = time.monotonic()
                try:
                    call()
                    raise AssertionError("answered while the database never answers")
                except openai.APIStatusError as exc:
                    refused = exc
                took = time.monotonic() - started
                assert STORE_READ_SECONDS - 1 < took < STORE_READ_SECONDS + 8, took
                assert refused.status_code == 503, refused.body
                assert refused.body["code"] == "store_unavailable"  # type: ignore[index]
            finally:
                _freeze(pg, signal.SIGCONT)

            def served() -> bool:
                try:
                    return bool(call().choices)
                except openai.APIStatusError:
                    return False
            _until(served, "the prompt was never served again")
        finally:
            gw.process.stop()
        gw.process.wait_exit()
        assert "Traceback" not in gw.process.output, gw.process.output
    finally:
        pg.stop()


def test_a_sqlite_file_another_process_holds_locked_at_shutdown_ends_the_process_and_keeps_the_spool(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    """The embedded database's file write-locked by another process (a backup, an open sqlite3
    shell) as the gateway stops: its last write is cut at its bound, and the process ends all the
    same (a write cut mid-way used to leave the event loop's teardown waiting forever), exit 0, the
    records kept in the spool and stored once at the next start."""
    config = openai_config(mock_upstream)
    gw = start_gateway(config, tmp_path)
    created = _key(gw)
    client = _sdk(gw, created["key"])
    assert _timed(client)[0].http_response.status_code == 200
    _until(lambda: _ledger_count(gw, created["id"]) == 1, "the first call never reached the ledger")
    holder = sqlite3.connect(tmp_path / "data" / "switchboard.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # the file's write lock, held until the rollback below
        for _ in range(2):
            assert _timed(client)[0].http_response.status_code == 200
        started = time.monotonic()
        code = gw.process.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        gw.process.stop()
    output = gw.process.output
    assert code == 0, output
    # Bounded by the last writes' and the connections' close (5 s each) and the loop's teardown
    # (5 s), not by SQLite's wait for the lock, nor forever.
    assert took < 30, output
    assert "the records not stored stay in the spool for the next start" in output, output
    assert "Traceback" not in output, output

    again = start_gateway(config, tmp_path)  # the same data directory: replays the spool
    try:
        _until(lambda: _ledger_count(again, created["id"]) == 3, "the kept spool never arrived")
    finally:
        again.process.stop()


def test_an_admin_write_on_a_sqlite_file_another_process_holds_locked_is_a_503_within_the_busy_bound(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    """While another process holds the embedded database's write lock, an admin write waits
    SQLite's busy timeout (SQLITE_BUSY_SECONDS, 10 s: below the background writers' 15 s bound,
    so their writes end as "locked" rather than cut mid-statement) and answers 503 in the OpenAI
    shape, not after half a minute; model calls are served meanwhile, and once the lock is
    released the same write succeeds."""
    gw = start_gateway(openai_config(mock_upstream), tmp_path)
    try:
        created = _key(gw)
        client = _sdk(gw, created["key"])
        holder = sqlite3.connect(tmp_path / "data" / "switchboard.db", isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # the file's write lock, held until the rollback below
            started = time.monotonic()
            refused = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                                 timeout=60)
            took = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "store_unavailable" and error["type"]
            assert SQLITE_BUSY_SECONDS - 1 < took < SQLITE_BUSY_SECONDS + 8
            assert _timed(client)[0].http_response.status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert _key(gw)["key"]
    finally:
        gw.process.stop()
    gw.process.wait_exit()
    assert "Traceback" not in gw.process.output, gw.process.output
