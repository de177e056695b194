"""FileStore contract: files and batches recorded with their owners, listed per owner newest
first, updated as the upstream's object changes, and a batch's cost claimed exactly once across
instances."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.stores.protocols import (
    BATCH,
    BATCH_MODELS,
    FILE,
    MESSAGE_BATCH,
    MESSAGE_BATCH_MODELS,
    TOMBSTONE_SECONDS,
    FileStore,
    OwnedObject,
    utcnow,
)
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def owned(object_id: str, kind: str = FILE, owner: str = "key-a", tenant: str = "acme", minutes: int = 0,
          purpose: str = "batch") -> OwnedObject:
    return OwnedObject(id=object_id, kind=kind, provider="openai-main", tenant_id=tenant, owner=owner,
                       key_id=owner, team_id="team-1", purpose=purpose, status=None,
                       body={"id": object_id, "object": kind}, created_at=T0 + timedelta(minutes=minutes))


def files_of(backend: Backend) -> FileStore:
    store = backend.stores.files
    assert store is not None
    return store


async def test_a_recorded_file_is_read_back_with_its_owner(backend: Backend) -> None:
    store = files_of(backend)
    await store.put(owned("file-1"))
    got = await store.get(FILE, "file-1")
    assert got is not None
    assert (got.tenant_id, got.owner, got.key_id, got.team_id, got.provider, got.purpose) == (
        "acme", "key-a", "key-a", "team-1", "openai-main", "batch")
    assert got.created_at == T0 and got.body == {"id": "file-1", "object": "file"}
    # The same id as a batch is another object; recording it again changes nothing.
    assert await store.get(BATCH, "file-1") is None
    await store.put(owned("file-1", owner="key-b"))
    again = await store.get(FILE, "file-1")
    assert again is not None and again.owner == "key-a"


async def test_listing_shows_only_the_owners_objects_newest_first_in_pages(backend: Backend) -> None:
    store = files_of(backend)
    for i in range(5):
        await store.put(owned(f"file-{i}", minutes=i, purpose="batch" if i % 2 else "assistants"))
    await store.put(owned("file-other-key", owner="key-b", minutes=9))
    await store.put(owned("file-other-tenant", tenant="globex", minutes=9))
    await store.put(owned("batch-1", kind=BATCH, minutes=9))
    mine = await store.list_owned(FILE, "acme", "key-a")
    assert [r.id for r in mine] == ["file-4", "file-3", "file-2", "file-1", "file-0"]
    page = await store.list_owned(FILE, "acme", "key-a", limit=2)
    assert [r.id for r in page] == ["file-4", "file-3"]
    rest = await store.list_owned(FILE, "acme", "key-a", after="file-3", limit=10)
    assert [r.id for r in rest] == ["file-2", "file-1", "file-0"]
    oldest = await store.list_owned(FILE, "acme", "key-a", limit=2, newest_first=False)
    assert [r.id for r in oldest] == ["file-0", "file-1"]
    later = await store.list_owned(FILE, "acme", "key-a", after="file-1", limit=10, newest_first=False)
    assert [r.id for r in later] == ["file-2", "file-3", "file-4"]
    batch_files = await store.list_owned(FILE, "acme", "key-a", purpose="batch")
    assert [r.id for r in batch_files] == ["file-3", "file-1"]
    # Another owner's id is no cursor of this list (its place in it is not known).
    with pytest.raises(ValueError):
        await store.list_owned(FILE, "acme", "key-a", after="file-other-key")
    assert [r.id for r in await store.list_owned(BATCH, "acme", "key-a")] == ["batch-1"]


async def test_updates_and_deletes(backend: Backend) -> None:
    store = files_of(backend)
    await store.put(owned("batch-9", kind=BATCH))
    await store.update(BATCH, "batch-9", {"id": "batch-9", "status": "in_progress"}, "in_progress")
    got = await store.get(BATCH, "batch-9")
    assert got is not None and got.status == "in_progress" and got.body["status"] == "in_progress"
    assert await store.delete(BATCH, "batch-9") is True
    assert await store.delete(BATCH, "batch-9") is False
    assert await store.get(BATCH, "batch-9") is None


async def test_a_deleted_object_is_gone_but_its_id_still_pages_its_owners_list(backend: Backend) -> None:
    """Deleting each page while walking the list asks for the page after a deleted id: it is
    still the owner's cursor, and nothing else (found, listed, updated, polled, another's cursor)."""
    store = files_of(backend)
    for i in range(5):
        await store.put(owned(f"file-{i}", minutes=i))
    await store.put(owned("batch-d", kind=BATCH, minutes=1))
    for gone in ("file-4", "file-3"):
        assert await store.delete(FILE, gone) is True
    assert await store.delete(FILE, "file-4") is False  # deleted once
    assert await store.delete(BATCH, "batch-d") is True
    assert await store.get(FILE, "file-4") is None and await store.get(BATCH, "batch-d") is None
    assert [r.id for r in await store.list_owned(FILE, "acme", "key-a")] == ["file-2", "file-1", "file-0"]
    after = await store.list_owned(FILE, "acme", "key-a", after="file-3", limit=2)
    assert [r.id for r in after] == ["file-2", "file-1"]
    oldest = await store.list_owned(FILE, "acme", "key-a", after="file-3", newest_first=False)
    assert oldest == []
    await store.update(BATCH, "batch-d", {"id": "batch-d"}, "completed")  # a late poll: no effect
    assert await store.open_batches(10) == [] and await store.mark_costed("batch-d") is False
    assert await store.get(BATCH, "batch-d") is None
    assert await store.list_owned(BATCH, "acme", "key-a", after="batch-d") == []
    for tenant, owner in (("acme", "key-b"), ("globex", "key-a")):  # not theirs, deleted or not
        with pytest.raises(ValueError):
            await store.list_owned(FILE, tenant, owner, after="file-4")
    # The upstream gives the id again: the new object is recorded (its new owner's), listed.
    await store.put(owned("file-4", owner="key-b", minutes=7))
    reborn = await store.get(FILE, "file-4")
    assert reborn is not None and reborn.owner == "key-b"
    assert reborn.body == {"id": "file-4", "object": "file"}
    assert [r.id for r in await store.list_owned(FILE, "acme", "key-b")] == ["file-4"]
    assert "file-4" not in [r.id for r in await store.list_owned(FILE, "acme", "key-a")]
    with pytest.raises(ValueError):
        await store.list_owned(FILE, "acme", "key-a", after="file-4")


async def test_tombstones_are_purged_by_later_deletes_once_old(backend: Backend,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A deleted id is a cursor for TOMBSTONE_SECONDS; a delete after that purges it."""
    from switchboard.stores.sql import files

    store = files_of(backend)
    for i in range(3):
        await store.put(owned(f"file-{i}", minutes=i))
    await store.put(owned("msgbatch_m", kind=MESSAGE_BATCH_MODELS))
    assert await store.delete(MESSAGE_BATCH_MODELS, "msgbatch_m") is True  # never a cursor: gone
    await store.put(owned("msgbatch_m", kind=MESSAGE_BATCH_MODELS, owner="key-b"))
    assert (await store.get(MESSAGE_BATCH_MODELS, "msgbatch_m")).owner == "key-b"  # type: ignore[union-attr]
    await store.put(owned("batch_m", kind=BATCH_MODELS))  # an Azure batch's lines' models: the same
    assert await store.delete(BATCH_MODELS, "batch_m") is True
    await store.put(owned("batch_m", kind=BATCH_MODELS, owner="key-b"))
    assert (await store.get(BATCH_MODELS, "batch_m")).owner == "key-b"  # type: ignore[union-attr]
    assert await store.delete(FILE, "file-2") is True
    later = files.utcnow() + timedelta(seconds=TOMBSTONE_SECONDS + 1)
    with monkeypatch.context() as clock:  # a day on, as the stores see it
        clock.setattr(files, "utcnow", lambda: later)
        assert [r.id for r in await store.list_owned(FILE, "acme", "key-a", after="file-2")] == [
            "file-1", "file-0"]  # not purged yet: no delete since
        assert await store.delete(FILE, "file-1") is True
    with pytest.raises(ValueError):
        await store.list_owned(FILE, "acme", "key-a", after="file-2")
    assert [r.id for r in await store.list_owned(FILE, "acme", "key-a", after="file-1")] == ["file-0"]


async def test_old_tombstones_of_every_kind_are_purged_without_a_later_delete(backend: Backend) -> None:
    """An owner that stops deleting keeps no tombstone past its day: the poller's purge drops
    them, of every kind, oldest first and a bounded number at a time, and leaves the live
    objects and the young tombstones alone."""
    deleted = ((FILE, "file-p1"), (FILE, "file-p2"), (BATCH, "batch_p"), (MESSAGE_BATCH, "msgbatch_p"))
    store = files_of(backend)
    for i in range(3):
        await store.put(owned(f"file-p{i}", minutes=i))
    await store.put(owned("batch_p", kind=BATCH))
    await store.put(owned("msgbatch_p", kind=MESSAGE_BATCH))
    for kind, object_id in deleted:
        assert await store.delete(kind, object_id) is True
    assert await store.purge(utcnow()) == 0  # deleted just now: still cursors
    assert [r.id for r in await store.list_owned(FILE, "acme", "key-a", after="file-p2")] == ["file-p0"]
    later = utcnow() + timedelta(seconds=TOMBSTONE_SECONDS + 1)
    assert await store.purge(later, limit=1) == 1
    assert await store.purge(later) == 3
    assert await store.purge(later) == 0
    for kind, object_id in deleted:
        with pytest.raises(ValueError):  # no longer a cursor: the row is gone
            await store.list_owned(kind, "acme", "key-a", after=object_id)
    assert [r.id for r in await store.list_owned(FILE, "acme", "key-a")] == ["file-p0"]


async def test_a_batch_is_costed_once_across_instances(backend: Backend) -> None:
    store = files_of(backend)
    peer = await backend.peer()
    assert peer.files is not None
    await store.put(owned("batch-a", kind=BATCH, minutes=1))
    await store.put(owned("batch-b", kind=BATCH, minutes=2))
    await store.put(owned("file-z"))
    assert [r.id for r in await store.open_batches(10)] == ["batch-a", "batch-b"]
    # One just seen goes to the back: the poller's rounds take each open batch in turn.
    await store.update(BATCH, "batch-a", {"id": "batch-a"}, "in_progress")
    assert [r.id for r in await store.open_batches(10)] == ["batch-b", "batch-a"]
    claims = await asyncio.gather(*(s.mark_costed("batch-a") for s in [store, peer.files] * 4))
    assert claims.count(True) == 1
    assert [r.id for r in await peer.files.open_batches(10)] == ["batch-b"]
    costed = await store.get(BATCH, "batch-a")
    assert costed is not None and costed.costed is True
    assert [r.id for r in await store.open_batches(1)] == ["batch-b"]
    assert (await store.get(BATCH, "batch-a")).status == "in_progress"  # type: ignore[union-attr]


async def test_message_batches_are_polled_and_costed_apart_from_openai_batches(backend: Backend) -> None:
    store = files_of(backend)
    await store.put(owned("batch-open", kind=BATCH, minutes=1))
    await store.put(owned("msgbatch_one", kind=MESSAGE_BATCH, minutes=2, purpose="/v1/messages"))
    assert [r.id for r in await store.open_batches(10, MESSAGE_BATCH)] == ["msgbatch_one"]
    assert "msgbatch_one" not in [r.id for r in await store.open_batches(100)]
    assert await store.mark_costed("msgbatch_one") is False  # not an OpenAI batch's id
    assert await store.mark_costed("msgbatch_one", MESSAGE_BATCH) is True
    assert await store.open_batches(10, MESSAGE_BATCH) == []
    assert [r.id for r in await store.list_owned(MESSAGE_BATCH, "acme", "key-a")] == ["msgbatch_one"]


async def test_the_unpriced_batch_of_an_output_file_is_found_for_its_owner_only(backend: Backend) -> None:
    store = files_of(backend)
    await store.put(owned("batch-out", kind=BATCH, minutes=1))
    assert await store.unpriced_batch_of_output("acme", "key-a", "file-out") is None  # not seen finished
    await store.update(BATCH, "batch-out", {"id": "batch-out", "output_file_id": "file-out"}, "completed")
    found = await store.unpriced_batch_of_output("acme", "key-a", "file-out")
    assert found is not None and found.id == "batch-out"
    # Another owner's, another tenant's, another file: none.
    assert await store.unpriced_batch_of_output("acme", "key-b", "file-out") is None
    assert await store.unpriced_batch_of_output("other", "key-a", "file-out") is None
    assert await store.unpriced_batch_of_output("acme", "key-a", "file-other") is None
    # Priced, or deleted: none either.
    assert await store.mark_costed("batch-out") is True
    assert await store.unpriced_batch_of_output("acme", "key-a", "file-out") is None


async def test_a_batch_priced_by_two_instances_is_one_ledger_record(backend: Backend) -> None:
    from switchboard.http.files.costing import finished_at
    from switchboard.stores.protocols import UsageRecord

    peer = await backend.peer()
    batch = owned("batch-led", kind=BATCH)
    upstream = {"id": "batch-led", "status": "completed", "completed_at": 1_796_000_000}

    def record() -> UsageRecord:  # what each instance builds from the same upstream object
        return UsageRecord(request_id=batch.id, tenant_id=batch.tenant_id, model="gpt-4o-mini",
                           key_id=batch.key_id, prompt_tokens=33, completion_tokens=15,
                           created_at=finished_at(batch, upstream), metadata={"operation": "batch"})

    written = await asyncio.gather(*(s.ledger.append([record()]) for s in [backend.stores, peer] * 3))
    assert sum(written) == 1
    stored = await backend.stores.ledger.get("acme", "batch-led")
    assert stored is not None and stored.prompt_tokens == 33
    assert stored.created_at == datetime.fromtimestamp(1_796_000_000, UTC)
    # No time from the upstream: the record's own creation time, the same on every instance.
    assert finished_at(batch, {"status": "failed"}) == T0


async def test_a_batch_whose_end_is_past_the_calendar_is_recorded_at_its_creation(backend: Backend) -> None:
    """An upstream's ``completed_at`` in milliseconds (past year 9999 read as seconds) raised
    in the pricing, which then failed on every read: the batch's cost was never recorded."""
    from switchboard.http.files.costing import finished_at
    from switchboard.stores.protocols import UsageRecord

    batch = owned("batch-ms", kind=BATCH)
    assert finished_at(batch, {"status": "completed", "completed_at": 1_796_000_000_000}) == T0
    assert finished_at(batch, {"status": "completed", "completed_at": 10**30}) == T0
    last = finished_at(batch, {"status": "completed", "completed_at": 253_402_300_799})
    assert last == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    ended = finished_at(batch, {"status": "completed", "completed_at": 1_796_000_000_000,
                                "finalizing_at": 1_796_000_000})
    assert ended == datetime.fromtimestamp(1_796_000_000, UTC)  # the next time the upstream gave
    in_ms = finished_at(batch, {"completed_at": 1_796_000_000_000})
    record = UsageRecord(request_id=batch.id, tenant_id=batch.tenant_id, model="gpt-4o-mini",
                         key_id=batch.key_id, created_at=in_ms)
    assert await backend.stores.ledger.append([record]) == 1
    stored = await backend.stores.ledger.get("acme", "batch-ms")
    assert stored is not None and stored.created_at == T0
