"""Authentication of the gateway's API keys over real stores (embedded and cluster): the key
cache spares the store a query for a key already seen, and the change feed invalidates it."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.access import keys
from switchboard.access.cache import KeyCache
from switchboard.access.unchecked import UncheckedKeys
from switchboard.errors import AuthenticationFailed
from switchboard.pipeline.auth import Authenticator
from switchboard.stores import KeyRecord, KeyStore, Stores
from tests.stores.conftest import Backend, revoke

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The other instance hears of a change on the change feed (milliseconds when idle), else only
# after its 10 s periodic reload or entry ttl: half of that tells the two apart and leaves a
# loaded machine seconds.
FEED_SECONDS = 5.0

MASTER = "sk-master-key-for-tests"
SECRET = "s" * 40


HASHING = keys.hashing_key(SECRET)


def made_up() -> str:
    """A key of the gateway's shape, random to the end, as an attacker or an old version makes."""
    return keys.PREFIX + secrets.token_urlsafe(48)[: keys.VISIBLE + keys.RANDOM]


async def issued(backend: Backend, *, legacy: bool = False, **fields: object) -> tuple[str, KeyRecord]:
    """A key stored as the admin API issues it (``legacy``: as a version before the check did)."""
    key = made_up() if legacy else keys.new_key(HASHING)
    record = KeyRecord(
        id=f"key_{keys.prefix_of(key)[-8:]}",
        key_hash=keys.key_hash(key, HASHING),
        prefix=keys.prefix_of(key),
        tenant_id="tenant-a",
        allowed_models=("gpt-4o-mini",),
        checked=not legacy,
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
    key = keys.new_key(HASHING)
    assert key.startswith("sk-sb-") and len(key) == keys.LENGTH and keys.looks_like_key(key)
    assert keys.prefix_of(key) == key[:14]
    for bad in ["", "sk-sb-", key[:-1], key + "x", "sk-xx-" + key[6:]]:
        assert not keys.looks_like_key(bad)
    assert keys.well_formed(key) and not keys.well_formed(key[:-1] + "!")
    hashing = keys.hashing_key(SECRET)
    assert keys.key_hash(key, hashing) == keys.key_hash(key, hashing)
    assert keys.key_hash(key, hashing) != keys.key_hash(key, keys.hashing_key(SECRET + "x"))
    # The check: right for the key as issued, wrong for any other hashing key, any change of a
    # character and a key random to the end.
    checking = keys.checking_key(hashing)
    assert keys.checks_out(key, checking)
    assert not keys.checks_out(key, keys.checking_key(keys.hashing_key(SECRET + "x")))
    for i in range(len(keys.PREFIX), keys.LENGTH):
        changed = key[:i] + ("A" if key[i] != "A" else "B") + key[i + 1:]
        assert not keys.checks_out(changed, checking), i
    assert sum(keys.checks_out(made_up(), checking) for _ in range(1000)) == 0
    assert len({keys.new_key(hashing) for _ in range(100)}) == 100


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


async def checked_authenticator(stores: Stores) -> tuple[Authenticator, KeyCache, UncheckedKeys]:
    """An authenticator as the gateway's: the key cache, and the count of keys without a check."""
    cache = KeyCache(stores.keys, stores.feed)
    await cache.start()
    unchecked = UncheckedKeys()
    await unchecked.start(stores.keys, stores.feed)
    auth = Authenticator(MASTER, SECRET)
    auth.attach(cache, unchecked=unchecked)
    return auth, cache, unchecked


async def test_made_up_keys_cost_no_store_query(backend: Backend) -> None:
    key, record = await issued(backend)
    await issued(backend, legacy=True, id="key_revoked", enabled=False)
    await issued(backend, legacy=True, id="key_gone", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    auth, cache, unchecked = await checked_authenticator(backend.stores)
    try:
        assert unchecked.live == 0  # the keys from before are revoked or expired
        for _ in range(1000):
            with pytest.raises(AuthenticationFailed) as err:
                await auth.authenticate(bearer(made_up()))
            assert err.value.code == "invalid_api_key"
        assert cache.lookups == 0 and cache.peek(record.key_hash, "none cached") == "none cached"
        assert (await auth.authenticate(bearer(key))).key_id == record.id
        assert cache.lookups == 1
        # A key with the right check that is no key (deleted, or of another database) is looked up.
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(bearer(keys.new_key(HASHING)))
        assert cache.lookups == 2
    finally:
        await unchecked.close()
        await cache.close()


async def test_keys_from_before_the_check_are_looked_up_while_one_is_live(backend: Backend) -> None:
    """A key issued before the check (random to the end) keeps working; while one is live, a
    made-up key is looked up as before, on every instance, and once the last is revoked (on
    another instance) not any more."""
    old, record = await issued(backend, legacy=True, id="key_old")
    here, here_cache, here_unchecked = await checked_authenticator(backend.stores)
    there, there_cache, there_unchecked = await checked_authenticator(await backend.peer())
    try:
        assert here_unchecked.live == there_unchecked.live == 1
        for auth, cache in ((here, here_cache), (there, there_cache)):
            assert (await auth.authenticate(bearer(old))).key_id == record.id
            with pytest.raises(AuthenticationFailed):
                await auth.authenticate(bearer(made_up()))
            assert cache.lookups == 2
        await revoke(backend.stores.keys, "tenant-a", record.id)
        await here_cache.changed(record.key_hash)  # as the admin API does
        deadline = time.monotonic() + FEED_SECONDS
        while here_unchecked.live or there_unchecked.live:
            assert time.monotonic() < deadline, "the revocation did not lower the count by the feed"
            await asyncio.sleep(0.01)  # the count is read by the feed's listener
        for auth in (here, there):
            # The revoked key is now one more key without a check: refused unread, as made up.
            for key in (old, made_up()):
                with pytest.raises(AuthenticationFailed) as err:
                    await auth.authenticate(bearer(key))
                assert err.value.code == "invalid_api_key"
        assert (here_cache.lookups, there_cache.lookups) == (2, 2)
    finally:
        for closing in (here_unchecked, there_unchecked, here_cache, there_cache):
            await closing.close()


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
        await revoke(backend.stores.keys, "tenant-a", record.id)
        await here_cache.changed(record.key_hash)
        deadline = time.monotonic() + FEED_SECONDS
        while True:
            try:
                await there.authenticate(bearer(key))
            except AuthenticationFailed as err:
                assert err.code == "key_disabled"
                break
            assert time.monotonic() < deadline, "the other cache kept the key: the feed did not reach it"
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
        # Served at once: the store did not answer last time, so the retry does not hold it.
        assert (await cache.get(record.key_hash)).record == record  # type: ignore[union-attr]
        await asyncio.gather(*cache._pending.values())
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
