"""The live model table over a real store (both backends): stored entries merged with the
YAML's, pools reused while unchanged, a changed provider's pool retired (not closed) until its
exchanges can have ended; and the stored key-hashing key."""

from __future__ import annotations

import time

import pytest

from switchboard import catalog
from switchboard.config.routing import CooldownConfig
from switchboard.crypto.keyring import Keyring, credential_aad
from switchboard.crypto.server import SecretsUnavailable, hashing_key
from switchboard.errors import UpstreamError
from switchboard.routing.health import Health
from switchboard.routing.live import LiveRouting
from switchboard.routing.prerouting import Windows
from switchboard.routing.router import Router
from switchboard.settings.loader import validate
from switchboard.spend.cost import Prices
from switchboard.stores.protocols import CredentialRecord, ModelRecord, ProviderRecord
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "live-routing-secret-0123456789abcdefghij"
SETTINGS = validate({
    "providers": [{"name": "yaml-p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
    "models": [{"name": "yaml-m", "provider": "yaml-p", "model": "gpt-4o-mini"}],
    "auth": {"master_key": "sk-master-key-for-tests", "secret_key": SECRET},
}, "test.yaml", env={})


async def test_stored_entries_are_merged_and_pools_retired_not_closed(backend: Backend) -> None:
    store = backend.stores.providers
    ring = Keyring.from_secrets(SECRET)
    live = LiveRouting(SETTINGS, catalog.build(SETTINGS))
    await live.start(store, None, ring, reload_seconds=3600)
    try:
        assert set(live.current.routes) == {"yaml-m"}
        base = "http://127.0.0.1:9/v1"
        await store.create_provider(ProviderRecord(name="db-p", type="openai", api_base=base))
        sealed = ring.encrypt("sk-stored-key-123456", credential_aad("db-p", "c1"))
        await store.add_credential(CredentialRecord(id="c1", provider="db-p", mask="…", ciphertext=sealed))
        await store.create_model(ModelRecord(name="db-m", provider="db-p", model="gpt-4o"))
        await store.create_model(ModelRecord(name="db-on-yaml", provider="yaml-p", model="gpt-4o"))
        await store.create_model(ModelRecord(name="yaml-m", provider="db-p", model="shadowed"))
        await live.reload()
        snap = live.current
        assert set(snap.routes) == {"yaml-m", "db-m", "db-on-yaml"}
        assert snap.routes["yaml-m"].target.model == "gpt-4o-mini"  # the YAML entry wins
        assert [e["id"] for e in snap.directory] == ["yaml-m", "db-m", "db-on-yaml"]
        pool = snap.routes["db-m"].client
        assert "sk-stored-key-123456" in pool.auth.secrets()
        # A model change keeps the provider's pool; nothing changed: no new snapshot at all.
        await store.update_model(ModelRecord(name="db-m", provider="db-p", model="gpt-4o-mini"))
        await live.reload()
        route = live.current.routes["db-m"]
        assert route.client is pool and route.target.model == "gpt-4o-mini"
        before = live.current
        await live.reload()
        assert live.current is before
        # A provider change: a new pool; the old one stays open for the requests using it.
        await store.update_provider(ProviderRecord(name="db-p", type="openai", api_base=base + "/other"))
        await live.reload()
        assert live.current.routes["db-m"].client is not pool
        assert pool._session is not None  # retired, not closed
        assert snap.routes["db-m"].client is pool  # what a running request holds
    finally:
        await live.close()
    assert pool._session is None  # closed at shutdown


async def test_the_hashing_key_is_stored_once_and_needs_the_secret_that_sealed_it(backend: Backend) -> None:
    store = backend.stores.providers
    old = Keyring.from_secrets("o" * 40)
    first = await hashing_key(store, old, b"k" * 32)
    assert first == b"k" * 32
    assert await hashing_key(store, old, b"other-initial-value-ignored-now!") == first
    with pytest.raises(SecretsUnavailable, match="previous_secret_keys"):
        await hashing_key(store, Keyring.from_secrets("n" * 40), b"x" * 32)
    assert await hashing_key(store, Keyring.from_secrets("n" * 40, ["o" * 40]), b"x" * 32) == first


async def test_a_deployment_removed_from_the_table_leaves_no_statistics_or_cooldown(backend: Backend) -> None:
    """The router forgets what a swap dropped: the statistics and the cooldown of a deployment
    whose model was deleted are not kept (for ever: it is never sent a request again), and the
    same deployment created again starts afresh; those of the deployments kept stay."""
    store = backend.stores.providers
    live = LiveRouting(SETTINGS, catalog.build(SETTINGS))
    windows = Windows(live.catalog)
    router = Router(live, health=Health(CooldownConfig(failures=1)), windows=windows)
    prices = Prices(live.catalog, live)
    live.swapped += [router.forget_removed, prices.forget_removed]
    await live.start(store, None, Keyring.from_secrets(SECRET), reload_seconds=3600)
    try:
        await store.create_model(ModelRecord(name="db-gone", provider="yaml-p", model="gpt-4o"))
        await live.reload()
        kept, gone = live.current.routes["yaml-m"], live.current.routes["db-gone"]
        for route in (kept, gone):
            router.started(route, 10, None)
            router.finished(route, UpstreamError("failed"), 0.01)
            router.health.failed(route, UpstreamError("failed"))  # (a group of one is never cooled)
            assert windows.smallest(live.current.groups[route.target.name])  # memoised
            assert prices.of_route(route) is not None
        now = time.monotonic()
        assert not router.health.eligible(gone, now) and not router.health.eligible(kept, now)
        assert await store.delete_model("db-gone") is not None
        await live.reload()
        assert "db-gone" not in live.current.groups
        assert router.stats.peek(gone) is None
        assert ("db-gone", gone.deployment) not in prices._memo  # what the swap dropped is not held
        assert ("db-gone", gone.deployment) not in windows._sizes and "db-gone" not in windows._groups
        assert router.stats.peek(kept) is not None and not router.health.eligible(kept, now)
        await store.create_model(ModelRecord(name="db-gone", provider="yaml-p", model="gpt-4o"))
        await live.reload()
        again = live.current.routes["db-gone"]
        assert router.health.eligible(again, time.monotonic()) and router.stats.peek(again) is None
    finally:
        await live.close()


async def test_a_request_ending_after_its_deployment_was_removed_leaves_no_cooldown_or_price(
        backend: Backend) -> None:
    """A request still running on a deployment when a swap drops it ends afterwards: its failure
    is not counted (the statistics already skip it), so the model created again with the same
    name is not born cooling down (a group of one: every request a 503 until the cooldown ends),
    and nothing is held again for the dropped deployment."""
    store = backend.stores.providers
    live = LiveRouting(SETTINGS, catalog.build(SETTINGS))
    router = Router(live, health=Health(CooldownConfig(failures=1)), windows=Windows(live.catalog))
    prices = Prices(live.catalog, live)
    live.swapped += [router.forget_removed, prices.forget_removed]
    await live.start(store, None, Keyring.from_secrets(SECRET), reload_seconds=3600)
    try:
        await store.create_model(ModelRecord(name="db-gone", provider="yaml-p", model="gpt-4o"))
        await live.reload()
        gone = live.current.routes["db-gone"]
        router.started(gone, 10, None)  # a request under way on it
        assert await store.delete_model("db-gone") is not None
        await live.reload()
        # It ends now, failed, and is priced for its usage record, as the pipeline does.
        router.finished(gone, UpstreamError("failed"), 0.01)
        prices.priced(gone)
        held = ("db-gone", gone.deployment) in prices._memo  # the dropped entry, held again
        await store.create_model(ModelRecord(name="db-gone", provider="yaml-p", model="gpt-4o"))
        await live.reload()
        assert router.plan(live.current.groups["db-gone"]) == [live.current.routes["db-gone"]]
        assert not held
    finally:
        await live.close()
