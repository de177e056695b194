"""Whether keys without a check may still authenticate, for the request path.

A key issued by this version ends in a check (access/keys.py): a presented key whose check fails
was made up, unless keys issued before the check existed are still live, since those are random
to the end. So the request path looks such a key up only while :attr:`UncheckedKeys.live` is not
zero: a count of the stored keys without a check that are neither revoked nor expired.

The count is read at start; again on every message of the key cache's topic (``keys``: every key
created, revoked, changed or rotated, on any instance, including a key created by an instance
not yet upgraded, whose rows are unchecked) and every ``database.cache_seconds`` (the gateway
passes it; :data:`RELOAD_SECONDS` when not given: keys expire, and the feed is at most once).
It only ever needs to rise on a message (an old instance issuing a key, an expired one given a
later expiry); falling is what the rotation of the old keys brings.
One count query through an index of the unchecked keys, never on the request path.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from switchboard.access.cache import TOPIC
from switchboard.stores.protocols import ChangeFeed, KeyStore
from switchboard.stores.reloader import Reloader

log = logging.getLogger("switchboard.access")

RELOAD_SECONDS = 10.0


class UncheckedKeys:
    def __init__(self) -> None:
        # Read by the request path. Until the first count, as if there were some: a key from
        # before is never refused for want of a count.
        self.live = 1
        self._store: KeyStore | None = None
        self._reloader = Reloader(TOPIC, self.reload, log, "counting the API keys without a check",
                                  "the last count stays")
        self.reloads = 0  # counts read, for tests

    async def start(self, store: KeyStore, feed: ChangeFeed, reload_seconds: float = RELOAD_SECONDS) -> None:
        self._store = store
        await self._reloader.start(feed, reload_seconds)
        if self.live:
            log.info("%d API key(s) issued before keys had a check are live: a made-up key costs a "
                     "database query until they are rotated or revoked (docs/access.md)", self.live)

    async def close(self) -> None:
        await self._reloader.close()

    async def reload(self) -> None:
        if self._store is None:
            return
        self.live = await self._store.count_unchecked(datetime.now(UTC))
        self.reloads += 1
