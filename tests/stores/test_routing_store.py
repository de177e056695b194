"""The routing overrides store (run-time weights), on both backends: set, replaced, removed,
read back in order, and seen by another instance on the same database; the model table's
reload reads them with the stored providers and models on one pooled connection."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from switchboard import catalog
from switchboard.routing.live import LiveRouting
from switchboard.settings.loader import validate
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_weights_are_set_replaced_and_removed(backend: Backend) -> None:
    store = backend.stores.routing
    assert store is not None
    assert await store.overrides() == []
    now, before = await store.set_weight("g", "openai/gpt-4o#2", 3)
    assert before is None and now is not None
    assert (now.group, now.deployment, now.weight) == ("g", "openai/gpt-4o#2", 3)
    await store.set_weight("a-group", "d", 0)
    now, before = await store.set_weight("g", "openai/gpt-4o#2", 7)
    assert before is not None and before.weight == 3 and now is not None and now.weight == 7
    got = await store.overrides()
    expected = [("a-group", "d", 0), ("g", "openai/gpt-4o#2", 7)]
    assert [(o.group, o.deployment, o.weight) for o in got] == expected
    assert all(o.updated_at.tzinfo is not None for o in got)
    peer = await backend.peer()
    assert peer.routing is not None
    assert [o.weight for o in await peer.routing.overrides()] == [0, 7]
    now, before = await store.set_weight("g", "openai/gpt-4o#2", None)
    assert now is None and before is not None and before.weight == 7
    assert [(o.group, o.weight) for o in await store.overrides()] == [("a-group", 0)]
    assert await store.set_weight("missing", "x", None) == (None, None)


async def test_the_live_table_loads_the_stored_weights_at_start_and_on_change(backend: Backend) -> None:
    settings = validate({
        "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
        "models": [{"name": "g", "provider": "p", "model": "m1", "weight": 2},
                   {"name": "g", "provider": "p", "model": "m2"}],
        "auth": {"master_key": "sk-master-key-for-tests"},
    }, "test.yaml", env={})
    store = backend.stores.routing
    assert store is not None
    await store.set_weight("g", "p/m2", 9)
    live = LiveRouting(settings, catalog.build(settings))
    await live.start(backend.stores.providers, None, None, reload_seconds=3600, overrides=store)
    try:
        assert live.current.groups["g"].weights == (2, 9)
        before = live.current
        await live.reload()
        assert live.current is before  # nothing changed: nothing rebuilt
        await store.set_weight("g", "p/m2", None)
        await store.set_weight("g", "p/m1", 0)
        await live.reload()
        assert live.current.groups["g"].weights == (0, 1)
    finally:
        await live.close()


async def test_split_shares_are_set_replaced_and_removed(backend: Backend) -> None:
    store = backend.stores.routing
    assert store is not None
    assert await store.split_overrides() == []
    now, before = await store.set_split("canary", {"stable": 90.0, "canary": 10.0})
    assert before is None and now is not None and now.percents == {"stable": 90.0, "canary": 10.0}
    now, before = await store.set_split("canary", {"stable": 0.0, "canary": 100.0})
    assert before is not None and before.percents["stable"] == 90.0
    peer = await backend.peer()
    assert peer.routing is not None
    got = await peer.routing.split_overrides()
    assert [(o.name, dict(o.percents)) for o in got] == [("canary", {"stable": 0.0, "canary": 100.0})]
    assert got[0].updated_at.tzinfo is not None
    now, before = await store.set_split("canary", None)
    assert now is None and before is not None
    assert await store.split_overrides() == []


async def test_a_weight_or_split_already_so_is_not_written(backend: Backend) -> None:
    # The admin API audits a change only when these two differ: the same object means no change.
    store = backend.stores.routing
    assert store is not None
    now, _ = await store.set_weight("same", "d", 4)
    again, before = await store.set_weight("same", "d", 4)
    assert again is before and before == now  # its updated_at included: nothing written
    assert [o.updated_at for o in await store.overrides() if o.group == "same"] == [now.updated_at]
    gone, before = await store.set_weight("same", "d", None)
    assert gone is None and before is not None
    assert await store.set_weight("same", "d", None) == (None, None)
    split, _ = await store.set_split("same", {"a": 20.0, "b": 80.0})
    again_split, before_split = await store.set_split("same", {"a": 20, "b": 80})
    assert again_split is before_split and before_split == split
    await store.set_split("same", None)
    assert await store.set_split("same", None) == (None, None)


async def test_the_model_table_reload_reads_everything_on_one_connection(backend: Backend) -> None:
    """Its five SELECTs (providers, credentials, models, weights, splits): one checkout of the
    pool, not one per store call."""
    settings = validate({
        "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
        "models": [{"name": "g", "provider": "p", "model": "m1"},
                   {"name": "g", "provider": "p", "model": "m2"}],
        "auth": {"master_key": "sk-master-key-for-tests"},
    }, "test.yaml", env={})
    store = backend.stores.routing
    assert store is not None
    live = LiveRouting(settings, catalog.build(settings))
    await live.start(backend.stores.providers, None, None, reload_seconds=3600, overrides=store)
    pool = backend.stores.providers._engine.sync_engine.pool  # type: ignore[attr-defined]
    checkouts: list[object] = []

    def checked_out(*args: Any) -> None:
        checkouts.append(args[0])

    event.listen(pool, "checkout", checked_out)
    try:
        await store.set_weight("g", "p/m2", 5)
        await store.set_split("canary", {"g": 100.0})
        checkouts.clear()
        await live.reload()
        assert len(checkouts) == 1
        assert live.current.groups["g"].weights == (1, 5)
        assert live.split_percents == {"canary": {"g": 100.0}}
    finally:
        event.remove(pool, "checkout", checked_out)
        await live.close()
