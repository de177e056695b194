"""What a tool call relays between its client and its upstream server (docs/mcp.md, "What is
supported"): progress notifications to the client, the client's cancellation to the server.

- Progress: a ``tools/call`` whose ``params._meta.progressToken`` is set, from a client that
  accepts ``text/event-stream``, is answered as an SSE stream: each ``notifications/progress``
  the upstream sends for that token is relayed as it comes, then the reply (http/mcp/api.py). The
  edge puts a :class:`Relay` in :data:`RELAY` before running the chain; the terminal passes its
  ``notify`` to the upstream request.
- Cancellation: a call under way is registered in :data:`CALLS` under (caller, client request
  id); the client's ``notifications/cancelled`` for that id (a separate POST, on the same
  instance) cancels it, and the upstream request sends ``notifications/cancelled`` to the server.
  A client that closes the connection cancels the call the same way.
- Server requests (elicitation, sampling, roots): the Relay's ``ask`` passes them to the client
  on the same stream when its session allows (mcp/passthrough.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from switchboard.context import Principal
from switchboard.errors import GatewayError

# A message from the upstream server for the client (a notification), relayed as it comes.
Notify = Callable[[dict[str, Any]], Awaitable[None]]
Ask = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
MAX_QUEUED = 1000  # relayed messages waiting to be written, at most (later ones are dropped)


class Relay:
    """The messages to write to the client before the reply (progress notifications)."""

    def __init__(self, token: Any) -> None:
        self.token = token
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED)
        # A server's request passed to the client (mcp/passthrough.py): its answer, or None when
        # it is not passed through; None: nothing is (no SSE stream to the client).
        self.ask: Ask | None = None
        # What the client's session declared (elicitation, sampling, roots), as the request's
        # own session lookup read it (http/mcp/server.py): nothing without a session.
        self.declared: frozenset[str] = frozenset()

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message of the gateway's own for the client (a server's request); False if full."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    async def notify(self, message: dict[str, Any]) -> None:
        if message.get("method") != "notifications/progress":
            return
        params = message.get("params")
        if not isinstance(params, dict) or params.get("progressToken") != self.token:
            return
        with contextlib.suppress(asyncio.QueueFull):  # a server flooding progress: the rest dropped
            self.queue.put_nowait({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})


RELAY: ContextVar[Relay | None] = ContextVar("mcp_relay", default=None)


class Cancelled(GatewayError):
    """The client cancelled the call (``notifications/cancelled``)."""

    status = 499
    type = "cancelled"
    code = "mcp_cancelled"


def owner(principal: Principal | None) -> str:
    if principal is None:
        return ""
    return principal.key_id or principal.id


class Calls:
    """Tool calls under way on this instance, by (caller, client request id)."""

    MAX = 100_000

    def __init__(self) -> None:
        self._calls: dict[tuple[str, Any], asyncio.Task[Any]] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()
        # Calls under way under an id already taken by another of the caller's calls (two clients
        # of one key: ids start alike in every session), by that id: how many.
        self._shared: dict[tuple[str, Any], int] = {}

    @contextlib.contextmanager
    def running(self, principal: Principal | None, rid: Any) -> Iterator[None]:
        task = asyncio.current_task()
        key = (owner(principal), rid)
        if key in self._calls and len(self._shared) < self.MAX:
            # Which of the two a cancellation for this id means, nothing tells: it cancels neither.
            self._shared[key] = self._shared.get(key, 0) + 1
            try:
                yield
            finally:
                if (left := self._shared.pop(key) - 1) > 0:
                    self._shared[key] = left
            return
        if task is None or rid is None or key in self._calls or len(self._calls) >= self.MAX:
            yield
            return
        self._calls[key] = task
        try:
            yield
        except asyncio.CancelledError:
            if task in self._cancelled:
                self._cancelled.discard(task)
                task.uncancel()
                raise Cancelled("the call was cancelled by the client") from None
            raise
        finally:
            self._calls.pop(key, None)
            self._cancelled.discard(task)

    def cancel(self, principal: Principal | None, rid: Any) -> bool:
        """Cancel the caller's call ``rid`` if it is under way here."""
        if isinstance(rid, bool) or not isinstance(rid, str | int):
            return False
        key = (owner(principal), rid)
        task = self._calls.get(key)
        if task is None or task.done() or key in self._shared:
            return False
        self._cancelled.add(task)
        task.cancel()
        return True


CALLS = Calls()
