"""What the catalog reads from the store, kept per tenant in process memory.

``GET /admin/v1/catalog`` and ``GET /admin/v1/catalog/openapi.json`` are open to any key of the
tenant, and their prompt APIs (the API records, their prompts' versions and, for the document,
each API's generated operations), the REST services registered for the tenant and the caller
team's subscriptions come from the store. Each part is read once per tenant (the subscriptions
once per team) and kept until a change to the tenant's APIs, prompts, services or subscriptions
arrives on the change feed (topics ``apis``, ``prompts``, ``services``, ``subscriptions``: the
last is the one the request path's subscription cache hears), which drops everything of that
tenant on every instance; entries also expire after ``ttl``, the bound on staleness when a
message is lost.

The request path's own subscription cache (access/subscriptions.py) is not used: it keeps one
status per (tenant, team, subject), filled as calls ask, without the subscription's id, and a
page of the catalog needs the state of each of its entries: read through it, a page would cost a
query per entry instead of one per team, and fill it with subjects the team never calls.

The gateway owns the cache (started and closed with the stores); the admin API's catalog
registers what each part is read with (:meth:`CatalogCache.use`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.access.subscriptions import TOPIC as SUBSCRIPTIONS
from switchboard.apis.cache import TOPIC as APIS
from switchboard.context import Principal
from switchboard.portal.sources import Entry
from switchboard.prompts.cache import TOPIC as PROMPTS
from switchboard.services.table import TOPIC as SERVICES
from switchboard.stores.feedcache import ALL, FeedCache
from switchboard.stores.protocols import ChangeFeed

# tenant, part (a source's kind, "operations" or "subscriptions"), name ("" for a list; the team)
Key = tuple[str, str, str]
Loader = Callable[[str, str], Awaitable[Any]]  # (tenant, name) -> the part's value


def tenant_of(message: str) -> str | None:
    """The tenant a change message names: ``<tenant>\\x1f<name>`` (APIs, prompts),
    ``<tenant>\\x1f<team>\\x1f<subject>`` (subscriptions) or ``<tenant>\\t<name>`` (services);
    None for ``ALL`` or a message this version cannot read."""
    for sep in ("\x1f", "\t"):
        tenant, found, _ = message.partition(sep)
        if found:
            return tenant
    return None


class CatalogCache(FeedCache[Key, Any]):
    """Values by (tenant, part, name), every one of a tenant dropped by a change of it."""

    def __init__(self, feed: ChangeFeed, *, ttl: float = 10.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loaders: dict[str, Loader] = {}

        async def load(key: Key) -> Any:
            tenant, part, name = key
            return await self._loaders[part](tenant, name)

        super().__init__(APIS, load, feed, encode=lambda key: f"{key[0]}\x1f{key[2]}",
                         decode=lambda message: None, ttl=ttl, max_entries=max_entries, clock=clock,
                         also=(PROMPTS, SERVICES, SUBSCRIPTIONS))

    def use(self, part: str, loader: Loader) -> None:
        """Read ``part`` with ``loader`` (the first registered stays: the catalog registers it
        on use, as the cache is the gateway's and starts with the stores)."""
        self._loaders.setdefault(part, loader)

    def drop(self, message: str) -> None:
        """Forget everything of the tenant a message names (``ALL`` or unknown: everything)."""
        tenant = None if message == ALL else tenant_of(message)
        if tenant is None:
            super().drop(ALL)
            return
        self.drop_where(lambda key: key[0] == tenant)

    async def value(self, tenant: str, part: str, name: str = "") -> Any:
        return await self.get((tenant, part, name))


class TenantSource:
    """A source whose entries are the tenant's alone, whoever asks (``listed(tenant)``), served
    from the cache when there is one."""

    def __init__(self, kind: str, listed: Callable[[str], Awaitable[list[Entry]]],
                 cache: Callable[[], CatalogCache | None]) -> None:
        self.kind = kind
        self._listed = listed
        self._cache = cache

    async def entries(self, tenant: str, principal: Principal) -> list[Entry]:
        cache = self._cache()
        if cache is None:  # not started: read as it is
            return await self._listed(tenant)
        cache.use(self.kind, lambda t, _: self._listed(t))
        return list(await cache.value(tenant, self.kind))
