"""The request log's bodies and retention, end to end: a policy keeps one key's request and
response bodies and not another's; headers, fields and patterns are redacted before anything is
stored (and never reach the process's log); long bodies are cut; a stream is stored as the
message it assembled to (with its error when it broke off); retention removes records and
bodies past their age (whole partitions dropped on PostgreSQL). Every test runs on the embedded
default (SQLite) and on a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from switchboard.stores.factory import open_at
from switchboard.stores.protocols import RequestBody
from switchboard.stores.sql import tables
from switchboard.stores.sql.engine import create_engine
from switchboard.stores.sql.request_log import PG_LOCK_ID, day_start, partition_name
from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# What the redaction must hide: a pattern's match, a field at any depth, a dotted path, a header.
PATTERN_SECRET = "SECRET-482913"
FIELD_SECRET = "customer-7731-ssn"
PATH_SECRET = "alice-internal-name"
HEADER_SECRET = "hdr-value-55aa21"
SECRETS = (PATTERN_SECRET, FIELD_SECRET, PATH_SECRET, HEADER_SECRET)
MAX_BODY = 2048
REDACTED = "[REDACTED]"


@dataclass
class Logged:
    kind: str
    config: dict[str, Any]
    gateway: Gateway
    tmp: Path
    logged_key: dict[str, Any]  # a policy keeps its bodies
    other_key: dict[str, Any]  # no policy for it
    colleagues: tuple[dict[str, Any], dict[str, Any]]  # keys of two users of the tenant, bodies kept

    @property
    def database(self) -> str:
        return ledger.database_of(self.config, self.tmp)

    def sdk(self, key: dict[str, Any]) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key["key"], max_retries=0, timeout=30)

    def body(self, request_id: str, timeout: float = 20.0) -> RequestBody:
        """The stored body of a request, once the writer has stored it (polled with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            found = asyncio.run(_get_body(self.database, request_id))
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no stored body for {request_id}")
            time.sleep(0.1)


async def _get_body(database: str, request_id: str) -> RequestBody | None:
    """The body stored for the request's record, found by the record's log id (bodies are kept
    under it, not under the caller's request id); None before the record is stored."""
    stores = await open_at(database, None)
    try:
        assert stores.request_log is not None
        record = await stores.ledger.get("default", request_id)
        if record is None or record.log_id is None:
            return None
        return await stores.request_log.get("default", record.log_id)
    finally:
        await stores.close()


def _key(gateway: Gateway, team: str | None = None, user: str | None = None) -> dict[str, Any]:
    asked = {"models": ["*"], **({"team": team} if team else {}), **({"user": user} if user else {})}
    resp = httpx.post(f"{gateway.url}/admin/v1/keys", json=asked, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def logged(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Logged]:
    tmp = tmp_path_factory.mktemp(f"request-log-{request.param}")
    config = openai_config(mock_upstream)
    config["spend"] = {"flush_seconds": 0.1}
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"reqlog_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    # The keys first (a policy names a key by its id), then the gateway with the policy.
    first = start_gateway(config, tmp)
    logged_key, other_key = _key(first, "team-logged"), _key(first, "team-other")
    colleagues = (_key(first, user="alice"), _key(first, user="bob"))
    first.process.stop()
    config["request_log"] = {
        "bodies": [{"key": logged_key["id"], "request": True, "response": True, "headers": True},
                   *({"key": key["id"], "request": True, "response": True} for key in colleagues)],
        "max_body_bytes": MAX_BODY,
        "redact": {
            "headers": ["X-Customer-Secret"],
            "fields": ["user", "messages.name"],
            # Each pattern runs as it does alone: an inline flag, a backreference to its own group.
            # The last: quadratic in Python's re over a long line holding no TOPSECRET.
            "patterns": [r"SECRET-\d{6}", r"(\d{3})-\d{2}-\d{4}", r"<(\w+)>[^<]*</\1>", r"(?i)passw0rd=\S+",
                         r".*TOPSECRET.*"],
        },
        "retention": {"days": 30, "records_days": 60, "interval_seconds": 0.3},
        "flush_seconds": 0.1,
    }
    world = Logged(request.param, config, start_gateway(config, tmp), tmp, logged_key, other_key, colleagues)
    yield world
    world.gateway.process.stop()  # test_no_secret_reaches_the_process_log starts another


def _chat(logged: Logged, key: dict[str, Any], content: str, **extra: Any) -> str:
    """One chat call with every kind of secret in it; its request id."""
    rid = f"reqlog-{uuid.uuid4().hex}"
    messages = [{"role": "user", "content": content, "name": PATH_SECRET}]
    headers = {"x-request-id": rid, "x-customer-secret": HEADER_SECRET}
    reply = logged.sdk(key).chat.completions.create(
        model="gpt-4o-mini", messages=messages, user=FIELD_SECRET, extra_headers=headers, **extra)  # type: ignore[call-overload]
    if extra.get("stream"):
        for _ in reply:
            pass
    return rid


def test_a_policy_keeps_its_keys_bodies_redacted_and_not_another_keys(logged: Logged) -> None:
    other = _chat(logged, logged.other_key, f"not logged {PATTERN_SECRET}")
    rid = _chat(logged, logged.logged_key, f"my code is {PATTERN_SECRET}, keep it")
    ledger.wait_for(logged.database, {other, rid})
    stored = logged.body(rid)
    assert stored.tenant_id == "default" and not stored.truncated
    assert stored.request is not None and stored.response is not None and stored.request_headers is not None
    request = json.loads(stored.request)
    assert request["messages"] == [{"role": "user", "content": "my code is [REDACTED], keep it",
                                    "name": "[REDACTED]"}]
    assert request["user"] == "[REDACTED]" and request["model"] == "gpt-4o-mini"
    response = json.loads(stored.response)
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["content"].endswith("You said: my code is [REDACTED], keep it")
    headers = stored.request_headers
    assert headers["x-customer-secret"] == "[REDACTED]" and headers["authorization"] == "[REDACTED]"
    assert headers["x-request-id"] == rid
    everything = stored.request + stored.response + json.dumps(headers)
    for secret in (*SECRETS, logged.logged_key["key"]):
        assert secret not in everything
    # The other key's request has its usage record, and no body: no log id to keep one under.
    assert ledger.wait_for(logged.database, {other})[other].log_id is None


def test_a_record_carries_its_bodys_log_id_and_none_when_no_body_is_kept(logged: Logged) -> None:
    # The id joining a record and its body is made only for a request whose body is kept: in
    # each path (a reply, a stream, a refused request) record and body carry the same one.
    kept = {"reply": _chat(logged, logged.logged_key, "kept"),
            "stream": _chat(logged, logged.logged_key, "kept", stream=True)}
    kept["refused"] = refused = f"reqlog-{uuid.uuid4().hex}"
    with pytest.raises(openai.APIStatusError):
        logged.sdk(logged.logged_key).chat.completions.create(
            model="unreachable", messages=[{"role": "user", "content": "refused"}],
            extra_headers={"x-request-id": refused})
    other = _chat(logged, logged.other_key, "not kept")
    records = ledger.wait_for(logged.database, {other, *kept.values()})
    assert records[other].log_id is None
    assert records[other].entry_id not in (None, other)  # the record's own id all the same
    for path, rid in kept.items():
        log_id = records[rid].log_id
        assert log_id is not None and logged.body(rid).log_id == log_id, path
        assert records[rid].entry_id == log_id, path  # one id per record: the ledger's key too


def test_each_pattern_redacts_as_it_does_on_its_own(logged: Logged) -> None:
    rid = _chat(logged, logged.logged_key, "ssn 123-45-6789, <pin>4242</pin> and PassW0rd=hunter2 stay out")
    stored = logged.body(rid)
    expected = f"ssn {REDACTED}, {REDACTED} and {REDACTED} stay out"
    assert json.loads(stored.request or "")["messages"][0]["content"] == expected
    assert json.loads(stored.response or "")["choices"][0]["message"]["content"].endswith(expected)
    for secret in ("123-45-6789", "4242", "hunter2"):
        assert secret not in (stored.request or "") + (stored.response or "")


def test_header_values_beyond_ascii_are_kept_and_redacted_as_sent(logged: Logged) -> None:
    """A header value in UTF-8 (raw bytes, as curl or a browser sends it) is stored as that text,
    not its latin-1 reading, and the patterns search that text."""
    rid = f"reqlog-{uuid.uuid4().hex}"
    resp = httpx.post(f"{logged.gateway.base_url}/chat/completions", timeout=30,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                      headers=[(b"authorization", f"Bearer {logged.logged_key['key']}".encode()),
                               (b"x-request-id", rid.encode()),
                               (b"x-customer-name", "Zoë Åström 東京 😀".encode()),
                               (b"x-note", f"clé={PATTERN_SECRET} ünïcode".encode())])
    assert resp.status_code == 200, resp.text
    headers = logged.body(rid).request_headers
    assert headers is not None
    assert headers["x-customer-name"] == "Zoë Åström 東京 😀"
    assert headers["x-note"] == f"clé={REDACTED} ünïcode"


def test_a_long_body_is_cut_at_the_size_limit(logged: Logged) -> None:
    rid = _chat(logged, logged.logged_key, "é" * 3000 + PATTERN_SECRET)
    stored = logged.body(rid)
    assert stored.truncated
    assert stored.request is not None and stored.response is not None
    for text in (stored.request, stored.response):
        assert len(text.encode()) <= MAX_BODY
        assert PATTERN_SECRET not in text
    assert stored.request.startswith('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"éé')


def test_a_pattern_over_a_long_line_runs_with_the_bounded_engine(logged: Logged) -> None:
    """`.*TOPSECRET.*` over a 200,000-character line without it: hours of a frozen gateway with
    Python's re (which holds the interpreter lock, in the capture's worker thread too)."""
    rid = _chat(logged, logged.logged_key, "word " * 40_000)
    stored = logged.body(rid)
    request = stored.request or ""
    assert stored.truncated and '"content":"word word' in request and REDACTED not in request
    rid = _chat(logged, logged.logged_key, "the TOPSECRET plan")
    assert json.loads(logged.body(rid).request or "")["messages"][0]["content"] == REDACTED


def test_a_stream_is_stored_as_the_message_it_assembled_to(logged: Logged) -> None:
    rid = _chat(logged, logged.logged_key, f"streamed {PATTERN_SECRET}", stream=True,
                stream_options={"include_usage": True})
    stored = logged.body(rid)
    assert stored.response is not None and not stored.truncated
    response = json.loads(stored.response)
    assert response["object"] == "chat.completion"
    [choice] = response["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"].endswith("You said: streamed [REDACTED]")
    assert response["usage"]["completion_tokens"] > 0
    assert json.loads(stored.request or "")["stream"] is True


def test_a_stream_that_fails_midway_is_logged_with_its_error(logged: Logged) -> None:
    """As a refused request's entry has its error, a stream that broke off after it began has
    the error its client got last, beside the part that was relayed (which is kept too)."""
    rid = f"reqlog-{uuid.uuid4().hex}"
    relayed = []
    messages = [{"role": "user", "content": f"breaks {PATTERN_SECRET} mock:fail_after=2"}]
    stream = logged.sdk(logged.logged_key).chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, extra_headers={"x-request-id": rid})
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            relayed.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    seen = failed.value.body
    assert isinstance(seen, dict) and seen["message"] and seen["type"], seen
    assert "".join(relayed)  # the stream began before it failed
    record = ledger.wait_for(logged.database, {rid})[rid]
    assert record.status == 502 and record.error_code == seen["code"]
    response = json.loads(logged.body(rid).response or "")
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["content"] == "".join(relayed)
    assert response["error"] == {"type": seen["type"], "code": seen["code"], "message": seen["message"],
                                 "param": seen["param"]}


def test_a_refused_request_is_logged_with_its_error(logged: Logged) -> None:
    rid = f"reqlog-{uuid.uuid4().hex}"
    with pytest.raises(openai.APIStatusError):
        logged.sdk(logged.logged_key).chat.completions.create(
            model="unreachable", messages=[{"role": "user", "content": f"fails {PATTERN_SECRET}"}],
            extra_headers={"x-request-id": rid})
    stored = logged.body(rid)
    error = json.loads(stored.response or "")["error"]
    assert error["code"] and error["type"]
    assert PATTERN_SECRET not in (stored.request or "")


def test_a_request_id_sent_twice_lists_each_record_once_with_its_own_body(logged: Logged) -> None:
    # Callers (and proxies that retry) may reuse X-Request-Id: two records, each with its own body.
    rid = f"reqlog-{uuid.uuid4().hex}"
    for word in ("first", "second"):
        logged.sdk(logged.logged_key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{word} call"}],
            extra_headers={"x-request-id": rid})
    deadline = time.monotonic() + 20
    while True:
        resp = httpx.get(f"{logged.gateway.url}/admin/v1/logs", headers=ADMIN, timeout=10,
                         params={"request_id": rid, "include_bodies": "true"})
        assert resp.status_code == 200, resp.text
        listed = resp.json()["data"]
        if len(listed) >= 2 and all("request" in r for r in listed):
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)
    assert len(listed) == 2
    asked = sorted(json.loads(r["request"])["messages"][0]["content"] for r in listed)
    assert asked == ["first call", "second call"]

def _own_logs(logged: Logged, key: dict[str, Any], request_id: str, count: int) -> list[dict[str, Any]]:
    """What ``key``'s holder reads of the log for ``request_id``, once ``count`` records with
    their bodies are listed (polled with a deadline: the ledger and the bodies are written
    behind the response)."""
    deadline = time.monotonic() + 20
    while True:
        resp = httpx.get(f"{logged.gateway.url}/admin/v1/logs", timeout=10,
                         headers={"Authorization": f"Bearer {key['key']}"},
                         params={"request_id": request_id, "include_bodies": "true"})
        assert resp.status_code == 200, resp.text
        listed: list[dict[str, Any]] = resp.json()["data"]
        if len(listed) >= count and all("request" in r for r in listed):
            return listed
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)


async def _forget_record(database: str, request_id: str, key_id: str) -> None:
    """Delete a key's usage record of ``request_id``, its body kept: what retention does once
    the records' age (``retention.records_days``) is shorter than the bodies' (``days``)."""
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            u = tables.usage_records
            await conn.execute(sa.delete(u).where(u.c.request_id == request_id, u.c.key_id == key_id))
    finally:
        await engine.dispose()


def test_a_reused_request_id_never_shows_a_colleagues_body(logged: Logged) -> None:
    # X-Request-Id is the caller's choice: a colleague may send the same one. Each user of the
    # tenant sees its own record of that id, with its own body.
    alice, bob = logged.colleagues
    rid = f"reqlog-{uuid.uuid4().hex}"
    for key in (bob, alice):
        logged.sdk(key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"private to {key['id']}"}],
            extra_headers={"x-request-id": rid})
    for key in (alice, bob):
        [record] = _own_logs(logged, key, rid, 1)
        assert json.loads(record["request"])["messages"][0]["content"] == f"private to {key['id']}"
    # Bob's record is gone, his body kept (records retained for less time than bodies): Alice's
    # record is then the only one of that id, and still shows only her own body.
    asyncio.run(_forget_record(logged.database, rid, bob["id"]))
    [record] = _own_logs(logged, alice, rid, 1)
    assert json.loads(record["request"])["messages"][0]["content"] == f"private to {alice['id']}"
    assert bob["id"] not in record["request"] + (record["response"] or "")


def test_an_embeddings_reply_is_kept_without_its_vectors(logged: Logged) -> None:
    rid = f"reqlog-{uuid.uuid4().hex}"
    logged.sdk(logged.logged_key).embeddings.create(
        model="text-embedding-3-small", input=f"embed {PATTERN_SECRET}", extra_headers={"x-request-id": rid})
    stored = logged.body(rid)
    response = json.loads(stored.response or "")
    # The SDK asks for base64 vectors unless told otherwise.
    assert re.fullmatch(r"\[base64, \d+ characters\]", response["data"][0]["embedding"])
    assert json.loads(stored.request or "")["input"] == "embed [REDACTED]"


def _old_rows(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records 90, 45 and 1 days old; bodies 45 and 1 days old."""
    records = [
        {"request_id": f"old-{n}", "entry_id": f"old-{n}", "tenant_id": "default", "model": "gpt-4o-mini",
         "status": 200, "prompt_tokens": 1, "completion_tokens": 2, "cost_nano_usd": 1000, "latency_ms": 5,
         "created_at": now - timedelta(days=n), "metadata": {}}
        for n in (90, 45, 1)
    ]
    bodies = [{"request_id": f"old-{n}", "log_id": f"old-{n}", "tenant_id": "default",
               "created_at": now - timedelta(days=n), "request": "{}", "response": "{}", "truncated": False}
              for n in (45, 1)]
    return records, bodies


async def _insert_old(database: str, kind: str, now: datetime) -> dict[str, str]:
    """Back-dated rows, each (on PostgreSQL) in its day's partition, made here as the gateway
    would have made it then; the partition each landed in."""
    records, bodies = _old_rows(now)
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:
            if kind == "cluster":  # the gateway's maintenance waits until these are in place
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})
                for table in ("usage_records", "request_bodies"):
                    for n in (90, 45, 1):
                        start = day_start((now - timedelta(days=n)).date())
                        name = partition_name(table, start.date())
                        await conn.execute(sa.text(
                            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF {table} FOR VALUES '
                            f"FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"))
            await conn.execute(sa.insert(tables.usage_records), records)
            await conn.execute(sa.insert(tables.request_bodies), bodies)
            if kind != "cluster":
                return {}
            homes = {}
            for table in ("usage_records", "request_bodies"):
                query = sa.text(f"SELECT request_id, tableoid::regclass::text FROM {table} "
                                "WHERE request_id LIKE 'old-%'")
                homes.update({f"{table}/{rid}": home for rid, home in (await conn.execute(query)).all()})
            return homes
    finally:
        await engine.dispose()


async def _remaining(database: str, kind: str) -> tuple[set[str], set[str], set[str]]:
    """Old records and bodies still stored, and the partitions left (PostgreSQL)."""
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            found = []
            for table in (tables.usage_records, tables.request_bodies):
                query = sa.select(table.c.request_id).where(table.c.request_id.like("old-%"))
                found.append(set((await conn.execute(query)).scalars()))
            parts: set[str] = set()
            if kind == "cluster":
                query = sa.text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid")
                parts = set((await conn.execute(query)).scalars())
            return found[0], found[1], parts
    finally:
        await engine.dispose()


def test_retention_removes_records_and_bodies_past_their_age(logged: Logged) -> None:
    now = datetime.now(UTC)
    homes = asyncio.run(_insert_old(logged.database, logged.kind, now))
    if logged.kind == "cluster":  # each row in its day's partition
        assert homes == {f"{t}/old-{n}": partition_name(t, (now - timedelta(days=n)).date())
                         for t, days in (("usage_records", (90, 45, 1)), ("request_bodies", (45, 1)))
                         for n in days}
    deadline = time.monotonic() + 20
    while True:  # the gateway's retention runs every 0.3 s
        records, bodies, parts = asyncio.run(_remaining(logged.database, logged.kind))
        if (records == {"old-45", "old-1"} and bodies == {"old-1"}) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # Records are kept 60 days, bodies 30; newer rows stay.
    assert (records, bodies) == ({"old-45", "old-1"}, {"old-1"})
    if logged.kind == "cluster":  # gone with their partitions, not deleted row by row
        assert partition_name("usage_records", (now - timedelta(days=90)).date()) not in parts
        assert partition_name("request_bodies", (now - timedelta(days=45)).date()) not in parts
        assert partition_name("usage_records", (now - timedelta(days=45)).date()) in parts
        assert partition_name("request_bodies", (now - timedelta(days=1)).date()) in parts


def test_no_secret_reaches_the_process_log(logged: Logged) -> None:
    _chat(logged, logged.logged_key, f"last one {PATTERN_SECRET}")
    logged.gateway.process.stop()
    logged.gateway.process.wait_exit()
    output = logged.gateway.process.output
    # The module's other tests may run after this one: they get a gateway on the same state.
    logged.gateway = start_gateway(logged.config, logged.tmp)
    assert "Application startup complete" in output
    for secret in (*SECRETS, logged.logged_key["key"], logged.other_key["key"]):
        assert secret not in output
