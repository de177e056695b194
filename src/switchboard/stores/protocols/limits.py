"""Rate limits (limits/, pipeline/limits.py): token buckets and the limits set at run time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow

# -- token buckets and the limits set at run time -------------------------------------------------

# A window is kept as this many slots; a unit taken in a slot counts until the whole slot has
# left the window, so the count in any window of that length never exceeds what was allowed.
LIMIT_SLOTS = 60


class Bucket(NamedTuple):
    """One limit applied to one request: at most ``capacity`` units in any ``window`` seconds."""

    key: str  # scope and what is counted, e.g. ``key:key_1:rpm``
    capacity: int
    window: float
    amount: int  # units this request takes (a negative or positive correction in ``adjust``)


class BucketState(NamedTuple):
    capacity: int
    used: int  # units counted in the window, this request's included when it was admitted
    reset: float  # seconds until the window holds nothing of what is counted now
    slot: int  # the slot this request was counted in (for ``adjust``)


class Acquired(NamedTuple):
    """All-or-nothing: either every bucket took its amount, or none did (``refused`` names the
    first bucket that had no room and ``retry_after`` says when it will have). A refusal's
    ``states`` are every bucket's as it stands, nothing taken (for the refusal's headers); empty
    when the amount exceeds a capacity itself."""

    states: list[BucketState]
    refused: int | None = None
    retry_after: float = 0.0  # seconds; inf when the amount exceeds the capacity itself


class RateLimiter(Protocol):
    # ``acquire`` and ``adjust`` as plain calls, for a limiter that never waits (process memory):
    # the request path then makes no coroutine for them (an awaited coroutine that never suspends
    # costs some 700 instructions more than a call). None for one that waits (Redis).
    @property
    def acquire_now(self) -> Callable[[Sequence[Bucket]], Acquired] | None: ...

    @property
    def adjust_now(self) -> Callable[[Sequence[Bucket], Sequence[int]], None] | None: ...

    async def acquire(self, buckets: Sequence[Bucket]) -> Acquired:
        """Check every bucket and take from all of them at once, or from none (atomically)."""

    def adjust(self, buckets: Sequence[Bucket], slots: Sequence[int]) -> Awaitable[None]:
        """Add ``amount`` (negative: give back) to the slot each bucket was counted in, if that
        slot still counts; a count never goes below zero. A store that cannot make it now
        (Redis down) makes it once it can, while the slot still counts: not the caller's to retry.
        A shared store may send it as it is called, before it is awaited (Redis: with whatever
        else is asked in the same event-loop pass, in one round trip)."""


LIMIT_SCOPES = ("tenant", "team", "user", "model", "key_model")


@dataclass(frozen=True)
class LimitRecord:
    """Limits set through the admin API for one subject of a tenant: the tenant itself, one of
    its teams or users, or its traffic to one model. One record per (tenant, scope, subject)."""

    id: str
    tenant_id: str
    scope: str  # one of LIMIT_SCOPES
    subject: str  # the tenant, team or user id, the model name, or "<key id>:<model>"
    rpm: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None


# The audit entry of a limit set: from it as stored and as it was (None: new).
LimitAudited = Callable[[LimitRecord, "LimitRecord | None"], AuditEntry]


class LimitStore(Protocol):
    async def put(self, record: LimitRecord, *, audited: LimitAudited | None = None
                  ) -> tuple[LimitRecord, LimitRecord | None]:
        """Insert, or replace the limits of the same (tenant, scope, subject), keeping its id
        and creation time. Returns what is stored now and what was before (None: new); limits
        the same as stored already are not written, and both are then the same record.
        ``audited``'s entry (from both) is appended to the audit log in the same transaction
        (both or neither; none when nothing is written)."""

    async def get(self, tenant_id: str, limit_id: str) -> LimitRecord | None: ...

    async def find(self, limit_id: str) -> LimitRecord | None:
        """A record by id in any tenant: for the platform admin only."""

    async def list_limits(self, tenant_id: str) -> list[LimitRecord]:
        """The tenant's records, by scope and subject."""

    async def delete(self, tenant_id: str, limit_id: str, *, audited: AuditEntry | None = None) -> bool:
        """Delete the record; False when it is not there. ``audited`` is appended to the audit
        log in the same transaction (both or neither)."""
