"""LogSearch contract: the request log (usage records, with their stored bodies) searched on
SQLite and PostgreSQL alike: each filter finds its records, the cursor walks every record once,
a tenant never sees another's records or bodies, and text search finds words in bodies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_database
from switchboard.stores.protocols import LogQuery, LogSearch, usage_row
from switchboard.stores.sql import tables
from switchboard.stores.sql.tables import request_bodies
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)
DAY = {"since": T0 - timedelta(days=1), "until": T0 + timedelta(days=1)}


def usage(request_id: str, **fields: Any) -> UsageRecord:
    record = UsageRecord(
        request_id=request_id, tenant_id="tenant-a", model="gpt-4o-mini", key_id="key-1",
        team_id="team-1", user_id="user-1", provider="openai", status=200, prompt_tokens=10,
        completion_tokens=20, cost_usd=Decimal("0.000100"), latency_ms=100, created_at=T0,
        deployment="openai-east", attempts=({"deployment": "openai-east", "status": 200, "ms": 90},),
        overhead_ms=3, upstream_ms=90, ttft_ms=40, tags=("billing",),
    )
    return replace(record, **fields)


def world() -> list[UsageRecord]:
    minute = timedelta(minutes=1)
    return [
        usage("a-plain"),
        usage("a-claude", model="claude", provider="anthropic", deployment="anthropic-1",
              created_at=T0 + minute),
        usage("a-team2", team_id="team-2", key_id="key-2", user_id="user-2", created_at=T0 + 2 * minute),
        usage("a-limited", status=429, error_code="rate_limited", created_at=T0 + 3 * minute),
        usage("a-broken", status=502, error_code="upstream_error", created_at=T0 + 4 * minute),
        usage("a-slow", latency_ms=9000, created_at=T0 + 5 * minute),
        usage("a-dear", cost_usd=Decimal("1.5"), created_at=T0 + 6 * minute),
        usage("a-old", created_at=T0 - timedelta(days=3)),
        usage("b-one", tenant_id="tenant-b", key_id="key-b", team_id="team-b", user_id="user-b"),
    ]


async def add_bodies(backend: Backend, bodies: Sequence[dict[str, Any]]) -> None:
    """Bodies written straight into the table (capturing them is the request log's job); one
    without a log id is stored as revision 0043 leaves a body from before log ids: its request
    id as log id."""
    engine, _ = await open_database(backend.database)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(request_bodies), [
                {"request_headers": None, "truncated": False, "response": None, "log_id": body["request_id"],
                 **body} for body in bodies])
    finally:
        await engine.dispose()


async def seeded(backend: Backend) -> LogSearch:
    # append_rows: the usage writer's path, which stores the timings too.
    await backend.stores.ledger.append_rows([usage_row(r) for r in world()])
    await add_bodies(backend, [
        {"request_id": "a-plain", "created_at": T0, "tenant_id": "tenant-a",
         "request": '{"messages": [{"role": "user", "content": "Tell me about pelicans please"}]}',
         "response": '{"choices": [{"message": {"content": "Pelicans are large water birds"}}]}',
         "request_headers": {"user-agent": "tests"}, "truncated": True},
        # Stored a little after its record's time (as when it is written at the response's end).
        {"request_id": "a-claude", "created_at": T0 + timedelta(minutes=1, seconds=30),
         "tenant_id": "tenant-a",
         "request": '{"messages": [{"content": "a walrus and 100% of it"}]}'},
        {"request_id": "b-one", "created_at": T0, "tenant_id": "tenant-b",
         "request": '{"messages": [{"content": "pelicans of tenant b"}]}'},
    ])
    search = backend.stores.log_search
    assert search is not None
    return search


async def ids(search: LogSearch, tenant: str | None = "tenant-a", **fields: Any) -> list[str]:
    page = await search.search(tenant, LogQuery(**{**DAY, **fields}))
    return [e.record.request_id for e in page.entries]


FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"request_id": "a-claude"}, ["a-claude"]),
    ({"team_id": "team-2"}, ["a-team2"]),
    ({"key_id": "key-2"}, ["a-team2"]),
    ({"user_id": "user-2"}, ["a-team2"]),
    ({"model": "claude"}, ["a-claude"]),
    ({"deployment": "anthropic-1"}, ["a-claude"]),
    ({"provider": "anthropic"}, ["a-claude"]),
    ({"status": 429}, ["a-limited"]),
    ({"status_class": 5}, ["a-broken"]),
    ({"status_class": 4}, ["a-limited"]),
    ({"error_code": "upstream_error"}, ["a-broken"]),
    ({"min_latency_ms": 5000}, ["a-slow"]),
    ({"max_latency_ms": 99, "min_latency_ms": 0}, []),
    ({"min_cost_usd": Decimal("1")}, ["a-dear"]),
    ({"max_cost_usd": Decimal("0.00005")}, []),
    ({"min_cost_usd": Decimal("1.5"), "max_cost_usd": Decimal("1.5")}, ["a-dear"]),
    ({"text": "pelicans"}, ["a-plain"]),
    ({"text": "water birds"}, ["a-plain"]),  # every word, in the request or the response
    ({"text": "pelicans walrus"}, []),
    ({"text": "walrus"}, ["a-claude"]),
    ({"owners": ("user-2",)}, ["a-team2"]),
    ({"owners": ("key-2", "nobody")}, ["a-team2"]),
    ({"model": "claude", "status_class": 2}, ["a-claude"]),
]


async def test_each_filter_finds_its_records(backend: Backend) -> None:
    search = await seeded(backend)
    everything = await ids(search)
    assert everything == ["a-dear", "a-slow", "a-broken", "a-limited", "a-team2", "a-claude", "a-plain"]
    for fields, expected in FILTERS:
        assert await ids(search, **fields) == expected, fields
    # No time bound: the whole log (a request id lookup needs none).
    assert await ids(search, since=None, until=None, request_id="a-old") == ["a-old"]
    assert "a-old" in await ids(search, since=None, until=None)
    assert await ids(search, until=T0) == []  # until is exclusive
    # The record's time decides, not its body's (stored 30 s after it, past this range's end).
    one_second = {"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=1, seconds=1)}
    assert await ids(search, text="walrus", **one_second) == ["a-claude"]
    assert await ids(search, since=T0 + timedelta(minutes=6)) == ["a-dear"]  # since inclusive


async def test_records_carry_every_ledger_field_and_bodies_when_asked(backend: Backend) -> None:
    search = await seeded(backend)
    page = await search.search("tenant-a", LogQuery(request_id="a-plain", include_bodies=True))
    [entry] = page.entries
    assert entry.record == world()[0]
    assert entry.body is not None
    assert "pelicans" in (entry.body.request or "") and "water birds" in (entry.body.response or "")
    assert (entry.body.request_headers, entry.body.truncated) == ({"user-agent": "tests"}, True)
    page = await search.search("tenant-a", LogQuery(request_id="a-plain"))
    assert page.entries[0].body is None  # bodies only when asked for
    page = await search.search("tenant-a", LogQuery(request_id="a-team2", include_bodies=True))
    assert page.entries[0].body is None and page.entries[0].record.request_id == "a-team2"  # none stored


async def test_a_body_joins_only_the_record_whose_own_id_it_carries(backend: Backend) -> None:
    # A request id is the caller's X-Request-Id: two users may send the same one. Bob's body,
    # stored nearer in time to Alice's record than to his own, still joins his record only.
    second = timedelta(seconds=1)
    alice = usage("shared", user_id="alice", key_id="key-alice", log_id="log-alice")
    bob = usage("shared", user_id="bob", key_id="key-bob", log_id="log-bob", created_at=T0 + 10 * second)
    await backend.stores.ledger.append_rows([usage_row(alice), usage_row(bob)])
    await add_bodies(backend, [{"request_id": "shared", "created_at": T0 + second, "tenant_id": "tenant-a",
                                "request": "bob's question", "log_id": "log-bob"}])
    search = backend.stores.log_search
    assert search is not None
    for owner, body in (("alice", None), ("bob", "bob's question")):
        page = await search.search("tenant-a", LogQuery(request_id="shared", owners=(owner,),
                                                        include_bodies=True, **DAY))
        [entry] = page.entries
        assert (entry.record.user_id, entry.body.request if entry.body else None) == (owner, body)
    # Rows written before the records carried their own id: a body joins a record of its request
    # id only when no other record has that id.
    await backend.stores.ledger.append_rows([usage_row(usage("old", created_at=T0 + n * second))
                                             for n in (0, 5)] + [usage_row(usage("lone"))])
    await add_bodies(backend, [{"request_id": rid, "created_at": T0, "tenant_id": "tenant-a", "request": rid}
                               for rid in ("old", "lone")])
    page = await search.search("tenant-a", LogQuery(request_id="old", include_bodies=True, **DAY))
    assert [e.body for e in page.entries] == [None, None]
    page = await search.search("tenant-a", LogQuery(request_id="lone", include_bodies=True, **DAY))
    assert [e.body.request if e.body else None for e in page.entries] == ["lone"]


async def test_a_body_from_before_log_ids_never_joins_a_record_far_from_it(backend: Backend) -> None:
    # Rows from before revision 0037: Alice's body kept after her record was deleted
    # (records_days shorter than days), Bob's record of the same X-Request-Id written the next
    # day. The body is not Bob's: it is not shown with his record (PostgreSQL's join window held
    # that already; SQLite joined at any distance in time).
    await backend.stores.ledger.append_rows([usage_row(usage("reused", user_id="bob", key_id="key-bob"))])
    await add_bodies(backend, [{"request_id": "reused", "created_at": T0 - timedelta(hours=20),
                                "tenant_id": "tenant-a", "request": "alice's question"}])
    search = backend.stores.log_search
    assert search is not None
    page = await search.search("tenant-a", LogQuery(request_id="reused", owners=("bob",),
                                                    include_bodies=True, **DAY))
    [entry] = page.entries
    assert entry.record.user_id == "bob" and entry.body is None


async def test_a_tenant_never_sees_another_tenants_records_or_bodies(backend: Backend) -> None:
    search = await seeded(backend)
    assert await ids(search, "tenant-a", request_id="b-one") == []
    assert await ids(search, "tenant-b", request_id="a-plain") == []
    assert await ids(search, "tenant-b", text="pelicans") == ["b-one"]
    assert await ids(search, "tenant-b") == ["b-one"]
    page = await search.search("tenant-b", LogQuery(include_bodies=True, **DAY))
    assert [e.body.request if e.body else None for e in page.entries] == [
        '{"messages": [{"content": "pelicans of tenant b"}]}']
    # The platform admin's view (no tenant) spans both.
    assert await ids(search, None, text="pelicans") == ["b-one", "a-plain"]  # same time: by id
    assert set(await ids(search, None, request_id="b-one")) == {"b-one"}


async def test_the_cursor_walks_every_record_exactly_once(backend: Backend) -> None:
    # 23 records, many sharing one timestamp: the request id breaks the tie; and three requests
    # that shared a caller's request id and start, told apart by their entry ids.
    records = [usage(f"p-{i:02d}", created_at=T0 + timedelta(seconds=i // 4)) for i in range(23)]
    records += [usage("p-05", created_at=T0 + timedelta(seconds=1), entry_id=f"p-05-{n}") for n in range(3)]
    await backend.stores.ledger.append(records)
    search = backend.stores.log_search
    assert search is not None
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = await search.search("tenant-a", LogQuery(limit=5, before=before, **DAY))
        pages += 1
        seen += [e.record.request_id for e in page.entries]
        if not page.has_more:
            break
        last = page.entries[-1].record
        before = (last.created_at, last.request_id, last.entry_id)
    assert pages == 6
    assert seen == sorted((r.request_id for r in records), key=lambda i: (int(i[2:]) // 4, i), reverse=True)
    page = await search.search("tenant-a", LogQuery(limit=26, **DAY))
    assert len(page.entries) == 26 and page.has_more is False
    # A cursor made before entry ids (time and request id) still reads on after that request id.
    old = (T0 + timedelta(seconds=1), "p-05")
    page = await search.search("tenant-a", LogQuery(limit=1, before=old, **DAY))
    assert [e.record.request_id for e in page.entries] == ["p-04"]


async def test_text_search_takes_words_literally(backend: Backend) -> None:
    search = await seeded(backend)
    # LIKE's wildcards and a quote are plain characters, not patterns or SQL.
    # SQLite finds the sign itself; PostgreSQL's full text has no word in it, so finds nothing.
    assert await ids(search, text="%") == (["a-claude"] if backend.kind == "embedded" else [])
    assert await ids(search, text="_") == []
    assert await ids(search, text="o'brien") == []
    assert await ids(search, text="PELICANS") == ["a-plain"]  # case does not matter


async def test_the_migrated_indexes_are_the_ones_tables_py_declares(backend: Backend) -> None:
    engine, _ = await open_database(backend.database)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: {
                table: {ix["name"] for ix in sa.inspect(c).get_indexes(table)}
                for table in ("usage_records", "request_bodies")})
    finally:
        await engine.dispose()
    postgres_only = {"ix_request_bodies_text"} if backend.kind == "embedded" else set()
    declared = {table: {ix.name for ix in tables.metadata.tables[table].indexes} - postgres_only
                for table in ("usage_records", "request_bodies")}
    assert found == declared
    assert "ix_usage_records_tenant_model_created" in found["usage_records"]
