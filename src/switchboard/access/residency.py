"""A token caller's tenant and team, as its residency policy needs them, cached.

A key carries its tenant's and team's allowed regions with its record (the key cache); a JWT
caller's come from the tenant and team its claims name, read when a token is verified (a new
token, or one whose verification cache entry ended). Cached here by (tenant, team), so that a
caller the gateway has seen is served like a key caller while the database cannot be read
(``stale_if_error``: ``database.stale_while_unreachable_seconds``), and one it has not seen gets
``503 store_unavailable`` from the store's error rather than a guess.

A change of a tenant's or team's regions (or MCP tools) is published as "every key changed"
(``ALL`` on the keys' topic, http/admin/tenants.py and teams.py), and so is a tenant's or a
team's delete (a token naming a deleted tenant or team is refused): that drops every entry
here too, at once on this instance. A single key's change names no tenant or team and drops nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import NamedTuple

from switchboard.access.cache import TOPIC as KEYS_TOPIC
from switchboard.stores.feedcache import ALL, STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ChangeFeed, TenancyStore
from switchboard.stores.sql.keys import intersect

_TEAM_ID = re.compile(r"team_[0-9a-f]{16}")

TOPIC = "tenancy"  # nothing is published here yet: the changes come on the keys' topic
Key = tuple[str | None, str | None]  # the token's tenant and team claims (None: not given)


class Residency(NamedTuple):
    team_tenant: str | None  # the tenant of the team the token names; None: no such team (or none named)
    regions: frozenset[str] | None  # the tenant's and team's allowed regions; None: anywhere
    # The tenant has no record because it was deleted (its id retired), not because it never had one.
    tenant_retired: bool = False
    # The team named has no record but the form of the ids the gateway gives its teams: deleted.
    team_deleted: bool = False


class ResidencyCache(FeedCache[Key, Residency]):
    def __init__(
        self,
        tenancy: TenancyStore,
        feed: ChangeFeed,
        *,
        ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        stale_if_error: float = 0.0,
    ) -> None:
        async def load(key: Key) -> Residency:
            tenant, team = key
            group = await tenancy.find_team(team) if team is not None else None
            owner = group.tenant_id if group is not None else None
            # Team ids are the gateway's own (http/admin/scoping.py new_id): one without a record
            # names a team deleted (or never made), not a team from outside the gateway.
            deleted = group is None and team is not None and _TEAM_ID.fullmatch(team) is not None
            if tenant is None:
                return Residency(owner, None, team_deleted=deleted)
            found = await tenancy.get_tenant(tenant)
            # Only a tenant without a record costs the second query (most have one, or never had).
            retired = found is None and await tenancy.tenant_retired(tenant)
            return Residency(owner, intersect(found.allowed_regions if found is not None else None,
                                              group.allowed_regions if group is not None else None),
                             retired, deleted)

        super().__init__(
            TOPIC, load, feed, encode=lambda key: ALL, decode=lambda message: None, ttl=ttl,
            max_entries=max_entries, clock=clock, stale_if_error=stale_if_error, also=(KEYS_TOPIC,),
            read_timeout=STORE_READ_SECONDS,
        )

    def drop(self, message: str) -> None:
        """Only "every key changed" concerns tenants and teams; one key's hash does not."""
        if message == ALL:
            super().drop(ALL)
