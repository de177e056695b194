"""The request path's Lua scripts, sent in one pipeline per event-loop pass.

Each request runs a rate-limit script and a budget script before the upstream call and one of
each after it. Sent one by one, each pays redis-py's whole per-call path (a pooled connection
taken and given back, a timeout, a write, a read) and a network round trip; under load that was
more than half of the cluster path's CPU (docs/benchmarks.md). Here the scripts called during
one pass of the event loop, by every request in flight, leave together in one non-transactional
pipeline: the same commands in the same order, each script still atomic, one round trip for
all of them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_Call = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]
_BATCHES: weakref.WeakKeyDictionary[Redis, ScriptBatch] = weakref.WeakKeyDictionary()


class BatchedScript:
    """A registered script whose calls join the current pass's pipeline."""

    __slots__ = ("_batch", "_script")

    def __init__(self, batch: ScriptBatch, script: AsyncScript) -> None:
        self._batch = batch
        self._script = script

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        return self._batch.add(self._script, keys, args)


class ScriptBatch:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queue: list[_Call] = []
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    def script(self, text: str) -> BatchedScript:
        return BatchedScript(self, self._client.register_script(text))

    def add(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:  # the first call of this pass: the task starts at the next pass
            task = loop.create_task(self._run())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._queue.append((script, keys, args, future))
        return future

    async def _run(self) -> None:
        calls, self._queue = self._queue, []
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args, _ in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every caller hears it
            for *_, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # shutting down
            for *_, future in calls:
                future.cancel()
            raise
        for (script, keys, args, future), result in zip(calls, results, strict=True):
            if isinstance(result, NoScriptError):  # a restarted or flushed Redis: load, run alone
                try:
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def batch_for(client: Redis) -> ScriptBatch:
    """The one batch of this client (shared by the rate limiter and the budget counters)."""
    batch = _BATCHES.get(client)
    if batch is None:
        batch = _BATCHES[client] = ScriptBatch(client)
    return batch
