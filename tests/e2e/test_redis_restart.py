"""Redis killed (SIGKILL) and started again empty under two gateways sharing it and PostgreSQL:
while it is down, callers get what docs/limits.md and docs/budgets.md promise (limits fail open,
budgets closed); once it is back, everything recovers without restarting the gateways. The
scripts are loaded again (NOSCRIPT), budget counters are rebuilt from the ledger, the change feed
listens again and makes up for what it missed (a key revoked on one instance while Redis was
down, or right after it came back, is refused by the other at once, not when its cached copy
expires, which the test puts an hour away), /health/ready says so, the ledger has every request,
and the log has one change-feed warning per outage, not one per retry."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_redis

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# How long Redis stays down: long enough for a reconnecting client's backoff to grow (the
# outage being simulated, not a wait for something to happen).
OUTAGE_SECONDS = 4.0
LEDGER_FLUSH_SECONDS = 5.0
# The longest the instances may keep a key they read: far beyond the test, so no copy expires in it.
LONG_CACHE_SECONDS = 3600


@dataclass
class Pair:
    first: Gateway
    second: Gateway
    redis: RedisServer

    def admin(self, method: str, path: str, body: object = None) -> httpx.Response:
        return httpx.request(method, self.first.url + path, json=body, headers=ADMIN, timeout=30)

    def key(self, **extra: Any) -> dict[str, Any]:
        resp = self.admin("POST", "/admin/v1/keys", {"models": ["*"], **extra})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def kill_redis(self) -> None:
        """SIGKILL: its data (counters, scripts) and every connection to it are gone."""
        self.redis.proc.send_signal(signal.SIGKILL)
        self.redis.proc.wait(10)


@pytest.fixture
def pair(postgres: Postgres, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from _pair(postgres, mock_upstream, tmp_path_factory)


@pytest.fixture
def long_cache_pair(postgres: Postgres, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Pair]:
    """A pair whose instances keep what they read for an hour (``database.cache_seconds``): a key
    they stop accepting within the test was dropped by the change feed, never by its copy
    expiring."""
    yield from _pair(postgres, mock_upstream, tmp_path_factory, cache_seconds=LONG_CACHE_SECONDS)


@pytest.fixture
def slow_ledger_pair(postgres: Postgres, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Pair]:
    """A pair whose ledger writers store their records every LEDGER_FLUSH_SECONDS: a call's
    record stays in its instance's writer long enough to see what a counter rebuilt meanwhile
    does with it."""
    yield from _pair(postgres, mock_upstream, tmp_path_factory, spend={"flush_seconds": LEDGER_FLUSH_SECONDS})


def _pair(postgres: Postgres, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory,
          cache_seconds: float | None = None, **extra: Any) -> Iterator[Pair]:
    redis = start_redis()  # our own: killing it leaves the session's Redis alone
    config = openai_config(mock_upstream)
    config["database"] = {"url": postgres.create_database(f"restart_{uuid.uuid4().hex[:8]}")}
    if cache_seconds is not None:
        config["database"]["cache_seconds"] = cache_seconds
    config["redis"] = {"url": redis.url}
    config.update(extra)
    started: list[Gateway] = []
    try:
        for name in ("a", "b"):
            started.append(start_gateway(config, tmp_path_factory.mktemp(f"redis-restart-{name}")))
        yield Pair(started[0], started[1], redis)
    finally:
        for gw in started:
            gw.process.stop()
        redis.stop()


def _chat(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "max_tokens": 20,
                            "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def _ledger(pair: Pair, key_id: str) -> int:
    """The key's requests in the usage ledger (refusals are recorded too)."""
    rows = pair.admin("GET", f"/admin/v1/usage?key={key_id}").json()["data"]
    return int(rows[0]["requests"]) if rows else 0


def _redis_state(gw: Gateway) -> str:
    return str(httpx.get(f"{gw.url}/health/ready", timeout=10).json()["checks"]["redis"])


def test_everything_recovers_after_redis_is_killed_and_restarted_empty(long_cache_pair: Pair) -> None:
    pair = long_cache_pair
    gateways = (pair.first, pair.second)
    limited = pair.key(rpm_limit=3)
    budgeted = pair.key()
    revoked, missed = pair.key(), pair.key()
    budget = pair.admin("PUT", "/admin/v1/budgets", {"scope": "key", "subject": budgeted["id"],
                                                      "unit": "tokens", "max_amount": 100})
    assert budget.status_code == 200, budget.text
    sent: list[int] = []  # statuses of the limited key's requests, for the ledger

    def limited_call(gw: Gateway) -> httpx.Response:
        resp = _chat(gw, limited["key"])
        sent.append(resp.status_code)
        return resp

    # Spend the budget on both instances until it refuses; the ledger holds what was spent.
    calls = 0
    while (resp := _chat(gateways[calls % 2], budgeted["key"])).status_code == 200:
        calls += 1
        assert calls < 50, "the budget never refused"
    assert resp.json()["error"]["code"] == "budget_exceeded"
    assert _chat(pair.second, revoked["key"]).status_code == 200
    assert limited_call(pair.first).headers["x-ratelimit-limit-requests"] == "3"
    _until(lambda: _ledger(pair, budgeted["id"]) == calls + 1, "the ledger did not record the budget's calls")

    pair.kill_redis()
    for gw in gateways:
        # Limits fail open (admitted, no rate-limit headers); budgets fail closed.
        resp = limited_call(gw)
        assert resp.status_code == 200 and "x-ratelimit-limit-requests" not in resp.headers
        refused = _chat(gw, budgeted["key"])
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "budget_unavailable"
        assert httpx.get(f"{gw.url}/admin/v1/keys", headers=ADMIN, timeout=10).status_code == 200
        _until(lambda gw=gw: _redis_state(gw) == "down", "/health/ready did not report redis down")
    time.sleep(OUTAGE_SECONDS)
    # Revoked on the first instance while the second has the key freshly cached: stored, but the
    # change feed cannot carry the news.
    assert _chat(pair.second, missed["key"]).status_code == 200
    assert pair.admin("DELETE", f"/admin/v1/keys/{missed['id']}").status_code == 200
    pair.redis.restart()  # empty: no counters, no scripts
    # The second instance's feed listens again and drops what it may have missed: the key is
    # refused once Redis answers. Its cached copy would live for an hour (LONG_CACHE_SECONDS), so
    # only the feed's reconnect can have dropped it.
    _until(lambda: _chat(pair.second, missed["key"]).status_code == 401,
           "the second instance still accepts a key revoked during the outage", timeout=15)

    # A key revoked right after the restart is refused by the other instance too: the feed
    # carries the revocation (its cached copy, again, outlives the test).
    assert _chat(pair.second, revoked["key"]).status_code == 200
    assert pair.admin("DELETE", f"/admin/v1/keys/{revoked['id']}").status_code == 200
    _until(lambda: _chat(pair.second, revoked["key"]).status_code == 401,
           "the second instance still accepts the revoked key", timeout=15)

    for gw in gateways:
        _until(lambda gw=gw: _redis_state(gw) == "ok", "/health/ready did not report redis back")
        # The budget's counter is rebuilt from the ledger: still spent, still refused.
        refused = _chat(gw, budgeted["key"])
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    # The rate limit's scripts are loaded again (NOSCRIPT) and its window starts empty.
    answered = [limited_call(gateways[i % 2]) for i in range(4)]
    assert [r.status_code for r in answered] == [200, 200, 200, 429]
    assert answered[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert answered[3].json()["error"]["code"] == "rate_limit_exceeded"

    # Every request of the limited key is in the ledger, those of the outage included.
    _until(lambda: _ledger(pair, limited["id"]) == len(sent), "the ledger lacks requests")
    for gw in gateways:
        gw.process.stop()
        gw.process.wait_exit()
        lost = [line for line in gw.process.lines if "change feed: lost its redis connection" in line]
        assert len(lost) == 1, gw.process.output  # one warning per outage, not one per retry
        assert any("change feed: listening again after" in line for line in gw.process.lines)
        assert "Traceback" not in gw.process.output


def test_calls_in_flight_when_redis_dies_warn_once_and_are_counted_once_it_is_back(pair: Pair) -> None:
    """Calls under way when Redis is killed answer normally; their settlements fail together and
    the log says so once, not once per call. Redis comes back empty: the budget's counter is
    rebuilt from the ledger, which holds those calls, and the settlements waiting in the
    instance do not count them a second time."""
    key = pair.key()
    made = pair.admin("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "unit": "tokens",
                                                    "max_amount": 100_000})
    assert made.status_code == 200, made.text
    budget = made.json()["id"]

    def status() -> dict[str, Any]:
        return dict(pair.admin("GET", f"/admin/v1/budgets/{budget}").json()["status"] or {})

    slow = {"model": "gpt-4o-mini", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi mock:latency_ms=2500"}]}
    answers: list[int] = []

    def call() -> None:
        answers.append(httpx.post(f"{pair.first.base_url}/chat/completions", json=slow, timeout=30,
                                  headers={"Authorization": f"Bearer {key['key']}"}).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    _until(lambda: status().get("reserved", 0) >= 4 * 51, "the four calls were not all reserved")
    pair.kill_redis()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 4  # the callers saw nothing of it
    pair.redis.restart()

    def settled() -> bool:
        rows = pair.admin("GET", f"/admin/v1/usage?key={key['id']}").json()["data"]
        if not rows or rows[0]["requests"] != 4:
            return False
        st = status()
        return bool(st) and st["reserved"] == 0 and st["spent"] == rows[0]["prompt_tokens"] + rows[0][
            "completion_tokens"]

    _until(settled, "the counter does not hold what the ledger says", timeout=30)
    lines = pair.first.process.lines
    failed = [line for line in lines if "settling its budget reservation failed" in line]
    assert len(failed) == 1, "".join(lines)


def test_a_counter_rebuilt_right_after_redis_lost_its_data_holds_the_calls_not_yet_stored(
        slow_ledger_pair: Pair) -> None:
    """Calls that ended on both instances just before Redis lost its data: settled into the lost
    counter, their ledger records still in their instances' writers. A status read at once
    rebuilds the counter from the ledger with both calls in it (this instance's stored before
    the read, the other's waited for), and counts neither a second time once they are stored."""
    pair = slow_ledger_pair
    key = pair.key()
    made = pair.admin("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "unit": "tokens",
                                                    "max_amount": 100_000})
    assert made.status_code == 200, made.text
    budget = made.json()["id"]

    def status() -> dict[str, Any]:
        answer = pair.admin("GET", f"/admin/v1/budgets/{budget}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["status"] or {})

    assert status()["spent"] == 0  # the counter exists before Redis loses it
    used = 0
    for gw in (pair.first, pair.second):
        answer = _chat(gw, key["key"])
        assert answer.status_code == 200, answer.text
        used += answer.json()["usage"]["total_tokens"]
    assert status()["spent"] == used
    pair.kill_redis()
    pair.redis.restart()  # empty: the counter is gone

    rebuilt = status()  # on the first instance: rebuilt from the ledger now
    assert rebuilt["spent"] == used, rebuilt
    assert rebuilt["reserved"] == 0
    assert _ledger(pair, key["id"]) == 2  # the first instance's record was stored for the rebuild

    third = _chat(pair.second, key["key"])  # counted once more, on a counter that holds the others
    assert third.status_code == 200, third.text
    used += third.json()["usage"]["total_tokens"]
    _until(lambda: _ledger(pair, key["id"]) == 3, "the ledger does not hold the three calls")
    assert status()["spent"] == used
