"""Whether the stores answer, for ``/health/ready`` (docs/api.md, "Health").

Each store is asked one trivial question (``SELECT 1``, a Redis ``PING``) bounded by ``timeout``
seconds: a store that accepts connections and never answers is "down" after that long, not after
its driver's own timeouts. The question runs as a task of its own, left to end in the
background past the bound: a driver may take seconds to give up a connection it was cancelled
on (SQLAlchemy's pool closing an asyncpg connection to a frozen PostgreSQL), which the probe must
not wait for; while it has not ended, the store is "down" without a new question (one
outstanding per store, so a store that never answers does not pile them up). The embedded
SQLite file is no network service: its question waiting past the bound means a busy host or a
busy connection pool, not an outage, so it is not cut; the store keeps its last answer until the
question ends (SQLite's busy timeout and the pool's own bound end it), its error then being
"down", or until it has run ``patience`` seconds (a hung disk). The answers are
kept for ``max_age`` seconds and one check runs at a time however many probes ask, so a load
balancer polling every instance often costs each store at most one round trip a second.
Prometheus reads the same answers (the gauge ``switchboard_store_up``): a scrape whose answers are
older than ``max_age`` awaits ``results`` first (observability/metrics.py), so it reports the
stores as they are, within the same bound. Nothing on the model path reads this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

from switchboard.background import stop_task

log = logging.getLogger("switchboard.stores")

OK, DOWN = "ok", "down"
TIMEOUT = 1.0
MAX_AGE = 1.0
# How long a local store's question may run before it is down all the same: SQLAlchemy's wait
# for a pooled connection (30 s), past SQLite's busy timeout (10 s, stores/sql/engine.py).
PATIENCE = 30.0

Probe = Callable[[], Awaitable[object]]


class StoreChecks:
    def __init__(self, probes: Mapping[str, Probe], *, local: Collection[str] = (), timeout: float = TIMEOUT,
                 max_age: float = MAX_AGE, patience: float = PATIENCE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probes = dict(probes)
        self._local = frozenset(local)  # stores in this process's files: slow is not down
        self._timeout = timeout
        self._patience = patience
        self._max_age = max_age
        self._clock = clock
        self._last: dict[str, str] = {}
        self._checked_at = float("-inf")
        self._pending: asyncio.Task[dict[str, str]] | None = None
        self._asking: dict[str, asyncio.Task[object]] = {}  # a question not ended yet, per store
        self._asked_at: dict[str, float] = {}

    async def results(self) -> dict[str, str]:
        """``{store: "ok" | "down"}`` in the order the stores were given, at most ``max_age`` old."""
        if self._clock() - self._checked_at < self._max_age:
            return self._last
        if self._pending is None:
            # The check is a task of its own, so a probe that disconnects does not cancel it for
            # the others waiting on it.
            self._pending = asyncio.get_running_loop().create_task(self._check())
        return await asyncio.shield(self._pending)

    def latest(self) -> dict[str, str]:
        """The last answers, for a scrape that must not wait on a store: when they are older than
        ``max_age`` a check is started in the background (shared with ``results``), so the next
        scrape reads its answers. Empty until the first check ended."""
        if self._clock() - self._checked_at >= self._max_age and self._pending is None and self._probes:
            self._pending = asyncio.get_running_loop().create_task(self._check())
            self._pending.add_done_callback(_retrieve)
        return self._last

    async def _check(self) -> dict[str, str]:
        try:
            answers = await asyncio.gather(*(self._ask(name, probe) for name, probe in self._probes.items()))
            results = dict(zip(self._probes, answers, strict=True))
            for name, state in results.items():
                if self._last.get(name, OK) != state:  # log changes only, not every probe
                    log.warning("store check: %s is %s", name, "down" if state == DOWN else "answering again")
            self._last, self._checked_at = results, self._clock()
            return results
        finally:
            self._pending = None

    async def _ask(self, name: str, probe: Probe) -> str:
        local = name in self._local
        task = self._asking.get(name)
        if task is None:
            task = self._asking[name] = asyncio.ensure_future(probe())
            self._asked_at[name] = self._clock()
            task.add_done_callback(lambda done: self._ended(name, done))
        elif not local:  # the last question is still being given up: down, no other one
            return DOWN
        # A local store's question still running from an earlier check is waited on again.
        await asyncio.wait((task,), timeout=self._timeout)
        if not task.done():
            if local and self._clock() - self._asked_at[name] < self._patience:
                return self._last.get(name, OK)  # slow, not down: its answer decides when it comes
            task.cancel()  # ends in the background, however long the driver takes
            return DOWN
        if local:  # its answer is read: the next check asks anew
            del self._asking[name]
        # Unreachable, refused, an error answer: all mean down.
        return DOWN if task.cancelled() or task.exception() is not None else OK

    def _ended(self, name: str, task: asyncio.Task[object]) -> None:
        # A local store's question stays until a check read its answer (``_ask``).
        if name not in self._local and self._asking.get(name) is task:
            del self._asking[name]
        if not task.cancelled():
            task.exception()  # retrieved: an error of a question is its store being down

    async def close(self) -> None:
        await stop_task(self._pending)
        self._pending = None
        for task in list(self._asking.values()):
            task.cancel()


def _retrieve(task: asyncio.Task[dict[str, str]]) -> None:
    # A check started by ``latest`` has no one awaiting it: its error (none is expected: each
    # store's is caught) is logged rather than reported as never retrieved.
    if not task.cancelled() and task.exception() is not None:
        log.error("store check failed", exc_info=task.exception())
