"""A finished batch is priced from its output file: an owner who deletes that file before the
batch is priced (the upstream failed while the gateway read it) would leave the batch unpriceable,
every later read a 404 and its cost never charged. Deleting the output of a batch not yet priced
prices it first; when that fails too, the delete is refused (503, retryable) and nothing is
deleted. End to end with the openai SDK, on the embedded database and on a cluster (PostgreSQL
and Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests import ledger
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class World:
    """A gateway, its ledger's database and a tenant of its own."""

    database: str
    tenant: str
    gateway: Gateway

    def sdk(self) -> openai.OpenAI:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": ["*"], "tenant": self.tenant},
                          headers=ADMIN, timeout=30)
        assert resp.status_code == 201, resp.text
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=resp.json()["key"], max_retries=0,
                             timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    for m in config["models"]:
        if m["name"] == "gpt-4o-mini":
            m["info"] = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6}
    # No poller round during a test: the pricing is the caller's GET's and the delete's.
    config["files"] = {"provider": "local-openai", "poll_seconds": 3600}
    if request.param == "cluster":
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"outdel_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"batch-output-deleted-{request.param}")
    gw = start_gateway(config, tmp)
    tenant = f"outdel-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": tenant, "name": tenant}, headers=ADMIN,
                      timeout=30)
    assert made.status_code == 201, made.text
    yield World(ledger.database_of(config, tmp), tenant, gw)
    gw.process.stop()


def _jsonl(n: int) -> bytes:
    return b"".join(orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "gpt-4o-mini",
                                           "messages": [{"role": "user", "content": f"q{i}"}]}}) + b"\n"
                    for i in range(n))


def _finished_unpriced(world: World, client: openai.OpenAI, faults: int) -> tuple[str, str]:
    """A completed batch whose pricing after its owner's GET failed (the upstream answered 503
    reading its output): (batch id, output file id)."""
    source = client.files.create(file=("in.jsonl", _jsonl(3)), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h",
                                  metadata={"mock_gets_to_complete": "1", "mock_output_faults": str(faults)})
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    world.gateway.process.wait_for_all(f"batch {batch.id}: cost not recorded yet")
    assert batch.id not in ledger.records(world.database, world.tenant)
    return batch.id, done.output_file_id


def _assert_charged(world: World, batch_id: str) -> None:
    record = ledger.wait_for(world.database, {batch_id}, tenant=world.tenant)[batch_id]
    prompt, completion = 10 + 11 + 12, 3 * 5  # the mock's usage: 10 + the line's number, 5 out
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
    assert record.cost_usd == (prompt * Decimal("0.15") + completion * Decimal("0.6")) / 1_000_000 / 2
    assert record.metadata["requests"] == 3 and not record.unpriced


def test_deleting_an_unpriced_batchs_output_prices_the_batch_first(world: World) -> None:
    client = world.sdk()
    batch_id, output = _finished_unpriced(world, client, faults=1)
    deleted = client.files.delete(output)
    assert deleted.deleted and deleted.id == output
    # Priced by the delete, before the file went: charged once, with every line's usage.
    _assert_charged(world, batch_id)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(output)


def test_when_that_pricing_fails_the_delete_is_refused_and_can_be_retried(world: World) -> None:
    client = world.sdk()
    batch_id, output = _finished_unpriced(world, client, faults=2)
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.delete(output)
    assert refused.value.status_code == 503
    assert refused.value.response.headers.get("retry-after")
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "store_unavailable"
    assert batch_id in body["message"] and "try the delete again" in body["message"]
    # Nothing deleted: the file is still there, and the batch still unpriced.
    assert client.files.retrieve(output).id == output
    assert batch_id not in ledger.records(world.database, world.tenant)
    # The upstream reads again: the delete prices the batch, then goes.
    assert client.files.delete(output).deleted
    _assert_charged(world, batch_id)


def test_deleting_a_priced_batchs_output_or_another_file_is_not_held(world: World) -> None:
    client = world.sdk()
    batch_id, output = _finished_unpriced(world, client, faults=1)
    client.batches.retrieve(batch_id)  # seen again: priced after this response
    _assert_charged(world, batch_id)
    assert client.files.delete(output).deleted
    other = client.files.create(file=("notes.jsonl", _jsonl(1)), purpose="batch")
    assert client.files.delete(other.id).deleted
    [record] = [r for r in ledger.records(world.database, world.tenant).values() if r.request_id == batch_id]
    assert record.prompt_tokens == 33


def test_a_batch_whose_output_is_gone_at_the_provider_is_recorded_once_not_retried_forever(
    world: World, mock_upstream: Mock
) -> None:
    # Its output expired (output_expires_after) or was deleted at the provider before the
    # gateway could read it: the batch is recorded with what is known (its requests, its cost
    # unknown: unpriced, flagged output_missing) instead of a 404 on every pricing round.
    client = world.sdk()
    source = client.files.create(file=("in.jsonl", _jsonl(3)), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    upstream = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    done = httpx.get(f"{mock_upstream.url}/v1/batches/{batch.id}", headers=upstream, timeout=30).json()
    assert done["status"] == "completed"
    output = done["output_file_id"]
    gone = httpx.delete(f"{mock_upstream.url}/v1/files/{output}", headers=upstream, timeout=30)
    assert gone.status_code == 200, gone.text
    assert client.batches.retrieve(batch.id).status == "completed"  # priced after this response
    record = ledger.wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.unpriced and record.cost_usd == 0 and record.metadata["output_missing"] is True
    assert record.metadata["requests"] == 3 and record.metadata["batch_status"] == "completed"
    # Priced (as far as it can be): not read again.
    client.batches.retrieve(batch.id)
    world.gateway.process.wait_for_all(f"batch {batch.id}: its output file")
    assert world.gateway.process.output.count(f"batch {batch.id}: its output file") == 1
