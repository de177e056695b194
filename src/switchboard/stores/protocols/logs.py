"""The request log (docs/observability.md): stored bodies, retention, and search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from switchboard.stores.protocols.usage import UsageRecord


@dataclass(frozen=True, slots=True)
class RequestBody:
    """What the request log keeps of one request beside its usage record, already redacted:
    the request and response as JSON text (cut at ``request_log.max_body_bytes``, then
    ``truncated``), and the request's headers when the policy keeps them. ``created_at`` is when
    the request started (as its usage record's, to within the clock's reading)."""

    request_id: str
    tenant_id: str
    created_at: datetime
    request: str | None = None
    response: str | None = None
    request_headers: Mapping[str, str] | None = None
    truncated: bool = False
    # The usage record's (UsageRecord.log_id): what the body joins it on, and its key with
    # created_at (revision 0043). None: the request id, as a body stored before 0037 has.
    log_id: str | None = None

    def __post_init__(self) -> None:
        if self.log_id is None:
            object.__setattr__(self, "log_id", self.request_id)


@dataclass(frozen=True, slots=True)
class RetentionDone:
    """What one retention pass removed: whole partitions (PostgreSQL), rows (SQLite, and rows
    PostgreSQL's DEFAULT partitions held)."""

    partitions_dropped: tuple[str, ...] = ()
    rows_deleted: int = 0


class RequestLogStore(Protocol):
    """The request log's bodies (table request_bodies) and its retention (time partitions)."""

    async def append(self, bodies: Sequence[RequestBody]) -> None:
        """Store bodies; one already stored (same log id and time) is kept as it was."""
        ...

    async def get(self, tenant_id: str, log_id: str) -> RequestBody | None:
        """The body stored under its record's log id (``UsageRecord.log_id``), never looked up
        by request id: several requests may share a caller's."""
        ...

    async def prepare(self, now: datetime, days_ahead: int = 2) -> list[str]:
        """Make the day partitions of ``now``'s UTC day and the ``days_ahead`` after it, for the
        usage records and the bodies (PostgreSQL; nothing to do on SQLite). Idempotent, and
        serialized across instances. Returns the partitions it created."""
        ...

    async def retain(
        self, now: datetime, *, days: int, records_days: int | None = None, max_bytes: int | None = None,
    ) -> RetentionDone:
        """Remove bodies older than ``days``, usage records older than ``records_days`` (None:
        kept), and the oldest bodies while they take more than ``max_bytes`` (None: no cap)."""
        ...


# -- search -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogQuery:
    """A search of the request log: records with ``since <= created_at < until`` (either may be
    None: unbounded) matching every filter given, newest first by (created_at, request_id).

    ``status`` is one status, ``status_class`` a class (5: 500-599); ``owners``: only records
    whose user or key is one of these (a caller who sees only its own), or, with
    ``owner_lineage``, whose key is of that key lineage (rotation chain). ``text``: words that
    must all occur in the stored request or response body (PostgreSQL: full-text words;
    SQLite: substrings, case-insensitive for ASCII). ``before``: the cursor, (created_at,
    request_id, entry_id) of the last record of the previous page; only older records follow (a
    cursor without the entry id, made before entry ids: the records after that request id)."""

    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    status: int | None = None
    status_class: int | None = None
    error_code: str | None = None
    min_latency_ms: int | None = None
    max_latency_ms: int | None = None
    min_cost_usd: Decimal | None = None
    max_cost_usd: Decimal | None = None
    abandoned: bool | None = None  # streams the client left (metadata.abandoned), or all others
    text: str | None = None
    owners: tuple[str, ...] | None = None
    owner_lineage: str | None = None
    owner_team: str | None = None  # with owners: the user's records of this team only (NO_TEAM: of none)
    before: tuple[datetime, str] | tuple[datetime, str, str] | None = None
    limit: int = 50
    include_bodies: bool = False


@dataclass(frozen=True)
class LogBody:
    """A request's stored bodies (table request_bodies), as stored: redacted before storing."""

    request: str | None = None
    response: str | None = None
    request_headers: Mapping[str, Any] | None = None
    truncated: bool = False


@dataclass(frozen=True)
class LogEntry:
    record: UsageRecord
    body: LogBody | None = None  # None: no body stored, or bodies not asked for


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]
    has_more: bool  # more records match past the last one (ask with ``before`` = its position)


class LogSearch(Protocol):
    """Searching the request log: usage records joined with their bodies, tenant-scoped."""

    async def search(self, tenant_id: str | None, query: LogQuery) -> LogPage:
        """One page of the tenant's matching records, newest first, in one SQL statement.
        Tenant None: every tenant (the platform admin's view only)."""
