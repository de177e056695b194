"""KeyStore contract: lookup by hash, everything else within one tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from switchboard.access.last_used import LastUsed
from switchboard.stores import KeyQuery, KeyRecord
from switchboard.stores.factory import open_database
from switchboard.stores.protocols import KeyStore
from switchboard.stores.sql.keys import SqlKeyStore
from switchboard.stores.sql.migrate import _config
from switchboard.stores.sql.tables import api_keys
from tests.stores.conftest import Backend, revoke
from tests.unit.observability.test_metrics import make, total

pytestmark = pytest.mark.asyncio(loop_scope="session")


def key(id: str = "key-1", tenant: str = "tenant-a", **fields: object) -> KeyRecord:
    base = KeyRecord(
        id=id,
        key_hash=f"hash-{id}",
        prefix="sk-sb-ab",
        tenant_id=tenant,
        team_id="team-1",
        user_id="user-1",
        role="admin",
        allowed_models=("gpt-4o-mini", "claude"),
        expires_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        metadata={"owner": "ops", "n": 3, "nested": {"a": [1, 2]}},
        created_at=datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        name="billing service",
        created_by="master",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def test_put_then_lookup_by_hash_round_trips_every_field(backend: Backend) -> None:
    record = key()
    await backend.stores.keys.put(record)
    assert await backend.stores.keys.get_by_hash(record.key_hash) == record
    assert await backend.stores.keys.get_by_hash("hash-unknown") is None


async def test_optional_fields_and_other_time_zones(backend: Backend) -> None:
    plus_two = datetime(2030, 1, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    record = key(team_id=None, user_id=None, allowed_models=None, expires_at=plus_two, metadata={})
    await backend.stores.keys.put(record)
    got = await backend.stores.keys.get("tenant-a", "key-1")
    assert got is not None
    assert got.allowed_models is None and got.team_id is None and got.metadata == {}
    assert got.expires_at == plus_two and got.expires_at.tzinfo == UTC


async def test_a_rotated_key_keeps_the_lineage_of_its_chain(backend: Backend) -> None:
    first, second = key("key-root"), key("key-next", lineage_id="key-root")
    for record in (first, second):
        await backend.stores.keys.put(record)
    got = await backend.stores.keys.get_by_hash(second.key_hash)
    assert got is not None and (got.lineage_id, got.lineage) == ("key-root", "key-root")
    root = await backend.stores.keys.get("tenant-a", "key-root")
    assert root is not None and (root.lineage_id, root.lineage) == (None, "key-root")


async def test_rotate_retires_a_live_key_once_and_never_a_revoked_one(backend: Backend) -> None:
    keys = backend.stores.keys
    old = key("key-old")
    await keys.put(old)
    ends = datetime(2027, 1, 1, tzinfo=UTC)
    first, second = key("key-s1", lineage_id="key-old"), key("key-s2", lineage_id="key-old")
    assert await keys.rotate(old, first, ends) is True
    assert await keys.rotate(old, second, ends) is False  # from the same stale read: refused
    assert await keys.get("tenant-a", "key-s2") is None
    retired = await keys.get("tenant-a", "key-old")
    assert retired is not None and retired.enabled and retired.expires_at == ends
    assert retired.metadata == {**old.metadata, "rotated_to": "key-s1"}
    revoked = key("key-revoked")
    await keys.put(revoked)
    assert await revoke(keys, "tenant-a", "key-revoked")
    assert await keys.rotate(revoked, key("key-s3"), ends) is False
    after = await keys.get("tenant-a", "key-revoked")
    assert after is not None and after.enabled is False and after.expires_at == revoked.expires_at
    # Revoked again: nothing written (the revoke time and revision stay), and the caller told.
    assert await revoke(keys, "tenant-a", "key-revoked") is False
    assert await keys.get("tenant-a", "key-revoked") == after


async def test_reassign_changes_only_the_team_and_role(backend: Backend) -> None:
    keys = backend.stores.keys
    await keys.put(key("key-r"))
    assert await revoke(keys, "tenant-a", "key-r")
    assert await keys.reassign("tenant-a", "key-r", "team-2", "developer") is True
    got = await keys.get("tenant-a", "key-r")
    assert got is not None and (got.team_id, got.role, got.enabled) == ("team-2", "developer", False)
    assert await keys.reassign("tenant-b", "key-r", None, "viewer") is False


async def test_update_writes_only_the_fields_named_from_a_current_read(backend: Backend) -> None:
    keys = backend.stores.keys
    await keys.put(key("key-u"))
    read = await keys.get("tenant-a", "key-u")
    assert read is not None and (read.revision, read.updated_at, read.blocked) == (0, None, False)
    at = datetime(2026, 5, 1, 8, 30, 0, 250000, tzinfo=UTC)
    # Fields not named are not written, whatever the record passed holds.
    changed = replace(read, allowed_models=("one",), blocked_by_role="tenant_admin", name="ignored",
                      team_id="team-x", updated_at=at)
    assert await keys.update(changed, {"allowed_models", "blocked_by_role"}) is True
    got = await keys.get_by_hash("hash-key-u")
    assert got is not None and (got.allowed_models, got.blocked_by_role, got.blocked) == (
        ("one",), "tenant_admin", True)
    assert (got.name, got.team_id, got.enabled) == (read.name, read.team_id, True)
    assert (got.revision, got.updated_at) == (1, at)
    # From the older read: refused, nothing written.
    assert await keys.update(replace(read, name="stale"), {"name"}) is False
    assert await keys.update(replace(got, name=None, blocked_by_role=None), {"name", "blocked_by_role"})
    final = await keys.get("tenant-a", "key-u")
    assert final is not None and (final.name, final.blocked, final.revision) == (None, False, 2)
    with pytest.raises(ValueError, match="team_id"):
        await keys.update(replace(final, team_id="team-x"), {"team_id"})
    # Another tenant's key of the same id is not this one.
    assert await keys.update(replace(final, tenant_id="tenant-b", name="x"), {"name"}) is False


async def test_a_revoked_or_rotated_key_is_never_updated(backend: Backend) -> None:
    keys = backend.stores.keys
    await keys.put(key("key-gone"))
    assert await revoke(keys, "tenant-a", "key-gone")
    revoked = await keys.get("tenant-a", "key-gone")
    assert revoked is not None and revoked.revision == 1 and revoked.updated_at is not None
    # Even from a current read, and even to unblock it: a revoke is final.
    assert await keys.update(replace(revoked, blocked_by_role=None), {"blocked_by_role"}) is False
    assert await keys.update(replace(revoked, enabled=True, name="x"), {"name"}) is False
    still = await keys.get("tenant-a", "key-gone")
    assert still is not None and still.enabled is False and still.name == revoked.name
    old = key("key-was")
    await keys.put(old)
    assert await keys.rotate(old, key("key-is", lineage_id="key-was"), datetime(2027, 1, 1, tzinfo=UTC))
    retired = await keys.get("tenant-a", "key-was")
    assert retired is not None
    assert await keys.update(replace(retired, expires_at=None), {"expires_at"}) is False


async def test_a_rotation_from_a_read_older_than_an_update_or_of_a_blocked_key_fails(
    backend: Backend,
) -> None:
    keys = backend.stores.keys
    ends = datetime(2027, 1, 1, tzinfo=UTC)
    await keys.put(key("key-n"))
    read = await keys.get("tenant-a", "key-n")
    assert read is not None
    assert await keys.update(replace(read, allowed_models=("narrow",)), {"allowed_models"})
    # The successor would have carried the models read before the change: refused.
    assert await keys.rotate(read, key("key-n2", lineage_id="key-n"), ends) is False
    assert await keys.get("tenant-a", "key-n2") is None
    current = await keys.get("tenant-a", "key-n")
    assert current is not None
    blocked = replace(current, blocked_by_role="developer")
    assert await keys.update(blocked, {"blocked_by_role"})
    fresh = await keys.get("tenant-a", "key-n")
    assert fresh is not None and fresh.blocked
    assert await keys.rotate(fresh, key("key-n3", lineage_id="key-n"), ends) is False
    assert await keys.get("tenant-a", "key-n3") is None


async def test_every_query_but_the_hash_lookup_is_scoped_to_the_tenant(backend: Backend) -> None:
    keys = backend.stores.keys
    await keys.put(key("a1", "tenant-a"))
    await keys.put(key("a2", "tenant-a", created_at=datetime(2026, 1, 2, tzinfo=UTC)))
    await keys.put(key("b1", "tenant-b"))
    assert await keys.get("tenant-b", "a1") is None
    assert [k.id for k in await keys.list_keys("tenant-a")] == ["a1", "a2"]
    assert [k.id for k in await keys.list_keys("tenant-b")] == ["b1"]
    assert await keys.list_keys("tenant-c") == []
    # Another tenant cannot disable it...
    assert await revoke(keys, "tenant-b", "a1") is False
    got = await keys.get("tenant-a", "a1")
    assert got is not None and got.enabled
    # ...its own tenant can.
    assert await revoke(keys, "tenant-a", "a1") is True
    disabled = await keys.get_by_hash("hash-a1")
    assert disabled is not None and disabled.enabled is False
    assert await revoke(keys, "tenant-a", "missing") is False


async def test_put_replaces_by_id_but_never_across_tenants(backend: Backend) -> None:
    keys = backend.stores.keys
    await keys.put(key())
    await keys.put(key(role="viewer", allowed_models=("one",)))
    got = await keys.get("tenant-a", "key-1")
    assert got is not None and got.role == "viewer" and got.allowed_models == ("one",)
    with pytest.raises(ValueError, match="another tenant"):
        await keys.put(key(tenant="tenant-b", role="admin"))
    assert await keys.get("tenant-b", "key-1") is None
    still = await keys.get("tenant-a", "key-1")
    assert still is not None and still.role == "viewer"


async def test_a_key_hash_belongs_to_one_key(backend: Backend) -> None:
    await backend.stores.keys.put(key("k1"))
    with pytest.raises(ValueError, match="hash"):
        await backend.stores.keys.put(key("k2", key_hash="hash-k1"))


async def test_keys_are_durable_across_instances(backend: Backend) -> None:
    await backend.stores.keys.put(key())
    other = await backend.open()
    assert await other.keys.get_by_hash("hash-key-1") == key()


async def test_last_used_times_are_written_in_one_batch_and_never_go_back(backend: Backend) -> None:
    await backend.stores.keys.put(key("key-a"))
    await backend.stores.keys.put(key("key-b", key_hash="hash-b"))
    early = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    later = early + timedelta(minutes=5)
    await backend.stores.keys.touch({"key-a": later, "key-b": early, "key-unknown": later})
    await backend.stores.keys.touch({"key-a": early})  # an older report from another instance
    got = {r.id: r.last_used_at for r in await backend.stores.keys.list_keys("tenant-a")}
    assert got == {"key-a": later, "key-b": early}
    # A put from an older read does not move it either.
    await backend.stores.keys.put(key("key-a", enabled=False))
    stored = await backend.stores.keys.get("tenant-a", "key-a")
    assert stored is not None and stored.last_used_at == later and stored.enabled is False


async def test_a_last_used_time_the_database_refuses_does_not_hold_up_the_others(backend: Backend) -> None:
    """The batched writer of last-used times (access/last_used.py): an id PostgreSQL refuses (a
    NUL character) is dropped, not kept for the next round with the batch, so the other keys'
    times are written now and the next round's too."""
    await backend.stores.keys.put(key("key-a"))
    await backend.stores.keys.put(key("key-b", key_hash="hash-b"))
    writer = LastUsed(backend.stores.keys)
    writer.note("key-a")
    writer.note("key\x00bad")
    await writer.flush()
    first = {r.id: r.last_used_at for r in await backend.stores.keys.list_keys("tenant-a")}
    assert first["key-a"] is not None and first["key-b"] is None
    writer.note("key-b")
    await writer.flush()
    second = {r.id: r.last_used_at for r in await backend.stores.keys.list_keys("tenant-a")}
    assert second["key-b"] is not None and second["key-a"] == first["key-a"]
    await writer.flush()  # nothing is left over to write
    stored = await backend.stores.keys.get("tenant-a", "key-a")
    assert stored == replace(key("key-a"), last_used_at=first["key-a"])


class HeldTouch:
    """The real key store, its last-used writes held at a gate so a test can look while one is
    in flight (as ``Gated`` in test_access_keys.py holds lookups)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def touch(self, used: Mapping[str, datetime]) -> None:
        self.entered.set()
        await self.gate.wait()
        await self.store.touch(used)


async def test_the_batch_being_written_is_pending_until_the_database_has_it(backend: Backend) -> None:
    """``switchboard_key_last_used_pending`` (as /metrics exports it) counts the keys of the
    batch in flight until their write ends: it read 0 while the database was still writing
    them. A key noted again meanwhile counts once."""
    for id in ("key-a", "key-b"):
        await backend.stores.keys.put(key(id, key_hash=f"hash-{id}"))
    held = HeldTouch(backend.stores.keys)
    writer = LastUsed(held)  # type: ignore[arg-type]
    metrics, _ = make()
    metrics.watch(None, None, writer)
    pending = "switchboard_key_last_used_pending"
    writer.note("key-a")
    writer.note("key-b")
    assert total(metrics, pending) == 2
    flush = asyncio.ensure_future(writer.flush())
    await held.entered.wait()
    assert total(metrics, pending) == 2  # in flight, not written
    writer.note("key-a")  # used again while its time is being written
    assert total(metrics, pending) == 2
    held.gate.set()
    await flush
    assert total(metrics, pending) == 1  # key-a's newer use, for the next round
    stored = {r.id: r.last_used_at for r in await backend.stores.keys.list_keys("tenant-a")}
    assert stored["key-a"] is not None and stored["key-b"] is not None
    await writer.flush()
    assert total(metrics, pending) == 0


class HeldFirstTouch:
    """A key store whose first write never ends until cancelled; later writes go through."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.entered = asyncio.Event()
        self.calls = 0

    async def touch(self, used: dict[str, datetime]) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            await asyncio.Event().wait()  # until the writer is stopped
        await self.store.touch(used)


async def test_a_batch_cut_short_by_shutdown_is_written_at_close(backend: Backend) -> None:
    """Stopping the writer while it writes (shutdown) keeps the batch: close() writes it."""
    for id in ("key-c", "key-d"):
        await backend.stores.keys.put(key(id, key_hash=f"hash-{id}"))
    held = HeldFirstTouch(backend.stores.keys)
    writer = LastUsed(held, interval=0.01)  # type: ignore[arg-type]
    writer.note("key-c")
    writer.note("key-d")
    writer.start()
    await held.entered.wait()  # the background write is in flight
    await writer.close()
    assert held.calls == 2 and writer.pending == 0
    stored = {r.id: r.last_used_at for r in await backend.stores.keys.list_keys("tenant-a")}
    assert stored["key-c"] is not None and stored["key-d"] is not None


async def test_a_page_of_keys_is_filtered_scoped_and_continued_by_cursor(backend: Backend) -> None:
    keys = backend.stores.keys
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    same = t0 + timedelta(minutes=5)  # two keys created in the same instant: the id orders them
    for record in (
        key("k1", "tenant-p", created_at=t0, team_id="red", user_id="ann", tags=("ci",)),
        key("k3", "tenant-p", created_at=same, team_id="red", user_id=None, service_account_id="bot"),
        key("k2", "tenant-p", created_at=same, team_id="blue", user_id="bob", tags=("ci", "prod")),
        key("k4", "tenant-p", created_at=t0 + timedelta(minutes=9), team_id=None, user_id=None),
        key("x1", "tenant-q", created_at=t0, team_id="red", user_id="ann", tags=("ci",)),
    ):
        await keys.put(record)

    async def ids(**query: object) -> list[str]:
        return [k.id for k in await keys.page_keys("tenant-p", KeyQuery(**query))]  # type: ignore[arg-type]

    assert await ids() == ["k1", "k2", "k3", "k4"]
    assert await ids(limit=2) == ["k1", "k2"]
    assert await ids(after="k2", limit=1) == ["k3"]
    assert await ids(after="k3") == ["k4"]
    assert await ids(after="k4") == []
    assert await ids(team_id="red") == ["k1", "k3"]
    assert await ids(user_id="bob") == ["k2"] and await ids(service_account_id="bot") == ["k3"]
    assert await ids(tag="ci") == ["k1", "k2"] and await ids(tag="ci", after="k1") == ["k2"]
    assert await ids(tag="ci", limit=1) == ["k1"] and await ids(tag="none") == []
    # The reach of the caller: one team's keys; or those owned by (or being) given ids.
    assert await ids(team_scope="red") == ["k1", "k3"]
    assert await ids(owners=("ann", "bot")) == ["k1", "k3"]
    assert await ids(owners=("k4",)) == ["k4"] and await ids(owners=()) == []
    with pytest.raises(ValueError, match="cursor"):
        await ids(after="x1")  # another tenant's key is no cursor here


async def test_revision_0022_makes_every_existing_key_its_own_lineage(fresh_url: str) -> None:
    engine, _ = await open_database(fresh_url)

    def migrate(conn: sa.Connection, target: str) -> None:
        if target == "0021":
            command.downgrade(_config(conn), target)
        else:
            command.upgrade(_config(conn), target)

    try:
        async with engine.connect() as conn:
            await conn.run_sync(migrate, "0021")
            await conn.commit()
            # A key and its successor stored before lineages existed.
            successions = {"key-old": {"rotated_to": "key-new"}, "key-new": {"rotated_from": "key-old"}}
            for key_id, metadata in successions.items():
                await conn.execute(sa.insert(api_keys).values(
                    id=key_id, key_hash=f"hash-{key_id}", prefix="sk-sb-x", tenant_id="t", role="developer",
                    enabled=True, metadata=metadata, created_at=datetime.now(UTC)))
            await conn.run_sync(migrate, "head")
            await conn.commit()
        store = SqlKeyStore(engine)
        for key_id in ("key-old", "key-new"):
            read = await store.get("t", key_id)
            # What each spent, and the budgets and limits set on its id, stay its own.
            assert read is not None and read.lineage == key_id
    finally:
        await engine.dispose()


async def test_revision_0024_leaves_revoked_keys_revoked_and_none_blocked(fresh_url: str) -> None:
    engine, _ = await open_database(fresh_url)

    def migrate(conn: sa.Connection, target: str) -> None:
        if target == "0023":
            command.downgrade(_config(conn), target)
        else:
            command.upgrade(_config(conn), target)

    try:
        async with engine.connect() as conn:
            await conn.run_sync(migrate, "0023")
            await conn.commit()
            for key_id, enabled in (("key-live", True), ("key-revoked", False)):
                await conn.execute(sa.insert(api_keys).values(
                    id=key_id, key_hash=f"hash-{key_id}", prefix="sk-sb-x", tenant_id="t", role="developer",
                    enabled=enabled, metadata={}, created_at=datetime.now(UTC), lineage_id=key_id))
            await conn.run_sync(migrate, "head")
            await conn.commit()
        store = SqlKeyStore(engine)
        live, revoked = await store.get("t", "key-live"), await store.get("t", "key-revoked")
        assert live is not None and (live.enabled, live.blocked, live.revision, live.updated_at) == (
            True, False, 0, None)
        assert revoked is not None and (revoked.enabled, revoked.blocked) == (False, False)
        # Still final: a change does not bring it back.
        assert await store.update(replace(revoked, name="back"), {"name"}) is False
    finally:
        await engine.dispose()
