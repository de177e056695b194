"""The request log's policy, its body writer and its maintenance (docs/observability.md).

- ``Policies``: which requests have their bodies kept (``request_log.bodies``), decided once per
  (tenant, team, key, model) and remembered.
- ``BodyWriter``: a bounded in-memory queue of bodies, already redacted, written in batches by a
  background task (``RequestLogStore.append``) and flushed at shutdown. Under pressure (queue
  full, database failing) bodies are dropped, counted and logged at most once a minute: a body is
  a diagnostic, never worth slowing or failing a request for. A batch the database refuses for
  its data (stores/refused.py) is not retried as a whole: its other bodies are stored, the ones
  refused are dropped, counted and logged once per reason, and the queue moves on. The usage
  record itself does not go through here: it is the usage ledger's, spooled to disk and never
  dropped (spend/ledger.py).
- ``Maintenance``: day partitions made ahead of time (at start and every
  ``retention.interval_seconds``), then retention (``RequestLogStore.prepare`` / ``retain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import NamedTuple

from switchboard.background import LAST_WRITE_SECONDS, WRITE_SECONDS, finish_within, stop_task
from switchboard.config.schema import BodyPolicy, RetentionConfig
from switchboard.stores.protocols import RequestBody, RequestLogStore
from switchboard.stores.refused import isolate, kind

log = logging.getLogger("switchboard.request_log")

# Distinct (tenant, team, key, model) decisions remembered; beyond this the memo starts afresh.
_MEMO_NAME_MAX = 256  # longer model names are decided each time, never kept
_MEMO_MAX = 10_000
# Drops are logged at most this often (seconds).
DROP_LOG_INTERVAL = 60.0
# Reasons for refused bodies logged (each once); beyond this many, no new reason is logged.
_KINDS_MAX = 64
# Partitions kept ready after today's (the migration makes the same).
DAYS_AHEAD = 2
# Why bodies were dropped (``BodyWriter.drops``; the metrics' ``reason`` label): the queue was
# full, the database failed (an outage: no room left to keep them, or at shutdown), or the
# database refused them for what they hold.
DROP_REASONS = ("queue_full", "database_failed", "refused")


class Keep(NamedTuple):
    """What a policy keeps of a request."""

    request: bool
    response: bool
    headers: bool


def _matches(policy: BodyPolicy, tenant: str, team: str | None, key: str | None, model: str) -> bool:
    return ((policy.tenant is None or policy.tenant == tenant)
            and (policy.team is None or policy.team == team)
            and (policy.key is None or policy.key == key)
            and (policy.model is None or policy.model == model or fnmatchcase(model, policy.model)))


class Policies:
    """Every matching policy adds what it keeps (a request matched by one keeping the request and
    one keeping the response has both kept)."""

    def __init__(self, policies: Sequence[BodyPolicy]) -> None:
        self._policies = tuple(policies)
        self._memo: dict[tuple[str, str | None, str | None, str], Keep | None] = {}

    def __bool__(self) -> bool:
        return bool(self._policies)

    def decide(self, tenant: str, team: str | None, key: str | None, model: str) -> Keep | None:
        """What to keep of this caller's request for ``model``; None: nothing (the usage record)."""
        memo_key = (tenant, team, key, model)
        try:
            return self._memo[memo_key]
        except KeyError:
            pass
        request = response = headers = False
        for policy in self._policies:
            if _matches(policy, tenant, team, key, model):
                request |= policy.request
                response |= policy.response
                headers |= policy.headers
        keep = Keep(request, response, headers) if request or response or headers else None
        if len(model) > _MEMO_NAME_MAX:  # a caller's name no route knows (a "*" rule took it): not kept
            return keep
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[memo_key] = keep
        return keep


class BodyWriter:
    def __init__(self, store: RequestLogStore, *, queue_max: int = 10_000, flush_seconds: float = 1.0,
                 batch: int = 500) -> None:
        self._store = store
        self._max = queue_max
        self._flush_seconds = flush_seconds
        self._batch = batch
        self._queue: deque[RequestBody] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # bodies never stored, since start
        self.refused = 0  # of which the database refused for their data
        self.drops = dict.fromkeys(DROP_REASONS, 0)  # the same by reason, read by the metrics
        self._refused_kinds: set[str] = set()  # the reasons already logged
        self._unreported = 0
        self._reported_at = float("-inf")

    def put(self, body: RequestBody) -> None:
        """Queue a body (redacted already); dropped and counted when the queue is full."""
        if len(self._queue) >= self._max:
            self._drop(1, "queue_full", "the write queue is full")
            return
        self._queue.append(body)
        if len(self._queue) >= self._batch:
            self._wake.set()

    def _drop(self, count: int, reason: str, why: str) -> None:
        self.dropped += count
        self.drops[reason] += count
        self._unreported += count
        now = time.monotonic()
        if now - self._reported_at >= DROP_LOG_INTERVAL:
            log.warning("request log: %d request/response bodies dropped (%s; %d since start); "
                        "their usage records are kept", self._unreported, why, self.dropped)
            self._unreported = 0
            self._reported_at = now

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> bool:
        """Write what is queued, a batch at a time; False when the store failed (what it held
        goes back to the queue, room permitting, for the next round)."""
        while self._queue:
            count = min(self._batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                async with asyncio.timeout(WRITE_SECONDS):  # a database that never answers: failed
                    refused = await isolate(self._store.append, batch)
            except asyncio.CancelledError:  # back in the queue: close() counts what is left
                self._queue.extendleft(reversed(batch))
                raise
            except Exception as exc:
                room = self._max - len(self._queue)
                self._queue.extendleft(reversed(batch[:room]))
                if count > room:
                    self._drop(count - room, "database_failed", f"the database failed: {type(exc).__name__}")
                if time.monotonic() - self._reported_at >= DROP_LOG_INTERVAL:
                    log.warning("request log: could not store %d bodies (%s); retrying", count,
                                type(exc).__name__)
                    self._reported_at = time.monotonic()
                return False
            if refused:
                self._refuse(refused)
        return True

    def _refuse(self, refused: list[tuple[RequestBody, BaseException]]) -> None:
        """Bodies the database will never take (after the rest of their batch was stored):
        dropped and counted; each reason is logged once, with the first request it hit."""
        self.dropped += len(refused)
        self.refused += len(refused)
        self.drops["refused"] += len(refused)
        for body, exc in refused:
            why = kind(exc)
            if why in self._refused_kinds or len(self._refused_kinds) >= _KINDS_MAX:
                continue
            self._refused_kinds.add(why)
            log.warning("request log: the database refused the bodies of request %s (%s); dropped "
                        "(its usage record is kept). Bodies refused for this reason are dropped and "
                        "counted without another line", body.request_id, why)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="request-log-writer")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        stopped = await stop_task(self._task, within=LAST_WRITE_SECONDS)
        self._task = None
        stored = False
        if stopped:  # else still in a write the database has not answered: no second one
            with contextlib.suppress(TimeoutError):  # a database that never answers
                stored = await finish_within(LAST_WRITE_SECONDS, self.flush())
        if not stored and self._queue:
            self._drop(len(self._queue), "database_failed", "the database failed at shutdown")
            self._queue.clear()


class Maintenance:
    """Partitions ahead and retention, at start and every ``interval_seconds``, on every instance
    (the store serializes them across instances)."""

    def __init__(self, store: RequestLogStore, retention: RetentionConfig) -> None:
        self._store = store
        self._retention = retention
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    async def run_once(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        r = self._retention
        try:
            await self._store.prepare(now, DAYS_AHEAD)
            await self._store.retain(now, days=r.days, records_days=r.records_days, max_bytes=r.max_bytes)
        except Exception as exc:  # the next round tries again; rows go to the DEFAULT partition meanwhile
            log.warning("request log maintenance failed (%s: %s); retrying in %.0fs",
                        type(exc).__name__, exc, r.interval_seconds)
        self.runs += 1

    async def start(self) -> None:
        """Partitions for today and the next days before the first request; then the loop."""
        try:
            await self._store.prepare(datetime.now(UTC), DAYS_AHEAD)
        except Exception as exc:
            log.warning("request log: could not prepare partitions (%s: %s)", type(exc).__name__, exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="request-log-maintenance")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._retention.interval_seconds)
            await self.run_once()

    async def close(self) -> None:
        await stop_task(self._task, within=LAST_WRITE_SECONDS)  # a retention delete under way
        self._task = None
