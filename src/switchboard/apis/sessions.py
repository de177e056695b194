"""Sessions for multi-turn prompt APIs: server-side history behind ``x-switchboard-session``.

A published API that enables sessions (``ApiRecord.sessions``, e.g. ``{"max_turns": 50,
"ttl_seconds": 86400}``) keeps, per tenant, per caller (the key's lineage, so a rotated key
keeps its sessions; else the principal's id) and per session id, the turns of the
conversation: each turn the user message(s) the prompt rendered and the model's reply. Another
caller sending the same session id gets a new, empty session of its own: a session id is never
a way into someone else's history.

On a call, the stored turns go between the prompt's system messages and the new user turn,
trimmed by the context-window policy (:func:`fit`): the system messages and the most recent
turns that fit the model's context window (the smallest of its group's deployments, from the
catalog; for a routing rule's, split's or semantic router's name, of every group it may
reach), counted with the gateway's token counter (``switchboard.tokens``), after reserving room
for the new turn and the reply. The reply is appended after the response was sent.

Retention is bounded: a session expires ``ttl_seconds`` after its last turn (expired ones are
invisible and purged in batches, like stored Responses API responses), and keeps at most
``max_turns`` turns and ``max_bytes`` of JSON, the oldest dropped first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from switchboard import tokens
from switchboard.background import stop_task
from switchboard.context import Principal
from switchboard.errors import InvalidRequest
from switchboard.stores.protocols import ApiSession, SessionStore

log = logging.getLogger("switchboard.apis.sessions")

HEADER = "x-switchboard-session"
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
DEFAULT_TENANT = "default"

Message = Mapping[str, Any]
Turn = Sequence[Message]
Count = Callable[[Sequence[Message]], int]

# Bounds of an API's ``sessions`` settings, and their defaults.
MAX_TURNS = 1000
DEFAULT_TURNS = 50
MIN_TTL, MAX_TTL, DEFAULT_TTL = 1, 90 * 86_400, 86_400
MIN_BYTES, MAX_BYTES, DEFAULT_BYTES = 1024, 16 * 1024 * 1024, 1024 * 1024
# How often expired sessions are deleted, on every instance; and how many saves a turn tries
# when other requests of the same session save at the same time.
PURGE_SECONDS = 600.0
SAVE_TRIES = 5


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """An API's session settings (``ApiRecord.sessions``), validated."""

    max_turns: int = DEFAULT_TURNS
    ttl_seconds: int = DEFAULT_TTL
    max_bytes: int = DEFAULT_BYTES

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> SessionPolicy | None:
        """The policy of ``value`` (None: sessions are off); ValueError naming the bad field."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError("sessions: expected an object")
        unknown = sorted(set(value) - {"max_turns", "ttl_seconds", "max_bytes"})
        if unknown:
            raise ValueError(f"sessions.{unknown[0]}: unknown field")
        fields = {"max_turns": (1, MAX_TURNS), "ttl_seconds": (MIN_TTL, MAX_TTL),
                  "max_bytes": (MIN_BYTES, MAX_BYTES)}
        out: dict[str, int] = {}
        for name, (low, high) in fields.items():
            if name not in value:
                continue
            given = value[name]
            if isinstance(given, bool) or not isinstance(given, int) or not low <= given <= high:
                raise ValueError(f"sessions.{name}: expected an integer from {low} to {high}")
            out[name] = given
        return cls(**out)

    def public(self) -> dict[str, int]:
        return {"max_turns": self.max_turns, "ttl_seconds": self.ttl_seconds, "max_bytes": self.max_bytes}


def session_id(headers: Mapping[str, str]) -> str | None:
    """The request's session id (``x-switchboard-session``), None without one; 400 when it is
    not 1 to 128 of ``A-Z a-z 0-9 _ . : -``."""
    value = headers.get(HEADER)
    if value is None:
        return None
    if not SESSION_ID.match(value):
        raise InvalidRequest(
            f"{HEADER}: expected 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', ':', '-'",
            param=HEADER, code="invalid_session_id",
        )
    return value


def owner_of(principal: Principal | None) -> tuple[str, str]:
    """(tenant, caller) a session belongs to: the key's lineage (``Principal.owner``), so a
    rotated key continues its sessions; a lineage starts at the first key's id, so sessions
    stored under a key id before still match."""
    if principal is None:
        return DEFAULT_TENANT, ""
    return principal.tenant_id or DEFAULT_TENANT, principal.owner


# -- the context-window policy ----------------------------------------------------------------


def fit(system: Sequence[Message], turns: Sequence[Turn], window_tokens: int | None,
        count: Count) -> list[Turn]:
    """The most recent ``turns`` that fit, whole and in order, in ``window_tokens`` together
    with the ``system`` messages (which are always kept); None: no window known, every turn.
    A turn that does not fit ends the walk back: older turns are dropped even if smaller, so
    the history the model sees has no holes."""
    if window_tokens is None:
        return list(turns)
    budget = window_tokens - (count(system) if system else 0)
    kept: list[Turn] = []
    for turn in reversed(turns):
        needed = count(turn)
        if needed > budget:
            break
        budget -= needed
        kept.append(turn)
    kept.reverse()
    return kept


def counter(model: str) -> Count:
    """Tokens of some messages as the gateway counts them for ``model`` (the upstream id):
    exact for OpenAI encodings, the documented estimate for other providers."""

    def count(messages: Sequence[Message]) -> int:
        return tokens.estimate({"messages": [dict(m) for m in messages]}, "chat", model=model)

    return count


def room(context_window: int | None, new_turn_tokens: int, max_output: int | None) -> int | None:
    """What the stored turns and the system messages may take of ``context_window``: the
    window less the new turn and the reply's reserve (the request's max tokens, else a quarter
    of the window). None: no window known."""
    if context_window is None:
        return None
    reserve = max_output if max_output is not None and max_output > 0 else context_window // 4
    return max(0, context_window - new_turn_tokens - reserve)


def split_system(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(the leading system messages, the rest: the new user turn) of a rendered prompt."""
    at = 0
    while at < len(messages) and messages[at].get("role") in ("system", "developer"):
        at += 1
    return list(messages[:at]), list(messages[at:])


def with_history(messages: Sequence[Message], turns: Sequence[Turn]) -> list[Message]:
    """The prompt's messages with ``turns`` between its system messages and the new turn."""
    system, new = split_system(messages)
    return [*system, *(m for turn in turns for m in turn), *new]


def _bounded(turns: list[list[Message]], policy: SessionPolicy) -> list[list[Message]]:
    """``turns`` without the oldest ones beyond ``max_turns`` and ``max_bytes``."""
    turns = turns[-policy.max_turns:]
    sizes = [len(orjson.dumps(turn)) + 1 for turn in turns]
    total = sum(sizes) + 2
    start = 0
    while start < len(turns) and total > policy.max_bytes:
        total -= sizes[start]
        start += 1
    return turns[start:]


# -- the book ---------------------------------------------------------------------------------


class SessionBook:
    """Loads and appends session turns for the API endpoint, and purges expired sessions."""

    def __init__(self, store: Callable[[], SessionStore | None],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._clock = clock
        self._purge: asyncio.Task[None] | None = None

    def _required(self) -> SessionStore:
        store = self._store()
        if store is None:
            raise RuntimeError("the session store is not open")
        return store

    async def load(self, principal: Principal | None, api: str, session: str) -> list[list[Message]]:
        """The caller's stored turns of ``session`` of ``api``, oldest first; none when it is
        new, expired or another caller's."""
        tenant, owner = owner_of(principal)
        found = await self._required().get(tenant, owner, api, session, self._clock())
        return [] if found is None else [list(turn) for turn in found.turns]

    async def append(self, principal: Principal | None, api: str, session: str, turn: Sequence[Message],
                     policy: SessionPolicy) -> int:
        """Add ``turn`` (the user message(s), then the reply) to the session, creating it, and
        extend its life to ``ttl_seconds`` from now; the number of turns it keeps."""
        store = self._required()
        tenant, owner = owner_of(principal)
        new: list[Message] = [dict(m) for m in turn]
        for _ in range(SAVE_TRIES):
            now = self._clock()
            found = await store.get(tenant, owner, api, session, now)
            stale = None
            if found is None:
                # A missing or expired session starts afresh; an expired row is replaced.
                stale = await store.get(tenant, owner, api, session, datetime.min.replace(tzinfo=UTC))
            turns = _bounded([*([list(t) for t in found.turns] if found else []), new], policy)
            if not turns:
                log.warning("session turn of API %r not stored: larger than its max_bytes", api)
            expires = now + timedelta(seconds=policy.ttl_seconds)
            base = found or stale
            record = ApiSession(tenant_id=tenant, owner=owner, api=api, session_id=session, turns=turns,
                                expires_at=expires, version=(base.version + 1) if base else 1,
                                created_at=found.created_at if found else now, updated_at=now)
            if await store.save(record, base.version if base else None):
                return len(turns)
        log.warning("session turn of API %r not stored: %d concurrent saves won", api, SAVE_TRIES)
        return 0

    async def forget(self, principal: Principal | None, api: str, session: str) -> bool:
        tenant, owner = owner_of(principal)
        return await self._required().delete(tenant, owner, api, session)

    # -- retention -------------------------------------------------------------------------------

    def start(self, interval: float = PURGE_SECONDS) -> None:
        if self._purge is None:
            self._purge = asyncio.create_task(self._purging(interval), name="api-sessions-purge")

    async def _purging(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.purge_once()

    async def purge_once(self) -> int:
        store = self._store()
        if store is None:
            return 0
        total = 0
        try:
            while (deleted := await store.purge(self._clock())) > 0:
                total += deleted
        except Exception:
            log.exception("purging expired API sessions failed")
        return total

    async def close(self) -> None:
        task, self._purge = self._purge, None
        await stop_task(task)


__all__ = [
    "HEADER", "SessionBook", "SessionPolicy", "counter", "fit", "owner_of", "room", "session_id",
    "split_system", "with_history",
]
