"""Cost per request and the usage ledger, end to end: the ``x-switchboard-cost-usd`` header from the
configured prices, one ledger record per request (streams and failures included), unpriced models,
and a ledger that loses nothing when the gateway is killed or the database goes away. Every test
runs on the embedded default (SQLite) and on a cluster (PostgreSQL + Redis); the database outage
is a cluster's (a dedicated PostgreSQL the test stops and starts)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from switchboard.stores.protocols import UsageRecord
from switchboard.stores.sql.urls import async_url
from tests import ledger
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer, _pg_bin, start_postgres

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICES = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6, "cached_input_cost_per_mtok": 0.075}
MTOK = Decimal(1_000_000)


def usage_config(config: dict[str, Any]) -> dict[str, Any]:
    """The test models with prices of their own, and a model the catalog cannot price."""
    for m in config["models"]:
        if m["name"] == "gpt-4o-mini":
            m["info"] = dict(PRICES)
    config["models"].append({"name": "house-model", "provider": "local-openai", "model": "house-llm-7b"})
    # Gemini's batchEmbedContents reports no token counts (the mock's neither).
    config["providers"].append({"name": "studio", "type": "gemini", "api_base": config["providers"][0][
        "api_base"].removesuffix("/v1"), "api_key": "${UPSTREAM_KEY}"})
    config["models"].append({"name": "gemini-embed", "provider": "studio", "model": "gemini-embedding-001"})
    config["spend"] = {"flush_seconds": 0.1}
    return config


def expected_cost(usage: Any) -> Decimal:
    """The cost by the configured prices, for OpenAI-shaped usage (no cache hits from the mock)."""
    return (usage.prompt_tokens * Decimal("0.15") + usage.completion_tokens * Decimal("0.6")) / MTOK


@dataclass
class Deployment:
    kind: str
    config: dict[str, Any]
    gateway: Gateway
    tmp: Path

    @property
    def database(self) -> str:
        url = (self.config.get("database") or {}).get("url")
        return async_url(url, self.tmp / "data")

    def sdk(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def records(self, tenant: str = "default") -> dict[str, UsageRecord]:
        return ledger.records(self.database, tenant)

    def wait_for(
        self, ids: set[str], timeout: float = 20.0, tenant: str = "default"
    ) -> dict[str, UsageRecord]:
        return ledger.wait_for(self.database, ids, timeout, tenant)


def _config(kind: str, mock: Mock, request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    config = usage_config(openai_config(mock))
    if kind == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"{name}_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    config = _config(request.param, mock_upstream, request, "usage")
    tmp = tmp_path_factory.mktemp(f"usage-{request.param}")
    gw = start_gateway(config, tmp)
    yield Deployment(request.param, config, gw, tmp)
    gw.process.stop()


def test_the_cost_header_is_the_cost_at_the_configured_prices(deployment: Deployment) -> None:
    key = httpx.post(
        f"{deployment.gateway.url}/admin/v1/keys",
        headers=ADMIN,
        timeout=10,
        json={"models": ["*"], "team": "team-a", "user": "u-1", "tags": ["billing", "eu"]},
    ).json()
    raw = deployment.sdk(key["key"]).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("what does this cost?")
    )
    reply = raw.parse()
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    header = raw.headers["x-switchboard-cost-usd"]
    assert Decimal(header) == expected_cost(reply.usage) > 0
    assert "." in header and "e" not in header.lower()  # a plain decimal string
    assert "x-switchboard-cost-unpriced" not in raw.headers
    rid = raw.headers["x-request-id"]
    record = deployment.wait_for({rid})[rid]
    assert (record.tenant_id, record.key_id, record.team_id, record.user_id) == (
        "default",
        key["id"],
        "team-a",
        "u-1",
    )
    assert (record.model, record.provider, record.upstream_model) == (
        "gpt-4o-mini",
        "local-openai",
        "gpt-4o-mini",
    )
    assert (record.status, record.stream, record.unpriced, record.tags) == (
        200,
        False,
        False,
        ("billing", "eu"),
    )
    assert (record.prompt_tokens, record.completion_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    assert record.cost_usd == Decimal(header)
    assert record.latency_ms >= 0 and record.cache_read_tokens == 0


def test_a_stream_is_recorded_exactly_like_the_same_call_without_streaming(deployment: Deployment) -> None:
    client = deployment.sdk()
    plain = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("same words"))
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=ask("same words"), stream=True
    ) as streamed:
        rid = streamed.headers["x-request-id"]
        assert "x-switchboard-cost-usd" not in streamed.headers  # known at the end: in the ledger
        chunks = list(streamed.parse())
    assert not any(c.usage for c in chunks)  # the client did not ask for usage; it is recorded anyway
    records = deployment.wait_for({rid, plain.headers["x-request-id"]})
    one, other = records[plain.headers["x-request-id"]], records[rid]
    assert other.stream and not one.stream
    assert (other.prompt_tokens, other.completion_tokens, other.cost_usd) == (
        one.prompt_tokens,
        one.completion_tokens,
        one.cost_usd,
    )
    assert other.completion_tokens > 0 and other.cost_usd == Decimal(plain.headers["x-switchboard-cost-usd"])
    assert other.ttft_ms is not None and 0 <= other.ttft_ms <= other.latency_ms


def test_every_request_id_has_one_record_and_failures_have_their_status(deployment: Deployment) -> None:
    client = deployment.sdk()
    ids = [
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask(f"n{i}")).headers[
            "x-request-id"
        ]
        for i in range(5)
    ]
    ids.append(
        client.completions.with_raw_response.create(
            model="gpt-3.5-turbo-instruct", prompt="complete me"
        ).headers["x-request-id"]
    )
    ids.append(
        client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="embed me").headers[
            "x-request-id"
        ]
    )
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=503"))
    failed_id = failed.value.response.headers["x-request-id"]
    assert len(set(ids)) == len(ids)
    records = deployment.wait_for({*ids, failed_id})
    assert all(records[i].status == 200 and records[i].cost_usd > 0 for i in ids)
    bad = records[failed_id]
    assert bad.status == failed.value.status_code >= 500 and bad.error_code is not None
    assert bad.cost_usd == 0 and bad.completion_tokens == 0
    assert records[ids[-1]].completion_tokens == 0 and records[ids[-1]].prompt_tokens > 0  # embeddings



def test_requests_sharing_one_request_id_each_have_their_own_record(deployment: Deployment) -> None:
    """A caller may send one X-Request-Id with several requests (at once, to several workers):
    each is a record of its own under that id, keyed by an id the gateway made for it, so none
    can be taken for a replay of another, even one that started in the same microsecond."""
    shared = f"shared-{uuid.uuid4().hex}"
    client = deployment.sdk()

    def call(i: int) -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask(f"n{i}"),
                                       extra_headers={"x-request-id": shared})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(call, range(6)))  # a failed call raises here
    deadline = time.monotonic() + 20
    while len(found := ledger.records_of(deployment.database, shared)) < 6:
        assert time.monotonic() < deadline, f"{len(found)} of 6 records"
        time.sleep(0.1)
    assert len(found) == 6
    entries = {r.entry_id for r in found}
    assert len(entries) == 6 and shared not in entries
    assert all(r.status == 200 and r.cost_usd > 0 for r in found)

def test_an_embedding_whose_provider_reports_no_tokens_is_counted_at_the_estimate(
    deployment: Deployment,
) -> None:
    text = "embed these words please " * 40
    raw = deployment.sdk().embeddings.with_raw_response.create(model="gemini-embed", input=[text, text])
    reply = raw.parse()
    assert len(reply.data) == 2 and reply.usage.prompt_tokens == 0  # as Gemini reported it
    header = Decimal(raw.headers["x-switchboard-cost-usd"])
    rid = raw.headers["x-request-id"]
    record = deployment.wait_for({rid})[rid]
    # Google bills the input: recorded, priced and flagged as the estimate, never as free.
    assert record.prompt_tokens > 100 and record.completion_tokens == 0
    assert record.metadata.get("estimated") is True
    assert record.cost_usd == header == record.prompt_tokens * Decimal("0.15") / MTOK
    # The token limit keeps it too: a key with room for one such call is refused the second,
    # however long after the first (its reservation is not given back as unused).
    tpm = record.prompt_tokens * 3 // 2
    key = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10,
                     json={"models": ["*"], "tpm_limit": tpm}).json()["key"]
    client = deployment.sdk(key)
    first = client.embeddings.with_raw_response.create(model="gemini-embed", input=[text, text])
    deployment.wait_for({first.headers["x-request-id"]})  # answered and recorded
    with pytest.raises(openai.RateLimitError) as refused:
        client.embeddings.create(model="gemini-embed", input=[text, text])
    assert refused.value.response.headers["x-ratelimit-limit-tokens"] == str(tpm)
    assert int(refused.value.response.headers["x-ratelimit-remaining-tokens"]) < record.prompt_tokens


def test_an_unpriced_model_is_flagged_never_a_silent_zero(deployment: Deployment) -> None:
    raw = deployment.sdk().chat.completions.with_raw_response.create(model="house-model", messages=ask("hi"))
    assert raw.headers["x-switchboard-cost-unpriced"] == "true"
    assert Decimal(raw.headers["x-switchboard-cost-usd"]) == 0
    record = deployment.wait_for({raw.headers["x-request-id"]})[raw.headers["x-request-id"]]
    assert record.unpriced and record.prompt_tokens > 0
    deployment.gateway.process.wait_for_all("'house-model' has no price", timeout=10)
    listed = httpx.get(f"{deployment.gateway.url}/admin/v1/usage/unpriced", headers=ADMIN, timeout=10)
    assert listed.status_code == 200, listed.text
    names = {m["model"] for m in listed.json()["data"]}
    assert "house-model" in names and "gpt-4o-mini" not in names
    assert listed.json()["refused"] is False
    # Every role that may read the models may read this (a developer key here).
    developer = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", headers=ADMIN, timeout=10,
                           json={"models": ["*"]}).json()
    mine = httpx.get(f"{deployment.gateway.url}/admin/v1/usage/unpriced", timeout=10,
                     headers={"Authorization": f"Bearer {developer['key']}"})
    assert mine.status_code == 200 and mine.json()["data"] == listed.json()["data"]
    # A caller who may not read the models is refused with the usual error shape.
    nobody = httpx.get(
        f"{deployment.gateway.url}/admin/v1/usage/unpriced",
        headers={"Authorization": "Bearer sk-sb-not-a-key"},
        timeout=10,
    )
    assert nobody.status_code == 401 and nobody.json()["error"]["code"]


def test_a_stream_the_client_abandons_is_recorded_with_what_was_produced(deployment: Deployment) -> None:
    rid = f"abandon-{uuid.uuid4().hex}"
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": ask("mock:chunk_delay_ms=300 mock:reply=one_two_three_four_five_six_seven_eight")}
    headers = {**ADMIN, "x-request-id": rid}
    with httpx.stream("POST", f"{deployment.gateway.base_url}/chat/completions", json=body, headers=headers,
                      timeout=10) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            chunk = json.loads(line[6:]) if line.startswith("data: {") else {}
            if any(c["delta"].get("content") for c in chunk.get("choices", ())):
                break  # a word arrived; then the client leaves
        else:
            raise AssertionError("no content before the end of the stream")
    record = deployment.wait_for({rid})[rid]
    assert record.stream and record.status == 200 and record.metadata.get("client_disconnected") is True
    assert record.metadata.get("estimated") is True  # the upstream's usage never came
    assert 0 < record.completion_tokens < 10 and record.prompt_tokens > 0 and record.cost_usd > 0


def test_a_request_the_client_leaves_records_the_attempt_under_way(deployment: Deployment) -> None:
    rid = f"left-{uuid.uuid4().hex}"
    body = {"model": "gpt-4o-mini", "messages": ask("mock:latency_ms=3000 slow")}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up while the upstream thinks
        httpx.post(f"{deployment.gateway.base_url}/chat/completions", json=body,
                   headers={**ADMIN, "x-request-id": rid}, timeout=0.5)
    record = deployment.wait_for({rid})[rid]
    assert record.status == 499
    [attempt] = record.attempts or [None]
    assert attempt is not None and attempt["status"] == 499 and attempt["code"] == "client_closed"
    assert attempt["group"] == "gpt-4o-mini" and attempt["ms"] >= 400

def test_anthropic_clients_get_the_cost_header_too(deployment: Deployment) -> None:
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": ask("hello from anthropic")}
    resp = httpx.post(f"{deployment.gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body,
                      timeout=10)
    assert resp.status_code == 200, resp.text
    cost = Decimal(resp.headers["x-switchboard-cost-usd"])
    usage = resp.json()["usage"]
    prompt, output = usage["input_tokens"], usage["output_tokens"]
    assert cost == (prompt * Decimal("0.15") + output * Decimal("0.6")) / MTOK > 0
    record = deployment.wait_for({resp.headers["x-request-id"]})[resp.headers["x-request-id"]]
    assert record.cost_usd == cost


# -- the ledger loses nothing ---------------------------------------------------------------------


class Load:
    """Clients sending chat requests in threads until stopped; the request ids that got a 200."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self.url = url
        self.ok: list[str] = []
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, headers=ADMIN, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                rid = f"load-{uuid.uuid4().hex}"
                body = {"model": "gpt-4o-mini", "messages": ask(f"load {n} {i}"), "stream": i % 3 == 0}
                try:
                    resp = client.post("/v1/chat/completions", json=body, headers={"x-request-id": rid})
                except httpx.HTTPError:
                    self.failed += 1
                    continue
                # A stream counts as answered once its end ([DONE]) arrived.
                answered = resp.status_code == 200 and (not body["stream"] or b"[DONE]" in resp.content)
                if answered and resp.headers["x-request-id"] == rid:
                    self.ok.append(rid)
                else:
                    self.failed += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def until(self, answered: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ok) < answered:
            assert time.monotonic() < deadline, f"only {len(self.ok)} answered"
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def spool_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "data" / "spool").glob("*.spool"))


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_gateway_killed_under_load_has_every_answered_request_once_after_restart(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path
) -> None:
    config = _config(kind, mock_upstream, request, "killed")
    config["spend"]["refuse_unpriced"] = True
    # A long flush interval: most answered records are only in the spool when the process dies.
    config["spend"]["flush_seconds"] = 30
    gw = start_gateway(config, tmp_path)
    deployment = Deployment(kind, config, gw, tmp_path)
    with pytest.raises(openai.BadRequestError) as refused:
        deployment.sdk().chat.completions.create(model="house-model", messages=ask("hi"))
    assert refused.value.body["code"] == "model_unpriced"  # type: ignore[index]
    refused_id = refused.value.response.headers["x-request-id"]
    with Load(gw.url) as load:
        load.until(150)
        gw.process.stop(signal.SIGKILL)
    answered = set(load.ok)
    assert len(answered) == len(load.ok) >= 150
    # What the dead process had not stored yet is only in its spool.
    assert answered - set(deployment.records()) and any(p.stat().st_size for p in spool_files(tmp_path))
    again = start_gateway(config, tmp_path)
    try:
        records = deployment.wait_for(answered | {refused_id})
        assert all(records[rid].status == 200 for rid in answered)
        assert (records[refused_id].status, records[refused_id].error_code) == (400, "model_unpriced")
        # Every segment left behind was replayed and removed (the new process's own may remain).
        deadline = time.monotonic() + 10
        while len(spool_files(tmp_path)) > 1:
            assert time.monotonic() < deadline, spool_files(tmp_path)
            time.sleep(0.1)
    finally:
        again.process.stop()
    # Stopped cleanly: nothing left in the spool, and the ledger unchanged (nothing twice).
    assert spool_files(tmp_path) == []
    assert deployment.records().keys() == records.keys()


def _pg_ctl(pg: Postgres, *args: str) -> None:
    subprocess.run(
        [*pg._as_user, _pg_bin("pg_ctl"), "-D", str(pg.directory / "data"), *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


OUTAGE_SECONDS = 30


def test_a_database_outage_under_load_loses_nothing_answered(
    mock_upstream: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    pg = start_postgres()  # its own server: the test stops it
    try:
        config = usage_config(openai_config(mock_upstream))
        config["database"] = {"url": pg.create_database("outage")}
        config["redis"] = {"url": redis_server.url}
        gw = start_gateway(config, tmp_path)
        deployment = Deployment("cluster", config, gw, tmp_path)
        try:
            with Load(gw.url, threads=3) as load:
                load.until(50)
                _pg_ctl(pg, "stop", "-m", "fast", "-w")
                during = len(load.ok)
                stopped = time.monotonic()
                while time.monotonic() - stopped < OUTAGE_SECONDS:
                    time.sleep(0.5)
                assert len(load.ok) > during + 50  # the gateway kept answering without its database
                options = f"-p {pg.port} -c listen_addresses=127.0.0.1 -k {pg.directory} -c fsync=off"
                _pg_ctl(pg, "-o", options, "-l", str(pg.directory / "log"), "-w", "start")
                load.until(len(load.ok) + 30)
            records = deployment.wait_for(set(load.ok), timeout=30)
            assert all(records[rid].status == 200 for rid in load.ok)
            assert "spooled records replayed" in gw.process.output
        finally:
            gw.process.stop()
    finally:
        pg.stop()
