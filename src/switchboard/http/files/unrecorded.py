"""An object the upstream has created but the gateway could not record (the database refused the
row or could not be reached): nobody could see, cancel, delete or price it, yet a batch would run
and cost money and a file would take storage. It is undone upstream (a batch cancelled, a file
deleted; best effort, logged) and the caller is told so in a 503 it may retry, rather than a bare
error about an object that exists.

The recording and the undoing run as a task of their own that the caller's request only waits
for: a caller that disconnects meanwhile (its request task is cancelled) must not stop them
halfway, which would leave the object upstream with no record. A batch's create call (OpenAI's
and Anthropic's) itself runs in that task too (:meth:`Unrecorded.carried`): a caller that leaves
while the provider is still answering must not leave the batch it creates there unrecorded. (An
upload's request is not cancelled by its caller leaving once the body is read: http/files/edge.py.)
``Unrecorded.close`` waits for the ones still under way at shutdown, for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from switchboard.background import LAST_WRITE_SECONDS
from switchboard.http.errors import StoreUnavailable
from switchboard.http.files.upstream import Upstream
from switchboard.stores import refused

log = logging.getLogger("switchboard.files")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Undo:
    """How an unrecorded object is undone upstream: ``method`` on ``path``; ``done`` (past
    tense, "cancelled") and ``why`` (what it prevents) say so to the caller."""

    method: str
    path: str
    done: str
    why: str


def cancel(path: str) -> Undo:
    """A batch: cancelled, so that it does not run."""
    return Undo("POST", path, "cancelled", "so that it does not run")


def delete(path: str) -> Undo:
    """A file: deleted, so that it does not stay there unseen."""
    return Undo("DELETE", path, "deleted", "so that it does not stay there unseen")


class Unrecorded:
    """The recordings of just-created objects under way (tracked until they end)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    async def record(self, upstream: Upstream, what: str, object_id: str, undo: Undo,
                     record: Callable[[], Awaitable[None]],
                     forget: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``record()`` (which stores ``object_id``, a ``what`` just created on ``upstream``);
        if it fails, undo the object upstream, drop what was recorded of it (``forget``, best
        effort) and raise a 503 saying what became of it. Carried on to the end even when the
        caller is cancelled (its client left)."""
        await self.carried(recorded_or_undone(upstream, what, object_id, undo, record, forget))

    async def carried(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``'s result: it runs as a task of its own, carried on to the end even when the
        caller is cancelled (its client left), and waited for at shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(_finished(self._running))
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Let the tasks under way end (at most ``LAST_WRITE_SECONDS``), then stop the rest."""
        if not self._running:
            return
        _, late = await asyncio.wait(list(self._running), timeout=LAST_WRITE_SECONDS)
        for task in late:
            log.error("a creation or recording of an upstream object did not end by shutdown; the object "
                      "may be left upstream unrecorded")
            task.cancel()


def _finished(running: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        running.discard(task)
        # Heard even when the caller that waited for it was cancelled (its 503 is logged already).
        if not task.cancelled():
            task.exception()

    return done


async def recorded_or_undone(upstream: Upstream, what: str, object_id: str, undo: Undo,
                             record: Callable[[], Awaitable[None]],
                             forget: Callable[[], Awaitable[None]] | None = None) -> None:
    """``record()``, or the object undone upstream and a 503 saying so (see ``Unrecorded.record``);
    for a task already carried on its own (``Unrecorded.carried``)."""
    try:
        await record()
    except Exception as exc:
        where = f"provider '{upstream.provider}'"
        # The driver's first line only: the rest quotes the statement's parameters (the object).
        log.warning("%s %s: created at %s but could not be recorded (%s); undoing it there (%s %s)",
                    what, object_id, where, refused.kind(exc), undo.method, undo.path)
        try:
            await upstream.call(undo.method, undo.path)
        except Exception as failed:
            log.error("%s %s: could not be %s at %s (%s: %s): it may stay there unrecorded", what, object_id,
                      undo.done, where, type(failed).__name__, failed)
            outcome = (f"{where} created it ({object_id}) and undoing it there failed, so it may still "
                       "be there; it is not recorded here")
        else:
            outcome = f"it was {undo.done} at {where} ({object_id}) {undo.why}"
        if forget is not None:
            with contextlib.suppress(Exception):  # nothing is read of it without its own record
                await forget()
        raise StoreUnavailable(f"the {what} could not be recorded (the database is unavailable); {outcome}. "
                               "Try again shortly") from exc
