"""UsageLedger contract: idempotent by request id, read back within the tenant."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from switchboard.stores import KeyRecord, UsageRecord
from switchboard.stores.protocols import usage_row
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)


def usage(request_id: str, tenant: str = "tenant-a", minutes: int = 0, **fields: object) -> UsageRecord:
    record = UsageRecord(
        request_id=request_id,
        tenant_id=tenant,
        model="gpt-4o-mini",
        key_id="key-1",
        team_id="team-1",
        user_id="user-1",
        provider="openai",
        status=200,
        prompt_tokens=12,
        completion_tokens=34,
        cost_usd=Decimal("0.000123456"),
        latency_ms=87,
        created_at=T0 + timedelta(minutes=minutes),
        metadata={"stream": True},
    )
    return replace(record, **fields)  # type: ignore[arg-type]


async def test_append_is_idempotent_by_request_id(backend: Backend) -> None:
    ledger = backend.stores.ledger
    assert await ledger.append([usage("r1"), usage("r2")]) == 2
    assert await ledger.append([usage("r1", status=500), usage("r2"), usage("r3")]) == 1
    assert await ledger.append([]) == 0
    first = await ledger.get("tenant-a", "r1")
    assert first == usage("r1")  # the first write wins, every field intact
    assert len(await ledger.recent("tenant-a")) == 3


async def test_concurrent_appends_of_one_request_store_it_once(backend: Backend) -> None:
    peer = await backend.peer()
    ledgers = [backend.stores.ledger, peer.ledger]
    counts = await asyncio.gather(*(ledgers[i % 2].append([usage("same")]) for i in range(20)))
    assert sum(counts) == 1
    assert [r.request_id for r in await backend.stores.ledger.recent("tenant-a")] == ["same"]


async def test_reads_are_scoped_to_the_tenant(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append([usage("a1"), usage("b1", tenant="tenant-b")])
    assert await ledger.get("tenant-b", "a1") is None
    got = await ledger.get("tenant-b", "b1")
    assert got is not None and got.tenant_id == "tenant-b"
    assert [r.request_id for r in await ledger.recent("tenant-a")] == ["a1"]


async def test_recent_is_newest_first_and_bounded(backend: Backend) -> None:
    ledger = backend.stores.ledger
    await ledger.append([usage(f"r{i}", minutes=i) for i in (3, 1, 4, 0, 2)])
    assert [r.request_id for r in await ledger.recent("tenant-a", limit=3)] == ["r4", "r3", "r2"]


async def test_large_batches_and_exact_costs(backend: Backend) -> None:
    ledger = backend.stores.ledger
    records = [usage(f"bulk-{i}", cost_usd=Decimal(i) / Decimal(10**9)) for i in range(1234)]
    assert await ledger.append(records) == 1234
    got = await ledger.get("tenant-a", "bulk-1233")
    assert got is not None and got.cost_usd == Decimal("0.000001233")
    big = usage("big", cost_usd=Decimal("1234567.123456789"))
    await ledger.append([big])
    assert await ledger.get("tenant-a", "big") == big


async def test_the_billing_split_timings_and_tags_are_kept(backend: Backend) -> None:
    ledger = backend.stores.ledger
    full = usage(
        "split", prompt_tokens=1000, completion_tokens=300, cache_read_tokens=600, cache_write_5m_tokens=100,
        cache_write_1h_tokens=50, reasoning_tokens=120, unpriced=True, ttft_ms=42, stream=True,
        error_code=None, upstream_model="gpt-4o-mini-2024-07-18", tags=("billing", "eu"),
        image_input_tokens=7, audio_input_tokens=11, image_output_tokens=13, audio_output_tokens=17,
    )
    failed = usage("failed", status=502, error_code="upstream_error", prompt_tokens=0, completion_tokens=0)
    assert await ledger.append([full, failed]) == 2
    assert await ledger.get("tenant-a", "split") == full
    assert await ledger.get("tenant-a", "failed") == failed


async def test_rows_are_stored_exactly_as_records_are_and_once(backend: Backend) -> None:
    """``append_rows`` (the usage writer's path) stores what ``append`` stores, idempotently."""
    ledger = backend.stores.ledger
    full = usage(
        "row-full", prompt_tokens=1000, completion_tokens=300, cache_read_tokens=600,
        cache_write_5m_tokens=100, cache_write_1h_tokens=50, reasoning_tokens=120, unpriced=True,
        ttft_ms=42, stream=True, upstream_model="gpt-4o-mini-2024-07-18", tags=("billing", "eu"),
        cost_usd=Decimal("1234567.123456789"),
        metadata={"operation": "chat", "estimated": True, "nested": {"a": [1, "é"]}},
        image_input_tokens=7, audio_input_tokens=11, image_output_tokens=13, audio_output_tokens=17,
    )
    last = datetime(2026, 6, 1, 23, 59, 59, 999999, UTC)
    plain = usage("row-plain", key_id=None, team_id=None, user_id=None, provider=None, metadata={},
                  status=499, error_code="client_closed", created_at=last)
    await ledger.append_rows([usage_row(full), usage_row(plain)])
    assert await ledger.get("tenant-a", "row-full") == full
    assert await ledger.get("tenant-a", "row-plain") == plain
    await ledger.append([usage("same-as-row")])
    await ledger.append_rows([usage_row(usage("same-as-row", status=500)), usage_row(full)])  # replays
    assert await ledger.get("tenant-a", "same-as-row") == usage("same-as-row")  # the first write wins
    assert len(await ledger.recent("tenant-a")) == 3
    await ledger.append_rows([])
    # Stored timestamps compare as instants, to the microsecond.
    assert await ledger.total("tenant-a", "tenant", "tenant-a", last, "tokens") == Decimal(12 + 34)
    want = Decimal("1234567.123456789") + Decimal("0.000123456")
    assert await ledger.total("tenant-a", "key", "key-1", T0, "usd") == want


async def test_many_rows_in_one_append(backend: Backend) -> None:
    ledger = backend.stores.ledger
    nano = Decimal(10**9)
    rows = [usage_row(usage(f"many-{i}", minutes=i % 60, cost_usd=Decimal(i) / nano)) for i in range(1500)]
    await ledger.append_rows(rows)
    await ledger.append_rows(rows[:700])
    assert len(await ledger.recent("tenant-a", limit=5000)) == 1500
    assert await ledger.total("tenant-a", "user", "user-1", T0, "usd") == Decimal(sum(range(1500))) / nano


async def test_a_keys_total_counts_every_key_of_its_lineage(backend: Backend) -> None:
    """A key's budget is held under its lineage (its rotation chain's first key): rebuilt from
    the ledger, it counts what every key of the chain spent, and only in its tenant."""
    keys = backend.stores.keys
    for record in (KeyRecord("key-a", "h-a", "sk-sb-a", "tenant-a"),
                   KeyRecord("key-b", "h-b", "sk-sb-b", "tenant-a", lineage_id="key-a"),
                   KeyRecord("key-c", "h-c", "sk-sb-c", "tenant-a", lineage_id="key-a"),
                   KeyRecord("key-d", "h-d", "sk-sb-d", "tenant-a")):
        await keys.put(record)
    cost = Decimal("0.000000001")
    await backend.stores.ledger.append([
        usage("l-a", key_id="key-a", cost_usd=cost), usage("l-b", key_id="key-b", cost_usd=2 * cost),
        usage("l-c", key_id="key-c", cost_usd=4 * cost), usage("l-d", key_id="key-d", cost_usd=8 * cost),
        usage("l-x", tenant="tenant-b", key_id="key-b", cost_usd=16 * cost),
    ])
    ledger = backend.stores.ledger
    assert await ledger.total("tenant-a", "key", "key-a", T0, "usd") == 7 * cost
    assert await ledger.total("tenant-a", "key", "key-a", T0, "tokens") == 3 * (12 + 34)
    assert await ledger.total("tenant-a", "key", "key-d", T0, "usd") == 8 * cost
    assert await ledger.total("tenant-b", "key", "key-a", T0, "usd") == 0


async def test_rows_the_database_refuses_as_they_are_are_stored_made_storable(backend: Backend) -> None:
    """A batch the database (or its driver) refuses for what it holds is stored with every row
    made storable: NUL characters and unpaired surrogates replaced by U+FFFD, text cut to its
    column, integers capped to their column's range; rows storable as they were are unchanged,
    nothing of the batch is lost, and a replay stores nothing twice."""
    ledger = backend.stores.ledger
    huge = usage("huge", prompt_tokens=3_000_000_000)
    plain = usage("plain")
    await ledger.append_rows([usage_row(huge), usage_row(plain)])
    assert await ledger.get("tenant-a", "plain") == plain
    stored_huge = await ledger.get("tenant-a", "huge")
    assert stored_huge is not None
    # PostgreSQL's column is 32-bit: capped; SQLite's integers hold it as it is.
    assert stored_huge.prompt_tokens == (2**31 - 1 if backend.kind == "cluster" else 3_000_000_000)

    # Refused by every backend (an integer past 64 bits, an unpaired surrogate cannot even be
    # sent; PostgreSQL refuses the NUL characters and the over-long text too).
    odd = usage("odd", model="m\x00" + "x" * 300, user_id="u\x00", upstream_model="up\ud800",
                tags=("t\x00ag",), metadata={"k\x00": "v\x00", "n": 2**70})
    other = usage("other")
    await ledger.append_rows([usage_row(odd), usage_row(other)])
    assert await ledger.get("tenant-a", "other") == other
    stored = await ledger.get("tenant-a", "odd")
    assert stored is not None
    assert stored.model == "m\ufffd" + "x" * 254 and stored.user_id == "u\ufffd"
    assert stored.upstream_model is not None and stored.upstream_model.startswith("up\ufffd")
    assert stored.tags == ("t\ufffdag",)
    assert stored.metadata == {"k\ufffd": "v\ufffd", "n": 2**63 - 1}
    await ledger.append_rows([usage_row(odd), usage_row(huge), usage_row(plain)])  # a replay
    assert len(await ledger.recent("tenant-a")) == 4



async def test_two_requests_sharing_a_request_id_and_start_are_both_kept(backend: Backend) -> None:
    """Two callers' requests under one X-Request-Id that started in the same microsecond (two
    instances, two workers) are two records, each with its own entry id: neither is taken for a
    replay of the other, while a replay of either (the spool's, after an outage) is stored once."""
    ledger = backend.stores.ledger
    first = usage("shared", model="gpt-4o-mini", cost_usd=Decimal("0.000001"), entry_id="e-first")
    second = usage("shared", model="gpt-4o", cost_usd=Decimal("0.000002"), user_id="user-2",
                   entry_id="e-second")
    await ledger.append_rows([usage_row(first)], fresh=True)
    await ledger.append_rows([usage_row(second)], fresh=True)
    await ledger.append_rows([usage_row(first), usage_row(second)])  # replayed
    stored = await ledger.recent("tenant-a")
    assert sorted(stored, key=lambda r: r.model) == [second, first]
    assert await ledger.get("tenant-a", "shared") == first  # the first made (entry ids in order)
    assert await ledger.total("tenant-a", "tenant", "tenant-a", T0, "usd") == Decimal("0.000003")
    # The other path (a batch's record) the same way; a record without an entry id is keyed by
    # its request id, so it is stored once however often it is appended.
    third = usage("shared", entry_id="e-third")
    assert await ledger.append([third, third, usage("batch_1"), usage("batch_1")]) == 2
    assert await ledger.append([usage("batch_1", status=500)]) == 0
    assert (await ledger.get("tenant-a", "batch_1")) == usage("batch_1", entry_id="batch_1")
    assert len(await ledger.recent("tenant-a")) == 4
