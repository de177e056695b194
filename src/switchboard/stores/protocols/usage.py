"""The usage ledger: one record per call, its row form, and the grouped usage reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class UsageRecord:
    """One request's accounting. ``entry_id`` (with ``created_at``) is unique: appending a record
    twice stores it once. ``request_id`` is the caller's X-Request-Id when it sent one, which
    several requests may share."""

    request_id: str
    tenant_id: str
    model: str
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    provider: str | None = None
    status: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: int = 0
    created_at: datetime = field(default_factory=utcnow)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # The billing split (docs/spend.md): prompt_tokens = uncached input + cache reads + cache
    # writes; completion_tokens includes reasoning_tokens.
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    unpriced: bool = False  # some tokens had no known price: cost_usd counts them as 0
    ttft_ms: int | None = None  # time to the first byte sent to the client
    stream: bool = False
    error_code: str | None = None
    upstream_model: str | None = None  # the deployment's model id
    tags: tuple[str, ...] = ()  # the key's tags
    # Image and audio units (revision 0009): prompt_tokens includes the input ones (those not
    # read from a cache), completion_tokens the output ones.
    image_input_tokens: int = 0
    audio_input_tokens: int = 0
    image_output_tokens: int = 0
    audio_output_tokens: int = 0
    # The deployment that answered (or was tried last) and every attempt, in order, as
    # {"deployment", "group", "status", "code", "ms"} (revision 0009; docs/routing.md).
    deployment: str | None = None
    attempts: tuple[Mapping[str, Any], ...] | None = None
    # The gateway's own time and the upstream's (revision 0010; docs/observability.md): the
    # milliseconds spent outside the upstream calls, and inside them (every attempt's).
    overhead_ms: int | None = None
    upstream_ms: int | None = None
    # The gateway's own id of the record, which the request's stored bodies carry (revision
    # 0037; RequestContext.log_id): request_id is the caller's choice, not unique to it.
    log_id: str | None = None
    # The record's own id, the ledger's key with created_at (revision 0042): made by the gateway
    # once per request (RequestContext.entry_id), so records sharing a caller's request id and
    # start are all kept, while a replayed record (same id) is stored once. None: the request id,
    # for a record made once per request id (a batch's) and for the rows stored before 0042.
    entry_id: str | None = None

    def __post_init__(self) -> None:
        if self.entry_id is None:
            object.__setattr__(self, "entry_id", self.request_id)


# A usage record as the usage spool carries it and ``UsageLedger.append_rows`` stores it: a
# tuple of the fields in USAGE_ROW order, cheap to build on the request path. ``created_at`` is
# whole microseconds since the Unix epoch (UTC), ``cost_nano_usd`` whole billionths of a dollar
# (the ledger's precision), ``tags`` a sequence.
USAGE_ROW = (
    "request_id", "tenant_id", "key_id", "team_id", "user_id", "model", "provider", "status",
    "prompt_tokens", "completion_tokens", "cost_nano_usd", "latency_ms", "created_at", "metadata",
    "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens",
    "unpriced", "ttft_ms", "stream", "error_code", "upstream_model", "tags",
    "image_input_tokens", "audio_input_tokens", "image_output_tokens", "audio_output_tokens",
    "deployment", "attempts", "overhead_ms", "upstream_ms", "log_id", "entry_id",
)
UsageRow = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANO = Decimal(10**9)


def usage_row(r: UsageRecord) -> UsageRow:
    """The record as a row; its cost rounded half-even to the billionth of a dollar."""
    created = (r.created_at - _EPOCH) // timedelta(microseconds=1)
    nano = int((r.cost_usd * _NANO).to_integral_value(ROUND_HALF_EVEN))
    return (
        r.request_id, r.tenant_id, r.key_id, r.team_id, r.user_id, r.model, r.provider, r.status,
        r.prompt_tokens, r.completion_tokens, nano, r.latency_ms, created, dict(r.metadata),
        r.cache_read_tokens, r.cache_write_5m_tokens, r.cache_write_1h_tokens, r.reasoning_tokens,
        r.unpriced, r.ttft_ms, r.stream, r.error_code, r.upstream_model, tuple(r.tags),
        r.image_input_tokens, r.audio_input_tokens, r.image_output_tokens, r.audio_output_tokens,
        r.deployment, None if r.attempts is None else [dict(a) for a in r.attempts],
        r.overhead_ms, r.upstream_ms, r.log_id, r.entry_id,
    )


def usage_record(row: Sequence[Any]) -> UsageRecord:
    (rid, tenant, key, team, user, model, provider, status, prompt, completion, nano, latency,
     created, meta, cache_read, write_5m, write_1h, reasoning, unpriced, ttft, stream, error,
     upstream, tags, image_in, audio_in, image_out, audio_out, deployment, attempts, overhead,
     upstream_ms, log_id, entry_id) = row
    return UsageRecord(
        request_id=rid, tenant_id=tenant, model=model, key_id=key, team_id=team, user_id=user,
        provider=provider, status=status, prompt_tokens=prompt, completion_tokens=completion,
        cost_usd=(Decimal(nano) / _NANO).normalize(), latency_ms=latency,
        created_at=_EPOCH + timedelta(microseconds=created), metadata=meta or {},
        cache_read_tokens=cache_read, cache_write_5m_tokens=write_5m, cache_write_1h_tokens=write_1h,
        reasoning_tokens=reasoning, unpriced=bool(unpriced), ttft_ms=ttft, stream=bool(stream),
        error_code=error, upstream_model=upstream, tags=tuple(tags or ()),
        image_input_tokens=image_in, audio_input_tokens=audio_in, image_output_tokens=image_out,
        audio_output_tokens=audio_out,
        deployment=deployment, attempts=None if attempts is None else tuple(attempts),
        overhead_ms=overhead, upstream_ms=upstream_ms, log_id=log_id, entry_id=entry_id,
    )


# usage reporting (GET /admin/v1/usage): the ledger grouped and summed
REPORT_FIELDS = ("tenant", "team", "key", "user", "model", "provider", "deployment", "day", "hour",
                 "api", "api_version")


@dataclass(frozen=True)
class UsageReportQuery:
    """Records with ``since <= created_at < until``, grouped by ``group_by`` (names from
    ``REPORT_FIELDS``; none: one total row). ``owners``: only records whose user or key is one of
    these (a caller who sees only its own), or, with ``owner_lineage``, whose key is of that key
    lineage (rotation chain). At most ``max_groups`` rows, else ``TooManyGroups``."""

    since: datetime
    until: datetime
    group_by: tuple[str, ...] = ()
    model: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    owners: tuple[str, ...] | None = None
    owner_lineage: str | None = None
    owner_team: str | None = None  # with owners: the user's records of this team only (NO_TEAM: of none)
    max_groups: int = 10_000
    # Calls of one prompt API (metadata.api), and of one of its prompt versions (metadata.api_version).
    api: str | None = None
    api_version: int | None = None


@dataclass(frozen=True)
class UsageReportRow:
    """One group: its key values (``day``/``hour`` as ``YYYY-MM-DDTHH:00:00Z`` in UTC) and sums."""

    group: Mapping[str, str | None]
    requests: int = 0
    errors: int = 0  # records with a status of 400 or more
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # 5-minute and 1-hour writes
    reasoning_tokens: int = 0
    image_input_tokens: int = 0
    audio_input_tokens: int = 0
    image_output_tokens: int = 0
    audio_output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)  # exact: the sum of the records' billionths of a dollar
    unpriced: int = 0  # records with some tokens that had no price
    # Averages in milliseconds (None: no record had one): the whole call, and a stream's first byte.
    latency_ms_avg: float | None = None
    ttft_ms_avg: float | None = None


class TooManyGroups(Exception):
    """The report would have more than ``UsageReportQuery.max_groups`` rows."""


class UsageLedger(Protocol):
    async def append(self, records: Sequence[UsageRecord]) -> int:
        """Store the records whose key (entry id and time) is new; returns how many were new."""

    async def append_rows(self, rows: Sequence[UsageRow], *, fresh: bool = False) -> None:
        """``append`` for rows (``USAGE_ROW``), the usage spool's fast path: idempotent by
        entry id and time the same way; how many were new is not counted. ``fresh``: the rows were
        never offered before (not a replay), so none can be stored already."""

    async def get(self, tenant_id: str, request_id: str) -> UsageRecord | None:
        """The tenant's record of ``request_id``; of several sharing it, the first made."""

    async def recent(self, tenant_id: str, limit: int = 100) -> list[UsageRecord]:
        """The tenant's latest records, newest first."""

    async def total(self, tenant_id: str, scope: str, subject: str, since: datetime, unit: str) -> Decimal:
        """What the ledger holds for one budget since ``since``: the cost in USD (``unit``
        "usd") or prompt + completion tokens ("tokens") of the records of the tenant (scope
        "tenant"), or of its team, user or key ``subject`` (a key's: every key of the lineage
        ``subject``, its rotation chain). Rebuilds budget counters."""

    async def report(self, tenant_id: str | None, query: UsageReportQuery) -> list[UsageReportRow]:
        """The records grouped and summed in the database, ordered by the group values. Tenant
        None: every tenant (the platform admin's view only)."""
