"""SessionStore contract on SQLite and PostgreSQL: sessions keyed by tenant, caller, API and id;
compare-and-set saves; expiry and the purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from switchboard.apis.sessions import SessionBook, SessionPolicy
from switchboard.context import Principal
from switchboard.stores.protocols import ApiSession, SessionStore
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC).replace(microsecond=0)
TURN = [{"role": "user", "content": "héllo ✓"}, {"role": "assistant", "content": "hi"}]


def _store(backend: Backend) -> SessionStore:
    store = backend.stores.api_sessions
    assert store is not None
    return store


def _session(sid: str = "s1", *, owner: str = "key_1", tenant: str = "t1", api: str = "chat",
             version: int = 1, expires_in: timedelta = timedelta(days=1),
             turns: list[list[dict[str, str]]] | None = None) -> ApiSession:
    return ApiSession(tenant_id=tenant, owner=owner, api=api, session_id=sid,
                      turns=[TURN] if turns is None else turns, expires_at=NOW + expires_in,
                      version=version, created_at=NOW, updated_at=NOW)


async def test_save_get_round_trip(backend: Backend) -> None:
    store = _store(backend)
    record = _session()
    assert await store.save(record, None)
    assert await store.get("t1", "key_1", "chat", "s1", NOW) == record
    # Every part of the key counts: another tenant, caller, API or id is another session.
    assert await store.get("t2", "key_1", "chat", "s1", NOW) is None
    assert await store.get("t1", "key_2", "chat", "s1", NOW) is None
    assert await store.get("t1", "key_1", "other", "s1", NOW) is None
    assert await store.get("t1", "key_1", "chat", "s2", NOW) is None


async def test_saves_are_compare_and_set(backend: Backend) -> None:
    store = _store(backend)
    assert await store.save(_session(), None)
    assert not await store.save(_session(turns=[]), None)  # it exists: an insert loses
    two = _session(version=2, turns=[TURN, TURN])
    assert await store.save(two, 1)
    assert not await store.save(_session(version=2, turns=[]), 1)  # a stale version loses
    found = await store.get("t1", "key_1", "chat", "s1", NOW)
    assert found is not None and found.version == 2 and len(found.turns) == 2


async def test_expired_sessions_are_invisible_and_purged(backend: Backend) -> None:
    store = _store(backend)
    assert await store.save(_session("old", expires_in=timedelta(seconds=10)), None)
    assert await store.save(_session("new"), None)
    assert await store.get("t1", "key_1", "chat", "old", NOW) is not None
    later = NOW + timedelta(seconds=11)
    assert await store.get("t1", "key_1", "chat", "old", later) is None
    assert await store.purge(later, limit=10) == 1
    assert await store.purge(later) == 0
    assert await store.get("t1", "key_1", "chat", "new", later) is not None
    assert await store.delete("t1", "key_1", "chat", "new")
    assert not await store.delete("t1", "key_1", "chat", "new")


async def test_the_purge_is_bounded_per_call(backend: Backend) -> None:
    store = _store(backend)
    for i in range(5):
        assert await store.save(_session(f"s{i}", expires_in=timedelta(seconds=1)), None)
    later = NOW + timedelta(seconds=2)
    assert await store.purge(later, limit=2) == 2
    assert await store.purge(later, limit=10) == 3


# -- the SessionBook over each store --------------------------------------------------------


def _book(backend: Backend, clock: list[datetime]) -> SessionBook:
    return SessionBook(lambda: backend.stores.api_sessions, clock=lambda: clock[0])


def _turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]


async def test_the_book_appends_per_caller_and_bounds_the_turns(backend: Backend) -> None:
    clock = [NOW]
    book = _book(backend, clock)
    alice = Principal(id="u_a", role="developer", key_id="key_a", tenant_id="t1")
    bob = Principal(id="u_b", role="developer", key_id="key_b", tenant_id="t1")
    policy = SessionPolicy(max_turns=3, ttl_seconds=60)
    assert await book.load(alice, "chat", "s") == []
    for i in range(5):
        await book.append(alice, "chat", "s", _turn(f"t{i}"), policy)
    assert await book.load(alice, "chat", "s") == [_turn("t2"), _turn("t3"), _turn("t4")]
    # Bob's session "s" is his own, empty one.
    assert await book.load(bob, "chat", "s") == []
    await book.append(bob, "chat", "s", _turn("bob"), policy)
    assert await book.load(bob, "chat", "s") == [_turn("bob")]
    assert len(await book.load(alice, "chat", "s")) == 3
    # A key of another tenant with the same key id and session id sees nothing either.
    other = Principal(id="u_a", role="developer", key_id="key_a", tenant_id="t2")
    assert await book.load(other, "chat", "s") == []


async def test_the_book_bounds_the_stored_bytes(backend: Backend) -> None:
    clock = [NOW]
    book = _book(backend, clock)
    caller = Principal(id="u", role="developer", key_id="key", tenant_id="t1")
    policy = SessionPolicy(max_turns=100, max_bytes=1024)
    for i in range(10):
        await book.append(caller, "chat", "big", _turn(f"{i}" + "x" * 200), policy)
    kept = await book.load(caller, "chat", "big")
    assert 1 <= len(kept) < 10 and kept[-1] == _turn("9" + "x" * 200)
    assert len(orjson.dumps(kept)) <= 1024


async def test_the_book_expires_sessions_and_a_new_turn_starts_afresh(backend: Backend) -> None:
    clock = [NOW]
    book = _book(backend, clock)
    caller = Principal(id="u", role="developer", key_id="key", tenant_id="t1")
    policy = SessionPolicy(ttl_seconds=60)
    await book.append(caller, "chat", "s", _turn("first"), policy)
    clock[0] = NOW + timedelta(seconds=59)
    await book.append(caller, "chat", "s", _turn("second"), policy)  # extends its life
    clock[0] = NOW + timedelta(seconds=100)
    assert len(await book.load(caller, "chat", "s")) == 2
    clock[0] = NOW + timedelta(seconds=200)
    assert await book.load(caller, "chat", "s") == []
    await book.append(caller, "chat", "s", _turn("third"), policy)  # replaces the expired one
    assert await book.load(caller, "chat", "s") == [_turn("third")]
    await book.append(caller, "chat", "gone", _turn("x"), policy)
    clock[0] = NOW + timedelta(days=1)
    assert await book.purge_once() == 2
