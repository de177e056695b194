"""Authentication of the gateway's API keys over real stores (embedded and cluster): the key
cache spares the store a query for a key already seen, and the change feed invalidates it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.access import keys
from switchboard.access.cache import KeyCache
from switchboard.errors import AuthenticationFailed
from switchboard.pipeline.auth import Authenticator
from switchboard.stores import KeyRecord, KeyStore
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

MASTER = "sk-master-key-for-tests"
SECRET = "s" * 40


async def issued(backend: Backend, **fields: object) -> tuple[str, KeyRecord]:
    key = keys.new_key()
    record = KeyRecord(
        id=f"key_{keys.prefix_of(key)[-8:]}",
        key_hash=keys.key_hash(key, keys.hashing_key(SECRET)),
        prefix=keys.prefix_of(key),
        tenant_id="tenant-a",
        allowed_models=("gpt-4o-mini",),
    )
    record = replace(record, **fields)  # type: ignore[arg-type]
    await backend.stores.keys.put(record)
    return key, record


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def authenticator(backend: Backend) -> tuple[Authenticator, KeyCache]:
    cache = KeyCache(backend.stores.keys, backend.stores.feed)
    await cache.start()
    auth = Authenticator(MASTER, SECRET)
    auth.attach(cache)
    return auth, cache


async def test_key_shape() -> None:
    key = keys.new_key()
    assert key.startswith("sk-sb-") and len(key) == keys.LENGTH and keys.looks_like_key(key)
    assert keys.prefix_of(key) == key[:14]
    for bad in ["", "sk-sb-", key[:-1], key + "x", "sk-xx-" + key[6:]]:
        assert not keys.looks_like_key(bad)
    assert keys.well_formed(key) and not keys.well_formed(key[:-1] + "!")
    hashing = keys.hashing_key(SECRET)
    assert keys.key_hash(key, hashing) == keys.key_hash(key, hashing)
    assert keys.key_hash(key, hashing) != keys.key_hash(key, keys.hashing_key(SECRET + "x"))


async def test_a_seen_key_costs_no_store_query(backend: Backend) -> None:
    auth, cache = await authenticator(backend)
    key, record = await issued(backend)
    try:
        for _ in range(100):
            principal = await auth.authenticate(bearer(key))
        assert (principal.key_id, principal.tenant_id, principal.allowed_models) == (
            record.id, "tenant-a", ("gpt-4o-mini",))
        assert cache.lookups == 1
        # Concurrent first use of another key: one query, not one per request.
        other, _ = await issued(backend, id="key_other")
        await asyncio.gather(*(auth.authenticate(bearer(other)) for _ in range(20)))
        assert cache.lookups == 2
    finally:
        await cache.close()


async def test_unknown_keys_are_remembered_briefly(backend: Backend) -> None:
    auth, cache = await authenticator(backend)
    unknown = "sk-sb-" + "Z" * 48
    try:
        for _ in range(10):
            with pytest.raises(AuthenticationFailed) as err:
                await auth.authenticate(bearer(unknown))
            assert err.value.code == "invalid_api_key"
        assert cache.lookups == 1
    finally:
        await cache.close()


async def test_disabled_and_expired_keys_have_their_own_codes(backend: Backend) -> None:
    auth, cache = await authenticator(backend)
    disabled, _ = await issued(backend, id="key_disabled", enabled=False)
    expired, _ = await issued(backend, id="key_expired", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    try:
        for key, code in [(disabled, "key_disabled"), (expired, "key_expired")]:
            with pytest.raises(AuthenticationFailed) as err:
                await auth.authenticate(bearer(key))
            assert err.value.code == code
    finally:
        await cache.close()


async def test_malformed_keys_never_reach_the_store(backend: Backend) -> None:
    auth, cache = await authenticator(backend)
    try:
        for key in ["sk-sb-short", "x" * 10_000, "sk-xx-" + "A" * 48, "sk-sb-" + "A" * 49]:
            with pytest.raises(AuthenticationFailed):
                await auth.authenticate(bearer(key))
        assert cache.lookups == 0
        assert (await auth.authenticate(bearer(MASTER))).role == "platform_admin"
    finally:
        await cache.close()


async def test_a_change_reaches_every_cache_through_the_feed(backend: Backend) -> None:
    peer = await backend.peer()
    here, here_cache = await authenticator(backend)
    there_cache = KeyCache(peer.keys, peer.feed)
    await there_cache.start()
    there = Authenticator(MASTER, SECRET)
    there.attach(there_cache)
    key, record = await issued(backend, id="key_shared")
    try:
        await here.authenticate(bearer(key))
        await there.authenticate(bearer(key))
        await backend.stores.keys.disable("tenant-a", record.id)
        await here_cache.changed(record.key_hash)
        deadline = time.monotonic() + 1.0
        while True:
            try:
                await there.authenticate(bearer(key))
            except AuthenticationFailed as err:
                assert err.code == "key_disabled"
                break
            assert time.monotonic() < deadline, "the other cache kept the key past 1 s"
            await asyncio.sleep(0)  # let the feed's reader run
        with pytest.raises(AuthenticationFailed):
            await here.authenticate(bearer(key))
    finally:
        await here_cache.close()
        await there_cache.close()


class Gated:
    """The real key store, with lookups held at a gate so a test can act while one is in flight."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        self.entered.set()
        await self.gate.wait()
        return await self.store.get_by_hash(key_hash)


async def test_a_lookup_racing_an_invalidation_is_not_cached(backend: Backend) -> None:
    gated = Gated(backend.stores.keys)
    cache = KeyCache(gated, backend.stores.feed)  # type: ignore[arg-type]
    _, record = await issued(backend, id="key_race")
    lookup = asyncio.ensure_future(cache.get(record.key_hash))
    await gated.entered.wait()
    cache.drop(record.key_hash)  # the invalidation arrives while the query is in flight
    gated.gate.set()
    assert (await lookup).record == record  # type: ignore[union-attr]
    assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
    assert cache.lookups == 2  # the raced answer was not kept


class Outage:
    """The real key store, cut off on demand as a database that stopped answering is (the
    driver's refused connection); the end-to-end restart is in tests/e2e/test_store_outage.py."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.down: BaseException | None = None

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        if self.down is not None:
            raise self.down
        return await self.store.get_by_hash(key_hash)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_cached_key_outlives_its_entry_while_the_store_cannot_be_read(backend: Backend) -> None:
    store, clock = Outage(backend.stores.keys), Clock()
    cache = KeyCache(store, backend.stores.feed, clock=clock, stale_if_error=60)  # type: ignore[arg-type]
    _, record = await issued(backend, id="key_stale")
    unknown = keys.key_hash("sk-sb-" + "Q" * 48, keys.hashing_key(SECRET))
    try:
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
        assert await cache.get(unknown) is None
        store.down = ConnectionRefusedError("the database is down")
        clock.now += 11  # both entries expired (10 s, 5 s)
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
        assert cache.lookups == 3
        # Asked again at most once a second meanwhile, not on every request.
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
        assert cache.lookups == 3
        clock.now += 1.5
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
        assert cache.lookups == 4
        # "No such key" is not held over: the store decides that once it answers.
        with pytest.raises(ConnectionRefusedError):
            await cache.get(unknown)
        # Not past the bound: ten seconds of TTL and sixty of grace after the record was read.
        clock.now += 60
        with pytest.raises(ConnectionRefusedError):
            await cache.get(record.key_hash)
        # The store answers again: read afresh, and a later outage has its own grace.
        store.down = None
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
        store.down = ConnectionRefusedError("down again")
        clock.now += 30
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
    finally:
        await cache.close()


async def test_only_an_unreachable_store_and_an_entry_still_held_allow_a_stale_key(backend: Backend) -> None:
    store, clock = Outage(backend.stores.keys), Clock()
    cache = KeyCache(store, backend.stores.feed, clock=clock, stale_if_error=60)  # type: ignore[arg-type]
    without = KeyCache(store, backend.stores.feed, clock=clock)  # type: ignore[arg-type]
    _, record = await issued(backend, id="key_strict")
    try:
        for each in (cache, without):
            await each.get(record.key_hash)
        clock.now += 11
        store.down = ValueError("a fault of the code, not an outage")
        with pytest.raises(ValueError):
            await cache.get(record.key_hash)
        store.down = ConnectionRefusedError("the database is down")
        with pytest.raises(ConnectionRefusedError):  # no grace configured: refused at once
            await without.get(record.key_hash)
        cache.drop(record.key_hash)  # a change heard on the feed: the record is gone, not stale
        with pytest.raises(ConnectionRefusedError):
            await cache.get(record.key_hash)
    finally:
        await cache.close()
        await without.close()
