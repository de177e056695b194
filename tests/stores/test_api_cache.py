"""The request path of ``POST /apis/{name}`` makes no store read once the API is cached
(apis/cache.py): the API record, its prompt version and the caller's subscription come from
caches kept honest over the change feed; nor do the APIs' OpenAPI documents once built
(http/apis/docs.py), nor the portal catalog's APIs once read (portal/cache.py). Reads are
counted on a wrapper of the real stores (SQLite or PostgreSQL, Redis feed on the cluster). Both
backends."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from switchboard.access.subscriptions import SubscriptionCache
from switchboard.apis.cache import TOPIC, ApiCache, message_of, publish_change
from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import Gone, NotFound
from switchboard.http.apis import ApiCalls, ApiInbound, ApiStage
from switchboard.http.apis.docs import CATALOG, DocumentCache
from switchboard.portal import ApiSource
from switchboard.portal.cache import CatalogCache, TenantSource
from switchboard.prompts.cache import TOPIC as PROMPTS
from switchboard.prompts.cache import PromptCache
from switchboard.stores.protocols import (
    ApiRecord,
    ApiStore,
    PromptStore,
    PromptVersion,
    SubscriptionRecord,
    SubscriptionStore,
)
from tests.stores.conftest import Backend

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.now(UTC).replace(microsecond=0)


class Counted:
    """A store with every method call counted by name (``reads``), then passed on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reads: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads[name] += 1
            return await attr(*args, **kwargs)

        return counted


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _prompt(name: str, tenant: str) -> PromptVersion:
    return PromptVersion(
        tenant_id=tenant, name=name, version=0,
        messages=[{"role": "user", "content": "Classify: {{ text }}"}],
        variables={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        model="gpt-4o-mini", params={}, output_schema=None, description=None, team_id="owners",
        created_by="key_1", created_at=NOW,
    )


class Rig:
    """An ApiStage over counted stores and the three request-path caches, and its calls."""

    def __init__(self, backend: Backend, tenant: str, *, clock: ManualClock | None = None) -> None:
        stores = backend.stores
        assert stores.apis is not None and stores.prompts is not None
        self.apis = Counted(stores.apis)
        self.prompts = Counted(stores.prompts)
        self.subs = Counted(stores.subscriptions)
        self.stores = replace(stores, apis=cast(ApiStore, self.apis), prompts=cast(PromptStore, self.prompts),
                              subscriptions=cast(SubscriptionStore, self.subs))
        kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.api_cache = ApiCache(cast(ApiStore, self.apis), stores.feed, ttl=60, **kw)
        self.prompt_cache = PromptCache(cast(PromptStore, self.prompts), stores.feed, ttl=60)
        self.sub_cache = SubscriptionCache(cast(SubscriptionStore, self.subs), stores.feed, ttl=60)
        self.calls = ApiCalls()
        self.tenant = tenant

        async def prompt_cache() -> PromptCache:
            return self.prompt_cache

        self.stage = ApiStage(self.calls, lambda: self.stores, lambda: self.sub_cache, prompt_cache,
                              lambda: self.api_cache)

    async def start(self) -> None:
        for cache in (self.api_cache, self.prompt_cache, self.sub_cache):
            await cache.start()

    async def close(self) -> None:
        for cache in (self.api_cache, self.prompt_cache, self.sub_cache):
            await cache.close()

    @property
    def total_reads(self) -> int:
        return sum(sum(c.reads.values()) for c in (self.apis, self.prompts, self.subs))

    def reset(self) -> None:
        for counted in (self.apis, self.prompts, self.subs):
            counted.reads.clear()

    async def call(self, name: str, team: str = "consumers", key: str = "key_c") -> RequestContext:
        principal = Principal(id=key, role="developer", key_id=key, tenant_id=self.tenant, team_id=team)
        ctx = RequestContext("rid", "chat", ApiInbound(self.calls), {}, b'{"text": "great"}', 0.0,
                             path=f"/apis/{name}", principal=principal)

        async def terminal(ctx: RequestContext) -> Result:
            return Reply({"choices": []})

        await self.stage(ctx, terminal)
        return ctx


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not seen in time"
        await asyncio.sleep(0.02)


async def _world(backend: Backend, tenant: str, name: str) -> None:
    """Prompt ``name`` (one version) published as API ``name`` of team ``owners``, needing
    approval; team ``consumers`` is approved."""
    stores = backend.stores
    assert stores.apis is not None and stores.prompts is not None
    await stores.prompts.create_version(_prompt(name, tenant))
    await stores.apis.create(ApiRecord(tenant_id=tenant, name=name, prompt=name, version=1,
                                       team_id="owners", require_approval=True))
    sub = await stores.subscriptions.request(SubscriptionRecord(
        id=f"sub_{name}", tenant_id=tenant, team_id="consumers", model=f"api:{name}"))
    await stores.subscriptions.decide(tenant, sub.id, expect=("pending",), status="approved",
                                      decided_by="admin", reason=None)


async def test_a_cached_call_makes_no_store_read(backend: Backend) -> None:
    tenant = f"t_{backend.kind}_1"
    await _world(backend, tenant, "sentiment")
    rig = Rig(backend, tenant)
    await rig.start()
    try:
        first = await rig.call("sentiment")
        assert first.request["messages"] == [{"role": "user", "content": "Classify: great"}]
        assert rig.apis.reads["get"] == 1 and rig.prompts.reads["get"] == 1 and rig.subs.reads["find"] == 1
        rig.reset()
        for key in ("key_c", "key_d", "key_c"):
            again = await rig.call("sentiment", key=key)
            assert again.request["messages"] == first.request["messages"]
            assert again.response_headers["x-switchboard-api-version"] == "1"
        assert rig.total_reads == 0, dict(rig.apis.reads + rig.prompts.reads + rig.subs.reads)
        # "No such API" is cached too: the second 404 reads nothing.
        for _ in range(2):
            with pytest.raises(NotFound):
                await rig.call("nothing-here")
        assert rig.apis.reads["get"] == 1
    finally:
        await rig.close()


async def test_a_change_is_heard_and_read_once(backend: Backend) -> None:
    """A change published on the feed (as the admin API does) drops the entry: the next call
    reads the record again, once, and sees the change."""
    tenant = f"t_{backend.kind}_2"
    await _world(backend, tenant, "lifecycle")
    apis = backend.stores.apis
    assert apis is not None
    rig = Rig(backend, tenant)
    await rig.start()
    try:
        await rig.call("lifecycle")
        record = await apis.get(tenant, "lifecycle")
        assert record is not None
        await apis.update(replace(record, status="deprecated", deprecated_at=NOW, successor="next"))
        # The feed alone (not this process's shortcut), so on the cluster it travels over Redis.
        await backend.stores.feed.publish(TOPIC, message_of(tenant, "lifecycle"))

        async def deprecated() -> bool:
            ctx = await rig.call("lifecycle")
            return "deprecation" in ctx.response_headers

        await _eventually(deprecated)
        rig.reset()
        ctx = await rig.call("lifecycle")
        assert ctx.response_headers["link"] == '</apis/next>; rel="successor-version"'
        assert rig.total_reads == 0
        # The admin API's publish_change: this process's caches drop the entry at once.
        stored = await apis.get(tenant, "lifecycle")
        assert stored is not None
        await apis.update(replace(stored, status="retired"))
        await publish_change(backend.stores.feed, tenant, "lifecycle")
        with pytest.raises(Gone):
            await rig.call("lifecycle")
        assert rig.apis.reads["get"] == 1
        # Another tenant's API of the same name is another entry (and there is none).
        other = Rig(backend, f"{tenant}_other")
        await other.start()
        try:
            with pytest.raises(NotFound):
                await other.call("lifecycle")
        finally:
            await other.close()
    finally:
        await rig.close()


async def test_a_created_api_replaces_a_cached_miss(backend: Backend) -> None:
    tenant = f"t_{backend.kind}_3"
    rig = Rig(backend, tenant)
    await rig.start()
    try:
        with pytest.raises(NotFound):
            await rig.call("late")
        await _world(backend, tenant, "late")
        await publish_change(backend.stores.feed, tenant, "late")
        ctx = await rig.call("late")
        assert ctx.response_headers["x-switchboard-api-version"] == "1"
    finally:
        await rig.close()


async def test_entries_expire_after_their_ttl(backend: Backend) -> None:
    """The bound on staleness when a feed message is lost: a record after ``ttl``, a miss after
    at most 5 s."""
    tenant = f"t_{backend.kind}_4"
    await _world(backend, tenant, "ttl")
    clock = ManualClock()
    rig = Rig(backend, tenant, clock=clock)  # ttl 60 s
    await rig.start()
    try:
        await rig.call("ttl")
        with pytest.raises(NotFound):
            await rig.call("ttl-missing")
        rig.reset()
        clock.now += 5.5
        with pytest.raises(NotFound):
            await rig.call("ttl-missing")
        await rig.call("ttl")
        assert rig.apis.reads["get"] == 1  # the miss expired, the record not yet
        clock.now += 60
        await rig.call("ttl")
        assert rig.apis.reads["get"] == 2
    finally:
        await rig.close()


async def test_the_openapi_documents_are_read_once_and_follow_every_change(backend: Backend) -> None:
    """``GET /apis/openapi.json`` and ``/apis/{name}/openapi.json`` are open to any key of the
    tenant: each document is built once (one read of the APIs and of each served prompt) and
    served from memory after, until an API or prompt change of the tenant is heard."""
    tenant = f"t_{backend.kind}_5"
    await _world(backend, tenant, "docs")
    stores = backend.stores
    assert stores.apis is not None and stores.prompts is not None
    apis, prompts = Counted(stores.apis), Counted(stores.prompts)
    # Another instance of the cluster hears the changes published here over Redis.
    peer = await backend.peer()
    cache = DocumentCache(cast(ApiStore, apis), cast(PromptStore, prompts), peer.feed, ttl=600)
    await cache.start()
    try:
        for host in ("http://a.example", "http://b.example", "http://a.example"):
            catalog = await cache.document(tenant, CATALOG, host)
            one = await cache.document(tenant, "docs", host)
            assert catalog["servers"] == [{"url": host}] == one["servers"]
            assert "/apis/docs" in catalog["paths"] and one["info"]["version"] == "1"
        assert dict(apis.reads) == {"list_apis": 1, "get": 1} and dict(prompts.reads) == {"get": 2}
        for _ in range(2):
            with pytest.raises(NotFound):
                await cache.document(tenant, "nothing-here", "http://a.example")
        assert apis.reads["get"] == 2

        # A prompt change (a label the API follows, moved) reaches both documents.
        await stores.prompts.create_version(_prompt("docs", tenant))
        await stores.prompts.set_label(tenant, "docs", "stable", 2)
        record = await stores.apis.get(tenant, "docs")
        assert record is not None
        await stores.apis.update(replace(record, version=None, label="stable", description="Sentiment"))
        # The feed alone (not this process's shortcut), so on the cluster it travels over Redis.
        await stores.feed.publish(PROMPTS, message_of(tenant, "docs"))

        async def follows_the_label() -> bool:
            found = await cache.document(tenant, "docs", "http://a.example")
            return bool(found["info"]["version"] == "2")

        await _eventually(follows_the_label)
        described = await cache.document(tenant, "docs", "http://a.example")
        assert described["info"]["description"] == "Sentiment"
        # An API change (retired) reaches both: the catalog leaves it out, its own document is 410.
        stored = await stores.apis.get(tenant, "docs")
        assert stored is not None
        await stores.apis.update(replace(stored, status="retired"))
        await publish_change(stores.feed, tenant, "docs")

        async def retired() -> bool:
            return "/apis/docs" not in (await cache.document(tenant, CATALOG, "http://a.example"))["paths"]

        await _eventually(retired)
        with pytest.raises(Gone):
            await cache.document(tenant, "docs", "http://a.example")
    finally:
        await cache.close()


async def test_the_portal_catalog_reads_a_tenants_apis_once_until_a_change(backend: Backend) -> None:
    """``GET /admin/v1/catalog`` (any key of the tenant) lists the tenant's APIs from the store:
    read once per tenant (portal/cache.py), again only after a change of the tenant is heard."""
    tenant = f"t_{backend.kind}_6"
    await _world(backend, tenant, "listed")
    stores = backend.stores
    assert stores.apis is not None and stores.prompts is not None
    apis, prompts = Counted(stores.apis), Counted(stores.prompts)
    source = ApiSource(lambda: cast(ApiStore, apis), lambda: cast(PromptStore, prompts))
    peer = await backend.peer()
    cache = CatalogCache(peer.feed, ttl=600)
    await cache.start()
    listed = TenantSource(source.kind, source.listed, lambda: cache)
    try:
        for key in ("key_a", "key_b", "key_a"):
            principal = Principal(id=key, role="viewer", key_id=key, tenant_id=tenant, team_id="consumers")
            [entry] = await listed.entries(tenant, principal)
            assert entry.name == "listed" and entry.fields["versions"] == [1]
        assert dict(apis.reads) == {"list_apis": 1} and dict(prompts.reads) == {"version_numbers": 1}
        # Another tenant's change is not this tenant's: still kept.
        await stores.feed.publish(PROMPTS, message_of(f"{tenant}_other", "listed"))
        # A new version of the prompt, heard over the feed alone (Redis on the cluster).
        await stores.prompts.create_version(_prompt("listed", tenant))
        await stores.feed.publish(PROMPTS, message_of(tenant, "listed"))

        async def two_versions() -> bool:
            [entry] = await listed.entries(tenant, principal)
            return bool(entry.fields["versions"] == [1, 2])

        await _eventually(two_versions)
        assert apis.reads["list_apis"] == 2
    finally:
        await cache.close()
