"""A caller that disconnects while the gateway records an object the upstream has just created
(here a batch) does not stop the recording halfway: it is carried to the end, and when the
database then refuses the row the batch is cancelled at the provider as it would be had the
caller stayed, not left to run with no record. (An upload is not cancelled by its caller
leaving once its body is read: http/files/edge.py.)

Cluster (PostgreSQL) only: the test holds a SHARE lock on ``owned_objects`` (reads go on, writes
wait) so that the gateway's INSERT waits, sees it waiting in ``pg_stat_activity`` (the moment is
known, not guessed), disconnects the client, waits for the gateway to log the disconnect, then
adds a constraint refusing the row and releases the lock. SQLite shows no waiting writer, so the
same moment cannot be caught there; the code path is the same for both backends (http/files/unrecorded.py)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.stores.sql.engine import create_engine
from tests.ledger import database_of
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WAIT_SECONDS = 30.0
WAITING_INSERT = sa.text("SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                         "AND query ILIKE 'INSERT INTO owned_objects%'")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    config = openai_config(mock_upstream)
    config["files"] = {"provider": "local-openai"}
    postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
    config["database"] = {"url": postgres.create_database(f"gone_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp("records-after-disconnect")
    gw = start_gateway(config, tmp)
    try:
        yield gw, database_of(config, tmp)
    finally:
        gw.process.stop()


def _create_batch(port: int, key: str, file_id: str) -> bytes:
    body = orjson.dumps({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                         "completion_window": "24h"})
    head = (f"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _until(check: sa.TextClause, conn: AsyncConnection) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while not (await conn.execute(check)).scalar():
            await conn.rollback()  # the statistics are read once per transaction: a new one sees anew
            await asyncio.sleep(0.05)  # polling the database for a state, not waiting out a guess


def test_a_batch_recorded_after_its_caller_left_is_still_cancelled_when_refused(
        cluster: tuple[Gateway, str], mock_upstream: Mock) -> None:
    gw, database = cluster
    tenant = f"gone-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": tenant, "name": tenant}, headers=ADMIN,
                      timeout=30)
    assert made.status_code == 201, made.text
    created = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"], "tenant": tenant}, headers=ADMIN,
                         timeout=30)
    assert created.status_code == 201, created.text
    key = str(created.json()["key"])
    upstream = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
    line = (b'{"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions", "body": '
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}\n')
    source = client.files.create(file=("requests.jsonl", line), purpose="batch")

    async def scenario() -> str:
        engine = create_engine(database)
        try:
            async with engine.connect() as holder, engine.connect() as watcher:
                await holder.execute(sa.text("BEGIN"))
                await holder.execute(sa.text("LOCK TABLE owned_objects IN SHARE MODE"))
                _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
                writer.write(_create_batch(gw.port, key, source.id))
                await writer.drain()
                # The batch is created upstream and the gateway's INSERT of its row waits on the lock.
                await _until(WAITING_INSERT, watcher)
                writer.close()  # the caller leaves
                await writer.wait_closed()
                await asyncio.to_thread(gw.process.wait_for, "client disconnected", WAIT_SECONDS)
                await holder.execute(sa.text("ALTER TABLE owned_objects ADD CONSTRAINT owned_objects_gone "
                                             "CHECK (NOT (tenant_id LIKE 'gone-%' AND kind = 'batch'))"))
                await holder.execute(sa.text("COMMIT"))
            try:
                # The recording, carried on, meets the refusal and cancels the batch upstream.
                # (The line that says so ends the log record: the database's error comes before it.)
                return await asyncio.to_thread(gw.process.wait_for_all, "undoing it there (POST /batches/",
                                               timeout=WAIT_SECONDS)
            finally:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("ALTER TABLE owned_objects DROP CONSTRAINT "
                                               "owned_objects_gone"))
        finally:
            await engine.dispose()

    logged = asyncio.run(scenario())
    found = re.search(r"undoing it there \(POST /batches/(batch_[A-Za-z0-9_]+)/cancel\)", logged)
    assert found is not None, logged
    batch = httpx.get(f"{mock_upstream.url}/v1/batches/{found.group(1)}", headers=upstream, timeout=30)
    assert batch.status_code == 200, batch.text
    assert batch.json()["status"] in ("cancelling", "cancelled"), batch.text  # not left to run
    assert list(client.batches.list()) == []  # nor shown to its caller
