"""Revoking the OAuth tokens the gateway forgets (RFC 7009), in the background.

A user's tokens are deleted when the user unlinks a server (``DELETE /mcp/oauth/{server}``) and,
for every user at once, when an admin change makes them unusable (the server's URL, its
authorization server or client changed, the server removed). Deleted here, they would stay
valid at the authorization server until they expire, a refresh token often for months. Where
the server's ``oauth.revocation_url`` is configured, or else the authorization server's metadata
named a ``revocation_endpoint`` (kept with the tokens when they were issued), the gateway asks it
to revoke the refresh token, then the access token.

Best effort and never on an answer's path: each batch (one user's tokens, or every user's of one
server) is a background task, and the caller answers at once. Bounded: every request as every
OAuth request (``mcp.oauth_timeout_seconds``, the reply's size, no redirect, the server's egress
rules; mcp/oauth.py sends it), :data:`CONCURRENCY` requests at a time per batch, a batch given
up after :data:`GIVE_UP` failures in a row (the authorization server is not answering: its
tokens are not tried one timeout at a time), at most :data:`MAX_BATCHES` batches under way in a
process. A batch with failures logs one warning: how many, and the first reason (never a
token). The revocations under way when the process stops are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from switchboard.background import stop_task
from switchboard.upstream.egress import Egress

log = logging.getLogger("switchboard.mcp")

CONCURRENCY = 4
GIVE_UP = 5
MAX_BATCHES = 100


class RevocationFailed(Exception):
    """One revocation request failed; the reason names no token."""


@dataclass(frozen=True, repr=False)
class Revocation:
    """One user's grant to revoke at ``url``: its tokens with their ``token_type_hint``, the
    refresh token first (revoking it ends the grant's access tokens at most servers), and how
    the client authenticates there (as at the token endpoint)."""

    url: str
    client_id: str
    secret: str | None
    auth_methods: tuple[str, ...]
    egress: Egress | None
    tokens: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:  # never a token or a secret in a log line or a traceback
        return f"Revocation(client_id={self.client_id!r}, tokens={len(self.tokens)})"


# Sends one revocation request: (the grant, a token, its hint); raises RevocationFailed.
Send = Callable[[Revocation, str, str], Awaitable[None]]


class Revoker:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._tasks: set[asyncio.Task[None]] = set()

    def revoke(self, server: str, revocations: Iterable[Revocation]) -> None:
        """Revoke ``revocations`` in the background (read lazily, in the task: opening sealed
        tokens is not the caller's work). Returns at once."""
        if len(self._tasks) >= MAX_BATCHES:
            log.warning("OAuth tokens of the MCP server %r were not revoked at its authorization server: "
                        "%d revocations are under way already", server, len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(self._batch(server, iter(revocations)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _batch(self, server: str, revocations: Iterator[Revocation]) -> None:
        failed, tried, in_a_row = 0, 0, 0
        reason: str | None = None

        async def worker() -> None:
            nonlocal failed, tried, in_a_row, reason
            for revocation in revocations:  # shared by the workers: each grant taken once
                for token, hint in revocation.tokens:
                    if in_a_row >= GIVE_UP:
                        return
                    tried += 1
                    try:
                        await self._send(revocation, token, hint)
                        in_a_row = 0
                    except Exception as exc:  # best effort: counted, never raised
                        failed, in_a_row = failed + 1, in_a_row + 1
                        reason = reason or (str(exc) if isinstance(exc, RevocationFailed)
                                            else type(exc).__name__)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        if failed:
            gave_up = "; the rest were not tried" if in_a_row >= GIVE_UP else ""
            log.warning("revoking OAuth tokens of the MCP server %r at its authorization server: %d of %d "
                        "failed (%s)%s; they stay valid there until they expire", server, failed, tried,
                        reason, gave_up)

    async def wait(self) -> None:
        """Until the batches under way have ended."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        for task in list(self._tasks):
            await stop_task(task)
        self._tasks.clear()
