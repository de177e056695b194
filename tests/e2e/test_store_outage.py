"""A cluster whose Redis hangs (accepts connections, never answers): admin changes are stored
and answered within the change feed's publish bound, one warning each."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, start_redis

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


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
def cluster(postgres: Postgres, mock_upstream: Mock, tmp_path: object) -> Iterator[Cluster]:
    redis = start_redis()  # our own: stopping it leaves the session's Redis alone
    config = openai_config(mock_upstream)
    config["database"] = {"url": postgres.create_database(f"outage_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    gateway = start_gateway(config, tmp_path)  # type: ignore[arg-type]
    try:
        yield Cluster(gateway, redis)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
        gateway.process.stop()
        redis.stop()


def _timed(method: str, url: str, body: object = None) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.request(method, url, json=body, headers=ADMIN, timeout=30)
    return resp, time.monotonic() - started


def test_admin_changes_answer_within_the_publish_bound_while_redis_hangs(cluster: Cluster) -> None:
    keys = f"{cluster.gateway.url}/admin/v1/keys"
    cluster.hang_redis()
    created, took = _timed("POST", keys, {"models": ["*"]})
    assert created.status_code == 201, created.text
    assert took < 3  # redis.publish_timeout_seconds (1 s), not the 10 s socket timeout
    key_id = created.json()["id"]
    changed, took = _timed("PATCH", f"{keys}/{key_id}", {"models": ["gpt-4o-mini"]})
    assert changed.status_code == 200, changed.text
    assert took < 3
    deleted, took = _timed("DELETE", f"{keys}/{key_id}")
    assert deleted.status_code == 200, deleted.text
    assert took < 3
    # Stored all the same, and each change logged one warning naming the bound.
    warnings = [line for line in cluster.gateway.process.lines
                if "change feed: redis did not answer a publish" in line]
    assert len(warnings) == 3, warnings
    assert "within 1.0s" in warnings[0]
    cluster.resume_redis()
    revoked = httpx.get(f"{cluster.gateway.url}/v1/models", timeout=10,
                        headers={"Authorization": f"Bearer {created.json()['key']}"})
    assert revoked.status_code == 401
