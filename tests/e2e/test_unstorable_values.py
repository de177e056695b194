"""Values a database will not hold as they are never hold up the batched writers, end to end.

A service's binary request and answer (NUL characters, bytes that are not UTF-8) are kept in
the request log as text with U+FFFD in their place, still found by the log search; a caller's
NUL characters in the JSON fields are kept as JSON escapes, and where a store could not take
them (a header, the model name, a key's tags) the request is refused with an OpenAI-shaped
error. An upstream's usage past its column's range is capped so the record can be stored. A
record the database refuses whatever is done to it (a constraint) is isolated: the rest of its
batch and every later batch is stored, its body is dropped and logged once, and its usage
record is kept in the spool (never dropped) and stored at the next start once the database
takes it. Each case sends the poisoning request, then a normal one, and checks that the normal
one's record and body arrive. On the embedded default (SQLite) and on a cluster (PostgreSQL and
Redis)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from switchboard.stores.sql.engine import create_engine
from tests import ledger
from tests.e2e.test_services import Upstream, start_upstream
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
INT32_MAX = 2**31 - 1
HUGE = 3_000_000_000  # image units an upstream reports: past a 32-bit integer column


@dataclass
class World:
    kind: str
    config: dict[str, Any]
    tmp: Path
    gateway: Gateway

    @property
    def database(self) -> str:
        return ledger.database_of(self.config, self.tmp)

    def sdk(self, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30,
                             default_headers=headers)

    def chat(self, content: str, **extra: Any) -> str:
        """One chat call (its request id given as X-Request-Id); the id."""
        rid = f"unstorable-{uuid.uuid4().hex}"
        self.sdk(**{"x-request-id": rid}).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **extra)
        return rid

    def logged(self, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The request's entry in the request log once its record and body are both stored."""
        deadline = time.monotonic() + timeout
        while True:
            resp = httpx.get(f"{self.gateway.url}/admin/v1/logs", params={"request_id": request_id},
                             headers=ADMIN, timeout=30)
            assert resp.status_code == 200, resp.text
            data = resp.json()["data"]
            if data and data[0].get("request") is not None:
                return dict(data[0])
            assert time.monotonic() < deadline, f"{request_id} never reached the request log with its body"
            time.sleep(0.1)

    def search(self, words: str) -> set[str]:
        resp = httpx.get(f"{self.gateway.url}/admin/v1/logs", params={"q": words}, headers=ADMIN, timeout=30)
        assert resp.status_code == 200, resp.text
        return {entry["request_id"] for entry in resp.json()["data"]}


def _config(mock: Mock, service: Upstream) -> dict[str, Any]:
    config = openai_config(mock)
    config["services"] = [{"name": "files", "url": service.url}]
    config["request_log"] = {
        "bodies": [{"model": "service:files"}, {"model": "gpt-4o-mini"}],
        "flush_seconds": 0.1,
    }
    config["spend"] = {"flush_seconds": 0.1}
    return config


def _start(request: pytest.FixtureRequest, config: dict[str, Any], tmp: Path) -> World:
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"unstorable_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    return World(request.param, config, tmp, start_gateway(config, tmp))


@pytest.fixture(scope="module")
def service() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.process.stop()


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock, service: Upstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"unstorable-{request.param}")
    w = _start(request, _config(mock_upstream, service), tmp)
    yield w
    w.gateway.process.stop()


def test_a_binary_body_is_kept_as_text_and_later_bodies_are_still_stored(world: World) -> None:
    word = f"marker{uuid.uuid4().hex[:10]}"
    binary = f"svc-binary-{uuid.uuid4().hex}"
    resp = httpx.post(f"{world.gateway.url}/services/files/binary", params={"word": word},
                      content=b"upload\x00part\x00\xff\xfe end", timeout=30,
                      headers={**ADMIN, "x-request-id": binary, "content-type": "application/octet-stream"})
    assert resp.status_code == 200
    assert resp.content == b"\x89PNG\x00\x00\x01" + word.encode() + b"\x00\xff\xfe tail"
    after = world.chat("a normal request after the binary one")
    # The normal request's record and body arrive (on PostgreSQL the binary body's batch used to
    # fail for ever, and every body queued behind it with it); both calls are in the ledger.
    assert world.logged(after)["status"] == 200
    ledger.wait_for(world.database, {binary, after})
    entry = world.logged(binary)
    # What is not text is U+FFFD, the same on both backends.
    assert entry["request"] == "upload\ufffdpart\ufffd\ufffd\ufffd end"
    assert entry["response"] == f"\ufffdPNG\ufffd\ufffd\x01{word}\ufffd\ufffd\ufffd tail"
    assert "\x00" not in entry["request"] + entry["response"]
    # The log search still finds it by a word next to the replaced bytes.
    assert world.search(word) == {binary}
    assert binary in world.search("upload part")


def test_nul_characters_a_caller_sends_are_kept_escaped_or_refused(world: World) -> None:
    word = f"alpha{uuid.uuid4().hex[:10]}"
    rid = world.chat(f"{word}\u0000beta", user="someone\u0000else", metadata={"note": "x\u0000y"})
    after = world.chat("a normal request after the NUL one")
    assert world.logged(after)["status"] == 200
    ledger.wait_for(world.database, {rid, after})
    request = json.loads(world.logged(rid)["request"])
    assert request["messages"][0]["content"] == f"{word}\u0000beta"
    assert request["user"] == "someone\u0000else" and request["metadata"] == {"note": "x\u0000y"}
    assert world.search(word) == {rid}

    # A model name with a NUL is no model: an OpenAI-shaped 404, nothing recorded.
    with pytest.raises(openai.NotFoundError) as missing:
        world.sdk().chat.completions.create(model="gpt-4o-mini\u0000",
                                            messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    # A key's tags (and every admin field) with a NUL: refused, 400.
    refused = httpx.post(f"{world.gateway.url}/admin/v1/keys", json={"models": ["*"], "tags": ["a\u0000b"]},
                         headers=ADMIN, timeout=10)
    assert refused.status_code == 400, refused.text
    assert "NUL" in refused.json()["error"]["message"]
    # A header with a NUL (X-Request-Id, a user header) never reaches the gateway's stages: the
    # HTTP parser refuses the request with a 400 JSON error (clients will not even send it).
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-request-id: a\x00b\r\n"
                     b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\ncontent-length: 2\r\n\r\n{}")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"


def test_usage_past_its_columns_range_is_capped_and_stored(world: World) -> None:
    """An upstream reporting more units than the ledger's integer columns hold: the counts are
    read up to the columns' range (providers/counts.py), on either database, and the record is
    stored, flagged ``usage_clamped``."""
    huge = world.chat(f"a picture mock:image_tokens={HUGE}")
    after = world.chat("a normal request after the huge one")
    found = ledger.wait_for(world.database, {huge, after})
    record = found[huge]
    assert record.image_input_tokens == INT32_MAX and record.prompt_tokens == INT32_MAX
    assert record.metadata.get("usage_clamped") is True
    world.gateway.process.wait_for_all("reported a token count above 2147483647", huge)
    assert found[after].status == 200 and found[after].image_input_tokens == 0


# -- a record the database refuses whatever is done to it ----------------------------------------

REFUSED_PREFIX = "refuse-"


async def _refuse(database: str, kind: str, on: bool) -> None:
    """Make the database refuse (or take again) rows whose request id starts with ``refuse-``, in
    both tables the request path writes: a CHECK constraint (PostgreSQL), a trigger (SQLite)."""
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            for table in ("usage_records", "request_bodies"):
                if kind == "cluster" and on:
                    await conn.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_refuse "
                                               f"CHECK (request_id NOT LIKE '{REFUSED_PREFIX}%')"))
                elif kind == "cluster":
                    await conn.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT {table}_refuse"))
                elif on:
                    await conn.execute(sa.text(
                        f"CREATE TRIGGER {table}_refuse BEFORE INSERT ON {table} "
                        f"WHEN NEW.request_id LIKE '{REFUSED_PREFIX}%' "
                        f"BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
                else:
                    await conn.execute(sa.text(f"DROP TRIGGER {table}_refuse"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["embedded", "cluster"])
def own_world(request: pytest.FixtureRequest, mock_upstream: Mock, service: Upstream,
              tmp_path: Path) -> Iterator[World]:
    """A gateway of the test's own: it is restarted."""
    w = _start(request, _config(mock_upstream, service), tmp_path)
    yield w
    w.gateway.process.stop()


def test_a_record_the_database_refuses_is_kept_in_the_spool_and_stored_later(own_world: World) -> None:
    world = own_world
    world.chat("before the constraint")  # the tables exist and the writers have run once
    asyncio.run(_refuse(world.database, world.kind, on=True))
    refused = f"{REFUSED_PREFIX}{uuid.uuid4().hex}"
    world.sdk(**{"x-request-id": refused}).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "refused whatever is done"}])
    after = world.chat("a normal request after the refused one")
    # Everything after it is stored; the refused record is not, and is said to be kept.
    assert world.logged(after)["status"] == 200
    ledger.wait_for(world.database, {after})
    output = world.gateway.process
    output.wait_for_all("usage ledger: the database refused 1 usage record(s)", refused, "kept in the spool")
    output.wait_for_all("request log: the database refused the bodies of request", refused)
    assert refused not in ledger.records(world.database)
    spooled = b"".join(path.read_bytes() for path in (world.tmp / "data" / "spool").glob("usage-*.spool"))
    assert refused.encode() in spooled
    # The database takes it again: the next start replays the spool and stores it.
    asyncio.run(_refuse(world.database, world.kind, on=False))
    world.gateway.process.stop()
    world.gateway = start_gateway(world.config, world.tmp)
    found = ledger.wait_for(world.database, {refused, after})
    assert found[refused].status == 200 and found[refused].prompt_tokens > 0
    spool = world.tmp / "data" / "spool"
    deadline = time.monotonic() + 20
    while any(refused.encode() in path.read_bytes() for path in spool.glob("usage-*.spool")):
        assert time.monotonic() < deadline, "the replayed segment was never removed"
        time.sleep(0.1)
