"""A batch the upstream created but the database refused to record, end to end, on the embedded
database and on a cluster (PostgreSQL and Redis): the caller gets a 503 saying the batch was
cancelled at the provider, and the provider's batch is indeed cancelled (not left to run and cost
money with no record of it), for an OpenAI batch (/v1/batches) and an Anthropic message batch
(/v1/messages/batches), whose models record is not left behind either. A file the upstream stored
but the database refused to record (/v1/files) is deleted there (not left to take storage unseen)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from switchboard.stores.factory import open_at
from switchboard.stores.protocols import MESSAGE_BATCH_MODELS
from switchboard.stores.sql.engine import create_engine
from tests.ledger import database_of
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
REFUSED_PREFIX = "refuse-"  # the tenants whose batch rows the database refuses
FILES_REFUSED_PREFIX = "refusefile-"  # the tenants whose file rows the database refuses


@dataclass
class World:
    gateway: Gateway
    mock: Mock
    database: str
    kind: str
    tenant: str  # a tenant whose batches the database refuses
    files_tenant: str  # a tenant whose files the database refuses

    def key(self, tenant: str | None = None) -> str:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys",
                          json={"models": ["*"], "tenant": tenant or self.tenant}, headers=ADMIN, timeout=30)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])


async def _refuse(database: str, kind: str, on: bool) -> None:
    """Make the database refuse (or take again) the batch and message batch rows of the tenants
    whose id starts with ``refuse-`` (their files and other rows are taken) and the file rows of
    those whose id starts with ``refusefile-``: a CHECK constraint (PostgreSQL), a trigger (SQLite)."""
    def refused(row: str) -> str:
        return (f"({row}tenant_id LIKE '{REFUSED_PREFIX}%' AND {row}kind IN ('batch', 'msgbatch')) OR "
                f"({row}tenant_id LIKE '{FILES_REFUSED_PREFIX}%' AND {row}kind = 'file')")

    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            if kind == "cluster" and on:
                await conn.execute(sa.text(f"ALTER TABLE owned_objects ADD CONSTRAINT owned_objects_refuse "
                                           f"CHECK (NOT ({refused('')}))"))
            elif kind == "cluster":
                await conn.execute(sa.text("ALTER TABLE owned_objects DROP CONSTRAINT owned_objects_refuse"))
            elif on:
                await conn.execute(sa.text(
                    "CREATE TRIGGER owned_objects_refuse BEFORE INSERT ON owned_objects "
                    f"WHEN {refused('NEW.')} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
            else:
                await conn.execute(sa.text("DROP TRIGGER owned_objects_refuse"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    config["providers"].append({"name": "anth", "type": "anthropic", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"].append({"name": "claude", "provider": "anth", "model": "claude-sonnet-4-5"})
    config["files"] = {"provider": "local-openai"}
    if request.param == "cluster":
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"refused_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"batch-refused-{request.param}")
    gw = start_gateway(config, tmp)
    tenant = f"{REFUSED_PREFIX}{uuid.uuid4().hex[:6]}"
    files_tenant = f"{FILES_REFUSED_PREFIX}{uuid.uuid4().hex[:6]}"
    for made_id in (tenant, files_tenant):
        made = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": made_id, "name": made_id}, headers=ADMIN,
                          timeout=30)
        assert made.status_code == 201, made.text
    database = database_of(config, tmp)
    asyncio.run(_refuse(database, request.param, on=True))
    try:
        yield World(gw, mock_upstream, database, request.param, tenant, files_tenant)
    finally:
        gw.process.stop()
        asyncio.run(_refuse(database, request.param, on=False))


def _cancelled_id(message: str, prefix: str, done: str = "cancelled") -> str:
    """The upstream id the 503 names, checking it says the object was ``done`` there."""
    assert "could not be recorded" in message and f"it was {done} at provider" in message, message
    found = re.search(rf"\(({prefix}[A-Za-z0-9_]+)\)", message)
    assert found is not None, message
    return found.group(1)


def _models_record(world: World, batch_id: str) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        stores = await open_at(world.database, None)
        try:
            assert stores.files is not None
            found = await stores.files.get(MESSAGE_BATCH_MODELS, batch_id)
            return None if found is None else dict(found.body)
        finally:
            await stores.close()

    return asyncio.run(read())


def test_an_openai_batch_the_database_refuses_is_cancelled_upstream(world: World) -> None:
    client = openai.OpenAI(base_url=world.gateway.base_url, api_key=world.key(), max_retries=0, timeout=30)
    line = (b'{"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions", "body": '
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}\n')
    source = client.files.create(file=("requests.jsonl", line), purpose="batch")  # files are taken
    with pytest.raises(openai.InternalServerError) as refused:
        client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    error = refused.value
    assert error.status_code == 503 and error.code == "store_unavailable"
    assert error.response.headers.get("retry-after")
    batch_id = _cancelled_id(str(error.message), "batch_")
    upstream = httpx.get(f"{world.mock.url}/v1/batches/{batch_id}", timeout=30,
                         headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
    assert upstream.status_code == 200, upstream.text
    assert upstream.json()["status"] in ("cancelling", "cancelled"), upstream.text
    assert list(client.batches.list()) == []  # nothing of it is shown to the caller


def test_a_message_batch_the_database_refuses_is_cancelled_upstream(world: World) -> None:
    client = anthropic.Anthropic(base_url=world.gateway.url, api_key=world.key(), max_retries=0, timeout=30)
    params = {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.batches.create(requests=[{"custom_id": "a", "params": params}])  # type: ignore[list-item]
    error = refused.value
    assert error.status_code == 503 and error.response.headers.get("retry-after")
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error", body
    batch_id = _cancelled_id(body["error"]["message"], "msgbatch_")
    upstream = httpx.get(f"{world.mock.url}/v1/messages/batches/{batch_id}", timeout=30,
                         headers={"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"})
    assert upstream.status_code == 200, upstream.text
    assert upstream.json()["cancel_initiated_at"] is not None, upstream.text
    # Its models record (written first) is dropped with it; the caller sees no batch.
    assert _models_record(world, batch_id) is None
    assert list(client.messages.batches.list()) == []


def test_a_file_the_database_refuses_is_deleted_upstream(world: World) -> None:
    client = openai.OpenAI(base_url=world.gateway.base_url, api_key=world.key(world.files_tenant),
                           max_retries=0, timeout=30)
    with pytest.raises(openai.InternalServerError) as refused:
        client.files.create(file=("notes.jsonl", b'{"a": 1}\n'), purpose="batch")
    error = refused.value
    assert error.status_code == 503 and error.code == "store_unavailable"
    assert error.response.headers.get("retry-after")
    file_id = _cancelled_id(str(error.message), "file-", done="deleted")
    upstream = httpx.get(f"{world.mock.url}/v1/files/{file_id}", timeout=30,
                         headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
    assert upstream.status_code == 404, upstream.text  # not left at the provider
    assert list(client.files.list()) == []  # nothing of it is shown to the caller
