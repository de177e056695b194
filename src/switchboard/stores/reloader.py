"""A whole table kept in process memory, read again from its store when it may have changed.

For a small table every instance holds entirely (the live model table, the token revocations),
where :mod:`feedcache` holds records by key. It is read at start; again at once on this
instance when an admin changes it here (:meth:`Reloader.changed`, which also publishes on the
change feed); on every other instance when the feed's message arrives (or the feed reconnected:
it may have missed one); and every ``seconds``, since the feed is at most once: the bound on
staleness when a message is lost. The owner keeps the table and its ``reload``; this keeps the
subscription, the tasks and how failures are logged: one warning per outage (stores/unavailable.py),
whichever of the periodic pass or a message's reload meets it, not a traceback each time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from switchboard.background import stop_task
from switchboard.stores.protocols import ChangeFeed, Subscription
from switchboard.stores.unavailable import OutageLog


class Reloader:
    """Runs ``reload`` on a change here, on a message of ``topic``, and every period (``every``
    instead, when the periodic pass does more than read, e.g. purge what expired).

    ``what`` names the work in log lines (``"reloading the model table"``) and ``keeps`` says
    what is served while it fails (``"the current one stays"``)."""

    def __init__(self, topic: str, reload: Callable[[], Awaitable[None]], logger: logging.Logger,
                 what: str, keeps: str, every: Callable[[], Awaitable[None]] | None = None) -> None:
        self._topic = topic
        self._reload = reload
        self._every = every or reload
        self._keeps = keeps
        self._feed: ChangeFeed | None = None
        self._subscription: Subscription | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._again = False
        # One per table, shared by the periodic pass and the reloads a message starts: a database
        # restart during a burst of changes logs one warning, and one line when it is back.
        self._outage = OutageLog(logger, what)

    async def start(self, feed: ChangeFeed | None, seconds: float) -> None:
        """Subscribe (no feed: this instance alone writes the store), read once, then every
        ``seconds``."""
        self._feed = feed
        if feed is not None:
            self._subscription = await feed.subscribe(self._topic, self._on_message)
        await self._reload()
        self._periodic = asyncio.get_running_loop().create_task(self._periodically(seconds))

    async def close(self) -> None:
        for task in (self._periodic, self._reloading):
            await stop_task(task)
        self._periodic = self._reloading = None
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    async def changed(self) -> None:
        """The stored table changed here: read it now (so this instance applies the change before
        the admin's answer), and tell every other instance."""
        await self._reload()  # a failure is the admin's answer (503 while the store is down)
        self._outage.succeeded()
        if self._feed is not None:
            await self._feed.publish(self._topic, "changed")

    async def _on_message(self, topic: str, message: str) -> None:
        # Never wait for the database inside the feed's listener: the reload runs on its own,
        # once more if another message came meanwhile.
        if self._reloading is not None and not self._reloading.done():
            self._again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload_until_settled())

    async def _reload_until_settled(self) -> None:
        while True:
            self._again = False
            try:
                await self._reload()
            except Exception as exc:
                self._outage.failed(exc, f"; {self._keeps}")
            else:
                self._outage.succeeded()
            if not self._again:
                return

    async def _periodically(self, seconds: float) -> None:
        # The database restarting: one warning for the outage, not a traceback every period.
        while True:
            await asyncio.sleep(seconds)
            try:
                await self._every()
            except Exception as exc:
                self._outage.failed(exc, f"; {self._keeps}")
            else:
                self._outage.succeeded()
