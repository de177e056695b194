"""The request path's Lua scripts, sent in one pipeline per event-loop pass.

Each request runs a rate-limit script and a budget script before the upstream call (one script
for both when it has both: stores/redis/admission.py) and one of each after it. Sent one by
one, each pays redis-py's whole per-call path (a pooled connection taken and given back, a
timeout, a write, a read) and a network round trip; under load that was more than half of
the cluster path's CPU (docs/benchmarks.md). Here the scripts called during one pass of the
event loop, by every request in flight, leave together in one non-transactional
pipeline: the same commands in the same order, each script still atomic, one round trip for
all of them. The batch goes out on its own pipelined connection (stores/redis/wire.py) where
the URL allows, else (TLS) through redis-py's pipeline. Either way a Redis that stopped
answering fails the batch at once (stores/redis/silence.py) after the first timeout.

On a connected wire a batch costs no task and no future of its own: a loop callback writes it
and the wire, as it reads the replies, hands each caller its own (a task per batch was some
7,300 instructions, three a request at concurrency 1; docs/benchmarks.md). A task remains for
what must wait: connecting, redis-py's pipeline, a silent Redis's immediate failure, and the
calls answered NOSCRIPT, run again alone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as ReplyTimeout

from switchboard.stores.redis.silence import silence_for
from switchboard.stores.redis.wire import Wire, bulk, bulk_into, command, values

# A script call: the script, its count of keys, its count of keys and arguments together, those
# as RESP bulk strings (``wire.bulk``'s pieces: the stores keep what repeats from request to
# request encoded, a bucket's key, a budget's limit), the caller's future.
_Call = tuple["BatchedScript", int, int, list[bytes], "asyncio.Future[Any]"]
_BATCHES: weakref.WeakKeyDictionary[Redis, ScriptBatch] = weakref.WeakKeyDictionary()
_LEADS_MAX = 64


class BatchedScript:
    """A registered script whose calls join the current pass's pipeline."""

    __slots__ = ("_batch", "_head", "_leads", "script", "skippable")

    def __init__(self, batch: ScriptBatch, script: AsyncScript, skippable: bool = False) -> None:
        self._batch = batch
        self.script = script
        # A call made only for its caller (a reservation, a take): once the caller is gone, a
        # NOSCRIPT answer (it never ran) means it need not run at all, and must not: the
        # caller's release may already have run (on another connection, in another batch's
        # re-run). Calls that settle, correct or release run whatever became of their caller.
        self.skippable = skippable
        self._head = bulk(["EVALSHA", script.sha])  # the same two arguments on every call
        # A call's start (array length, EVALSHA, the SHA, the key count) by its counts of keys
        # and arguments: a few shapes per script, built once rather than on every call.
        self._leads: dict[tuple[int, int], bytes] = {}

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        """A call with plain keys and arguments (str, bytes, numbers), encoded here."""
        pieces: list[bytes] = []
        bulk_into(pieces, keys)
        bulk_into(pieces, args)
        return self._batch.add(self, len(keys), len(keys) + len(args), pieces)

    def lead(self, keys: int, count: int) -> bytes:
        """A call's start in RESP (the array length, EVALSHA, the SHA, the count of keys), for
        ``keys`` keys among ``count`` keys and arguments; built once per shape."""
        shape = (keys, count)
        lead = self._leads.get(shape)
        if lead is None:
            if len(self._leads) >= _LEADS_MAX:  # key counts come from configuration: few shapes
                self._leads.clear()
            # EVALSHA and the SHA, the count of keys, then the keys and arguments
            lead = self._leads[shape] = command([keys], head=self._head, head_count=2 + count)
        return lead

    def pack_into(self, out: list[bytes], keys: int, count: int, pieces: list[bytes]) -> None:
        """The call in RESP, its pieces appended to ``out`` (the batch joins them once)."""
        out.append(self._leads.get((keys, count)) or self.lead(keys, count))
        out += pieces


class ScriptBatch:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._wire = Wire.of(client)
        self._silence = silence_for(client)  # the wire's too
        self._queue: list[_Call] = []
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    def script(self, text: str, skippable: bool = False) -> BatchedScript:
        """``skippable``: see ``BatchedScript.skippable``."""
        return BatchedScript(self, self._client.register_script(text), skippable)

    def add(self, script: BatchedScript, keys: int, count: int, pieces: list[bytes]) -> asyncio.Future[Any]:
        """A call of ``script`` joins this pass's batch: ``keys`` keys among ``count`` keys and
        arguments, ``pieces`` those as RESP bulk strings (``wire.bulk``'s, in that order)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:  # the first call of this pass: the batch leaves at the next pass
            loop.call_soon(self._flush)
        self._queue.append((script, keys, count, pieces, future))
        return future

    def _flush(self) -> None:
        """The pass's calls onto the wire, written here when it is connected and Redis is not
        silent: no task and no future, the wire hands the replies to ``_replied``. A task only
        to connect, while silent (it fails them at once), and for redis-py's pipeline (TLS)."""
        calls, self._queue = self._queue, []
        wire = self._wire
        if wire is not None and wire.ready():
            try:
                out: list[bytes] = []
                for script, keys, count, pieces, _ in calls:  # pack_into's work, inline
                    out.append(script._leads.get((keys, count)) or script.lead(keys, count))
                    out += pieces
                wire.post(b"".join(out), len(calls), self._replied, calls)
            except Exception as exc:  # a callback's error would reach no caller: hand it on
                _fail(calls, exc)
            return
        task = asyncio.get_running_loop().create_task(self._run(calls))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _replied(self, calls: list[_Call], results: list[Any] | None, exc: Exception | None) -> None:
        if exc is not None:  # as Wire.call: a reply timeout marks Redis silent, all callers hear it
            if isinstance(exc, ReplyTimeout):
                self._silence.went_silent()
            _fail(calls, exc)
            return
        assert results is not None
        self._settle(calls, results)

    async def _run(self, calls: list[_Call]) -> None:
        try:
            results = await self._send(calls)
        except Exception as exc:  # the connection failed: every caller hears it
            # Without its traceback, which holds the frames that hold the calls, whose futures
            # would hold it: a reference cycle per failed batch, with every caller's frames.
            _fail(calls, exc.with_traceback(None))
            return
        except BaseException:  # shutting down
            for *_, future in calls:
                future.cancel()
            raise
        self._settle(calls, results)

    def _settle(self, calls: list[_Call], results: list[Any]) -> None:
        """Each caller its reply; calls Redis answered NOSCRIPT run again, in a task."""
        # Plain zip: a reply per call by construction (the wire waits for that many, redis-py's
        # pipeline returns one per command), and strict=True is a keyword zip parses every time.
        for (_, _, _, _, future), result in zip(calls, results):  # noqa: B905
            if isinstance(result, Exception):
                if _no_script(result):
                    task = asyncio.get_running_loop().create_task(self._again(calls, results))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                    return
                if not future.done():  # else the caller was cancelled meanwhile
                    future.set_exception(result)
            elif not future.done():
                future.set_result(result)

    async def _again(self, calls: list[_Call], results: list[Any]) -> None:
        """The rest of a batch from its first NOSCRIPT on (a restarted or flushed Redis):
        those calls loaded and run alone, in order, the others answered as they came."""
        start = next(i for i, result in enumerate(results) if _no_script(result))
        for (script, keys, _, pieces, future), result in zip(calls[start:], results[start:]):  # noqa: B905
            if _no_script(result):
                if script.skippable and future.cancelled():
                    continue  # its caller left, and it never ran: nothing to run or release
                sent = values(pieces)
                try:
                    # One after the other: were Redis to go quiet meanwhile, only the first would
                    # wait out the timeout, the others failing at once (stores/redis/silence.py).
                    result = await self._silence.call(
                        partial(script.script, keys=sent[:keys], args=sent[keys:]))
                except Exception as exc:
                    result = exc.with_traceback(None)  # its traceback holds this frame (a cycle)
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _send(self, calls: list[_Call]) -> list[Any]:
        if self._wire is not None:
            out: list[bytes] = []
            for script, keys, count, pieces, _ in calls:
                script.pack_into(out, keys, count, pieces)
            return await self._wire.call(b"".join(out), len(calls))
        return await self._silence.call(lambda: self._pipelined(calls))

    async def _pipelined(self, calls: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, keys, _, pieces, _ in calls:
            pipe.evalsha(script.script.sha, keys, *values(pieces))
        return await pipe.execute(raise_on_error=False)

    async def close(self) -> None:
        if self._wire is not None:
            await self._wire.close()
        await self._silence.close()


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for *_, future in calls:
        if not future.done():
            future.set_exception(exc)


def _no_script(result: object) -> bool:
    # redis-py's pipeline maps the error to NoScriptError; the wire hands back Redis's text.
    return isinstance(result, NoScriptError) or (
        isinstance(result, ResponseError) and str(result).startswith("NOSCRIPT")
    )


def batch_for(client: Redis) -> ScriptBatch:
    """The one batch of this client (shared by the rate limiter and the budget counters)."""
    batch = _BATCHES.get(client)
    if batch is None:
        batch = _BATCHES[client] = ScriptBatch(client)
    return batch
