"""PromptStore contract on SQLite and PostgreSQL: versions numbered atomically per (tenant,
name), immutable and read back as saved; labels pointing at versions and moved (rollback); the
tenant's latest versions listed; tenants kept apart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from switchboard.prompts.cache import TOPIC, PromptCache, message_of
from switchboard.stores.protocols import PromptStore, PromptVersion
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC).replace(microsecond=0)


def _store(backend: Backend) -> PromptStore:
    store = backend.stores.prompts
    assert store is not None
    return store


def _draft(name: str, tenant: str = "t1", **extra: object) -> PromptVersion:
    fields: dict[str, object] = {
        "tenant_id": tenant,
        "name": name,
        "version": 0,
        "messages": [{"role": "system", "content": "Be brief ✓"},
                     {"role": "user", "content": "Classify: {{ text }}"}],
        "variables": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "model": "gpt-4o-mini",
        "params": {"temperature": 0.2, "max_tokens": 64},
        "output_schema": {"type": "object", "properties": {"label": {"type": "string"}}},
        "description": "sentiment",
        "team_id": "team_a",
        "created_by": "key_1",
        "created_at": NOW,
        **extra,
    }
    return PromptVersion(**fields)  # type: ignore[arg-type]


async def test_versions_count_from_one_and_read_back_as_saved(backend: Backend) -> None:
    store = _store(backend)
    first = await store.create_version(_draft("sentiment", version=7))
    assert first.version == 1  # the draft's number is ignored
    second = await store.create_version(_draft("sentiment", model="gpt-4o", output_schema=None, params={}))
    assert second.version == 2
    assert await store.get("t1", "sentiment", version=1) == first
    assert await store.get("t1", "sentiment", version=2) == second
    assert await store.get("t1", "sentiment") == second  # the latest
    assert await store.get("t1", "sentiment", version=3) is None
    assert await store.get("t1", "missing") is None
    assert [v.version for v in await store.versions("t1", "sentiment")] == [1, 2]
    assert await store.versions("t1", "missing") == []


async def test_any_stored_tells_whether_any_tenant_has_a_prompt(backend: Backend) -> None:
    # Read once at start: the gateway imports the template libraries ahead when it is true.
    store = _store(backend)
    assert await store.any_stored() is False
    await store.create_version(_draft("sentiment", tenant="t9"))
    assert await store.any_stored() is True
    peer = (await backend.peer()).prompts
    assert peer is not None and await peer.any_stored() is True  # another instance sees it


async def test_concurrent_saves_take_distinct_consecutive_numbers(backend: Backend) -> None:
    store = _store(backend)
    peer = await backend.peer()
    other = peer.prompts
    assert other is not None
    saved = await asyncio.gather(
        *(s.create_version(_draft("raced", description=str(i)))
          for i, s in enumerate([store, other] * 5))
    )
    assert sorted(v.version for v in saved) == list(range(1, 11))
    stored = await store.versions("t1", "raced")
    assert {v.version: v.description for v in stored} == {v.version: v.description for v in saved}


async def test_labels_point_at_versions_and_move(backend: Backend) -> None:
    store = _store(backend)
    for _ in range(3):
        await store.create_version(_draft("labelled"))
    assert await store.labels("t1", "labelled") == {}
    assert await store.get("t1", "labelled", label="production") is None
    assert await store.set_label("t1", "labelled", "production", 2) is None  # new: nothing before
    assert await store.set_label("t1", "labelled", "staging", 3) is None
    assert await store.labels("t1", "labelled") == {"production": 2, "staging": 3}
    found = await store.get("t1", "labelled", label="production")
    assert found is not None and found.version == 2
    assert await store.set_label("t1", "labelled", "production", 1) == 2  # rollback
    assert await store.set_label("t1", "labelled", "production", 1) == 1  # to where it is
    found = await store.get("t1", "labelled", label="production")
    assert found is not None and found.version == 1
    assert await store.labels("t1", "labelled") == {"production": 1, "staging": 3}
    # Setting the same label at once from two places leaves one row.
    await asyncio.gather(*(store.set_label("t1", "labelled", "canary", n) for n in (1, 2, 3)))
    assert (await store.labels("t1", "labelled"))["canary"] in (1, 2, 3)


async def test_concurrent_label_moves_each_report_the_version_they_replaced(backend: Backend) -> None:
    store = _store(backend)
    for _ in range(10):
        await store.create_version(_draft("raced"))
    moves = list(range(1, 11))
    previous = await asyncio.gather(*(store.set_label("t1", "raced", "production", n) for n in moves))
    final = (await store.labels("t1", "raced"))["production"]
    # One history: one move created the label, every other replaced the version a single other
    # move had set, and only the last move's version was replaced by none.
    assert previous.count(None) == 1
    assert sorted(p for p in previous if p is not None) == sorted(set(moves) - {final})


async def test_tenants_are_apart(backend: Backend) -> None:
    store = _store(backend)
    mine = await store.create_version(_draft("shared-name", tenant="ta"))
    theirs = await store.create_version(_draft("shared-name", tenant="tb", model="other"))
    assert mine.version == theirs.version == 1
    await store.set_label("ta", "shared-name", "production", 1)
    assert await store.labels("tb", "shared-name") == {}
    assert await store.get("tb", "shared-name", label="production") is None
    found = await store.get("tb", "shared-name")
    assert found is not None and found.model == "other"
    assert [p.name for p in await store.list_prompts("tc")] == []


async def test_list_shows_the_latest_version_of_each_prompt(backend: Backend) -> None:
    store = _store(backend)
    for name, count in (("b-prompt", 2), ("a-prompt", 1), ("c-prompt", 3)):
        for _ in range(count):
            await store.create_version(_draft(name, tenant="tl"))
    await store.create_version(_draft("d-prompt", tenant="tl", team_id="team_b"))
    listed = await store.list_prompts("tl")
    assert [(p.name, p.version) for p in listed] == [
        ("a-prompt", 1), ("b-prompt", 2), ("c-prompt", 3), ("d-prompt", 1)
    ]
    assert [p.name for p in await store.list_prompts("tl", team_id="team_b")] == ["d-prompt"]
    assert [p.name for p in await store.list_prompts("tl", after="b-prompt", limit=1)] == ["c-prompt"]
    await store.set_label("tl", "c-prompt", "production", 2)
    labels = await store.all_labels("tl", ["a-prompt", "c-prompt"])
    assert labels == {"c-prompt": {"production": 2}}
    assert await store.all_labels("tl", []) == {}


async def test_versions_are_immutable_copies(backend: Backend) -> None:
    store = _store(backend)
    draft = _draft("frozen")
    saved = await store.create_version(draft)
    assert replace(saved, version=0) == draft
    again = await store.create_version(replace(draft, messages=[{"role": "user", "content": "v2"}]))
    first = await store.get("t1", "frozen", version=1)
    assert first is not None and first.messages == draft.messages
    assert again.messages == [{"role": "user", "content": "v2"}]


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not seen in time"
        await asyncio.sleep(0.02)


async def test_the_request_path_cache_queries_once_and_hears_changes(backend: Backend) -> None:
    """Resolved versions are cached per (tenant, name, reference); a save or a label move made on
    one instance drops that prompt's entries on every instance (change feed)."""
    store = _store(backend)
    peer = await backend.peer()
    assert peer.prompts is not None
    here = PromptCache(store, backend.stores.feed, ttl=600)
    there = PromptCache(peer.prompts, peer.feed, ttl=600)
    await here.start()
    await there.start()
    try:
        await store.create_version(_draft("cached"))
        await store.set_label("t1", "cached", "production", 1)
        for _ in range(5):
            found = await there.resolve("t1", "cached", label="production")
            assert found is not None and found.version == 1
        assert there.lookups == 1  # one query, however many calls
        assert await there.resolve("t1", "missing") is None
        assert await there.resolve("t1", "missing") is None
        assert there.lookups == 2  # "no such prompt" is cached too
        # A new version and a label moved here: the other instance hears of it.
        await store.create_version(_draft("cached", description="two"))
        await store.set_label("t1", "cached", "production", 2)
        # As the admin API does, but over the feed alone (not this process's shortcut), so on
        # the cluster the other instance hears it from Redis.
        await backend.stores.feed.publish(TOPIC, message_of("t1", "cached"))

        async def moved() -> bool:
            found = await there.resolve("t1", "cached", label="production")
            return found is not None and found.version == 2

        await _eventually(moved)
        latest = await there.resolve("t1", "cached")
        assert latest is not None and latest.description == "two"
        # Another tenant's prompt of the same name is another entry.
        assert await there.resolve("t2", "cached") is None
    finally:
        await here.close()
        await there.close()


async def test_version_numbers_of_many_prompts_in_one_call(backend: Backend) -> None:
    store = _store(backend)
    for _ in range(3):
        await store.create_version(_draft("sentiment"))
    await store.create_version(_draft("summary"))
    await store.create_version(_draft("sentiment", tenant="t2"))  # another tenant's, not counted
    # More names than one IN list takes: the lists are read in chunks and merged.
    asked = ["summary", "sentiment", *(f"absent_{i}" for i in range(1200))]
    found = await store.version_numbers("t1", asked)
    assert found["sentiment"] == [1, 2, 3]
    assert found["summary"] == [1]
    assert found["absent_7"] == []
    assert len(found) == 1202
    assert await store.version_numbers("t2", ["sentiment"]) == {"sentiment": [1]}
    assert await store.version_numbers("t1", []) == {}
