"""Token revocations in memory: the JWT callers an admin cut off, for the request path.

The set is small (one record per revoked tenant user), so every instance keeps all of it and the
request path makes no store query: with no revocation the check costs a truthiness test, with
some a dict lookup. It is read at start, read again on this instance at once when an admin
changes it here, and on every other instance when the change feed's ``token_revocations``
message arrives (or the feed reconnected: it may have missed one), typically within
milliseconds. The feed is at most once, so every instance also reads it every
``database.cache_seconds`` (the gateway passes it; :data:`RELOAD_SECONDS` when not given), as
the other stored tables are read again: the bound on staleness when a message is lost. The
periodic read also deletes the records whose ``expires_at`` has passed, so the table does not
grow forever (the request path ignores an expired record meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from switchboard.access.roles import RANK
from switchboard.context import Principal
from switchboard.stores.protocols import ChangeFeed, TokenRevocation, TokenRevocationStore
from switchboard.stores.reloader import Reloader

log = logging.getLogger("switchboard.access")

TOPIC = "token_revocations"
RELOAD_SECONDS = 10.0
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Revoked:
    """What the request path needs of one record, in epoch seconds."""

    not_before: float
    block: bool
    expires: float  # inf: never
    rank: int  # the rank of the role that revoked: tokens of a higher role are not affected


def revoked_of(record: TokenRevocation) -> Revoked:
    expires = float("inf") if record.expires_at is None else record.expires_at.timestamp()
    # Whole seconds, as iat counts them (a record stored with a fraction: its second is refused).
    not_before = math.ceil(record.not_before.timestamp())
    return Revoked(not_before, record.block, expires, RANK.get(record.created_by_role, 0))


def subject(principal: Principal) -> tuple[str, str]:
    """The (tenant, user) a JWT caller is revoked by: its mapped user id (its principal id when
    the issuer maps no user claim)."""
    return principal.tenant_id or DEFAULT_TENANT, principal.user_id or principal.id


class TokenRevocations:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # Read by the request path: replaced whole on each reload, never changed in place.
        self.by_user: dict[tuple[str, str], Revoked] = {}
        self._store: TokenRevocationStore | None = None
        self._reloader = Reloader(TOPIC, self.reload, log, "reading the token revocations",
                                  "the current ones stay", every=self._purge_and_reload)
        self._lock = asyncio.Lock()
        self.reloads = 0  # reads of the store, for tests and metrics

    def refusal(self, principal: Principal, iat: float | None) -> str | None:
        """Why the token of ``principal`` issued at ``iat`` is refused (None: it is not). Called
        only when :attr:`by_user` is not empty."""
        found = self.by_user.get(subject(principal))
        if found is None or found.expires <= self._clock() or RANK.get(principal.role, 0) > found.rank:
            return None
        if found.block:
            return "an admin has blocked this user's tokens"
        if iat is None or iat < found.not_before:
            return "this token was revoked by an admin; sign in again for a new one"
        return None

    # -- life ----------------------------------------------------------------------------

    async def start(self, store: TokenRevocationStore, feed: ChangeFeed,
                    reload_seconds: float = RELOAD_SECONDS) -> None:
        self._store = store
        await self._reloader.start(feed, reload_seconds)

    async def close(self) -> None:
        await self._reloader.close()

    async def changed(self) -> None:
        """A revocation changed here: read them now (so this instance applies it before the
        admin's answer), and tell every other instance."""
        await self._reloader.changed()

    async def _purge_and_reload(self) -> None:
        # The periodic pass also deletes what expired, so the table does not grow forever.
        assert self._store is not None
        await self._store.purge_expired(datetime.now(UTC))
        await self.reload()

    async def reload(self) -> None:
        """Read every revocation that applies and swap in the new set."""
        if self._store is None:
            return
        async with self._lock:
            records = await self._store.active(datetime.now(UTC))
            self.by_user = {(r.tenant_id, r.user_id): revoked_of(r) for r in records}
            self.reloads += 1
