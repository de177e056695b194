"""When each key was last used, written in batches, never a database write per request.

Authentication notes the key id (a dict assignment); a background task of the gateway writes
what was noted every ``interval`` seconds in one statement, and once more at shutdown. So
``last_used_at`` lags by at most the interval (plus the write), and a crash loses at most that
much of this bookkeeping (never a request, never accounting). A batch the database refuses for
what it holds (stores/refused.py) is not kept for the next round, which would fail it again
forever: the keys it accepts are written, the ones it refuses dropped and logged.

``pending`` counts the keys noted and not yet written, the batch being written included: it is
0 only once the database has their times (``switchboard_key_last_used_pending``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from switchboard.background import LAST_WRITE_SECONDS, WRITE_SECONDS, finish_within, stop_task
from switchboard.stores.protocols import KeyStore
from switchboard.stores.refused import isolate, kind
from switchboard.stores.unavailable import OutageLog

log = logging.getLogger("switchboard.access")


class LastUsed:
    def __init__(self, store: KeyStore, interval: float = 5.0) -> None:
        self._store = store
        self._interval = interval
        # Unix times: a float costs a quarter of an aware datetime on every keyed request; the
        # batch turns them into datetimes once, at the write.
        self._noted: dict[str, float] = {}
        # The batch being written: still pending until the database has it.
        self._writing: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.failed_writes = 0  # writes that failed (the database unreachable): kept, retried
        self.refused = 0  # keys whose time the database refused: not recorded
        # A database restart: one warning, not a traceback every interval.
        self._outage = OutageLog(log, "recording the keys' last-used times")

    def note(self, key_id: str) -> None:
        self._noted[key_id] = time.time()

    @property
    def pending(self) -> int:
        """Keys whose last use is noted and not yet written (noted again meanwhile: once)."""
        if not self._writing:
            return len(self._noted)
        return len(self._noted) + sum(1 for key_id in self._writing if key_id not in self._noted)

    async def flush(self) -> None:
        batch, self._noted = self._noted, {}
        if not batch:
            return
        self._writing = batch
        try:
            async with asyncio.timeout(WRITE_SECONDS):  # a database that never answers: failed
                refused = await isolate(self._touch, list(batch.items()))
        except asyncio.CancelledError:  # stopped mid-write (shutdown): close() writes them again
            for key_id, when in batch.items():
                self._noted.setdefault(key_id, when)
            raise
        except Exception as exc:
            self.failed_writes += 1
            self._outage.failed(exc, f"; {len(batch)} key(s) kept for the next try")
            for key_id, when in batch.items():  # keep them for the next round, newest wins
                self._noted.setdefault(key_id, when)
            return
        finally:
            self._writing = {}
        self._outage.succeeded()
        self.refused += len(refused)
        for (key_id, _), error in refused:
            log.warning("the last-used time of key %r was refused by the database (%s); not recorded",
                        key_id[:64], kind(error))

    async def _touch(self, used: Sequence[tuple[str, float]]) -> None:
        await self._store.touch({key_id: datetime.fromtimestamp(when, UTC) for key_id, when in used})

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-last-used")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def close(self) -> None:
        stopped = await stop_task(self._task, within=LAST_WRITE_SECONDS)
        self._task = None
        try:
            if not stopped:  # still in a write the database has not answered: no second one
                raise TimeoutError
            await finish_within(LAST_WRITE_SECONDS, self.flush())
        except TimeoutError:  # the database never answered: lost, as in a crash (see above)
            log.warning("recording the keys' last-used times at shutdown: no answer from the database "
                        "within %g s; %d key(s) not recorded", LAST_WRITE_SECONDS, len(self._noted))
