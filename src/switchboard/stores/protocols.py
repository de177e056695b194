"""What the control plane needs from state, as narrow async protocols.

Each protocol has an embedded implementation (in-process memory and the SQLite file in the
data dir) and a cluster one (Redis and PostgreSQL); ``factory.open_stores`` picks them from the
settings. Callers depend on these protocols only.

Tenant isolation: every key and ledger query takes the tenant explicitly, and a record of
another tenant is "not found". The one exception is ``KeyStore.get_by_hash``: authentication
learns the tenant from the key record it finds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple, Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KeyRecord:
    """An API key as stored: never the key itself, only its hash and a displayable prefix."""

    id: str
    key_hash: str
    prefix: str
    tenant_id: str
    team_id: str | None = None
    user_id: str | None = None
    role: str = "user"
    # None: every model; otherwise only these model names.
    allowed_models: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    enabled: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    name: str | None = None  # a label for people
    created_by: str | None = None  # the principal id that issued it
    last_used_at: datetime | None = None  # written in batches, so up to a few seconds behind
    tags: tuple[str, ...] = ()  # short labels for people and filters
    service_account_id: str | None = None  # the owning service account, if the owner is one
    rpm_limit: int | None = None  # requests per minute (revision 0006); None: no limit on the key
    tpm_limit: int | None = None  # tokens per minute
    # The key's own budget in USD (revision 0007; stored in whole nano-USD); None: none on the key.
    max_budget_usd: Decimal | None = None
    budget_period: str | None = None  # one of BUDGET_PERIODS when max_budget_usd is set
    # Data residency (revision 0009): the regions its requests may be served in; None: anywhere.
    allowed_regions: tuple[str, ...] | None = None
    # Filled by ``get_by_hash`` only (never stored): the intersection of the tenant's, the
    # team's and the key's allowed regions, what its requests are held to; None: anywhere.
    effective_regions: frozenset[str] | None = None
    # MCP tool permissions (revision 0021, docs/mcp.md): {"allow": [...] | None, "deny": [...]}
    # patterns on "<server>__<tool>"; None: no list on the key. ``team_mcp_tools``: its team's,
    # filled by ``get_by_hash`` only.
    mcp_tools: Mapping[str, Any] | None = None
    team_mcp_tools: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class UsageRecord:
    """One request's accounting. ``request_id`` is unique: appending it twice stores it once."""

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
    "deployment", "attempts", "overhead_ms", "upstream_ms",
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
        r.overhead_ms, r.upstream_ms,
    )


def usage_record(row: Sequence[Any]) -> UsageRecord:
    (rid, tenant, key, team, user, model, provider, status, prompt, completion, nano, latency,
     created, meta, cache_read, write_5m, write_1h, reasoning, unpriced, ttft, stream, error,
     upstream, tags, image_in, audio_in, image_out, audio_out, deployment, attempts, overhead,
     upstream_ms) = row
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
        overhead_ms=overhead, upstream_ms=upstream_ms,
    )


# usage reporting (GET /admin/v1/usage): the ledger grouped and summed
REPORT_FIELDS = ("tenant", "team", "key", "user", "model", "provider", "deployment", "day", "hour",
                 "api", "api_version")


@dataclass(frozen=True)
class UsageReportQuery:
    """Records with ``since <= created_at < until``, grouped by ``group_by`` (names from
    ``REPORT_FIELDS``; none: one total row). ``owners``: only records whose user or key is one of
    these (a caller who sees only its own). At most ``max_groups`` rows, else ``TooManyGroups``."""

    since: datetime
    until: datetime
    group_by: tuple[str, ...] = ()
    model: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    owners: tuple[str, ...] | None = None
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


@dataclass(frozen=True)
class AuditEntry:
    """One admin change: who did what to which resource, from where, before and after (secrets
    never included). ``id`` is assigned by the store and orders entries."""

    tenant_id: str
    actor: str  # the principal id
    actor_role: str
    action: str  # e.g. key.create, key.revoke, key.rotate
    resource_type: str
    resource_id: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    client: str | None = None  # the caller's address
    request_id: str | None = None
    at: datetime = field(default_factory=utcnow)
    id: int | None = None


@dataclass(frozen=True)
class AuditQuery:
    action: str | None = None
    resource_id: str | None = None
    actor: str | None = None
    since: datetime | None = None
    before_id: int | None = None  # cursor: entries older than this one
    limit: int = 100


# A subscription's life: pending -> approved | rejected; approved -> revoked; a rejected or
# revoked subscription may be requested again (pending, same id).
SUBSCRIPTION_STATUSES = ("pending", "approved", "rejected", "revoked")


@dataclass(frozen=True)
class SubscriptionRecord:
    """A team's subscription to a model that needs approval; one per (tenant, team, model)."""

    id: str
    tenant_id: str
    team_id: str
    model: str
    status: str = "pending"  # one of SUBSCRIPTION_STATUSES
    requested_by: str | None = None  # principal id
    decided_by: str | None = None
    reason: str | None = None  # the request's reason, then the decision's
    created_at: datetime = field(default_factory=utcnow)  # when last requested
    decided_at: datetime | None = None


@dataclass(frozen=True)
class SubscriptionQuery:
    status: str | None = None
    team_id: str | None = None
    model: str | None = None
    after_id: str | None = None  # cursor: subscriptions after this id (ids sort by creation)
    limit: int = 100


class SubscriptionExists(Exception):
    """A pending or approved subscription of this team to this model already exists."""

    def __init__(self, existing: SubscriptionRecord) -> None:
        super().__init__(existing.id)
        self.existing = existing


class SubscriptionStore(Protocol):
    async def request(self, record: SubscriptionRecord) -> SubscriptionRecord:
        """Store ``record`` as pending. A rejected or revoked subscription of the same tenant,
        team and model is reopened instead (its id kept, the rest from ``record``); a pending
        or approved one raises :class:`SubscriptionExists`."""

    async def get(self, tenant_id: str, subscription_id: str) -> SubscriptionRecord | None: ...

    async def find(self, tenant_id: str, team_id: str, model: str) -> SubscriptionRecord | None:
        """The subscription of this team to this model (the request path's lookup, cached)."""

    async def list_subscriptions(self, tenant_id: str, query: SubscriptionQuery) -> list[SubscriptionRecord]:
        """The tenant's subscriptions matching ``query``, by id (oldest first)."""

    async def decide(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        expect: tuple[str, ...],
        status: str,
        decided_by: str,
        reason: str | None,
    ) -> SubscriptionRecord | None:
        """Move the subscription to ``status`` if its status is one of ``expect`` (atomically);
        the updated record, or None when there is no such subscription in that state."""


@dataclass(frozen=True)
class KeyQuery:
    """One page of a tenant's keys, oldest first (creation time, then id). The filters are
    exact matches; ``team_scope`` and ``owners`` narrow the page to what a caller may see: the
    keys of that team, or those owned by (user, else service account) or being one of those ids."""

    team_id: str | None = None
    user_id: str | None = None
    service_account_id: str | None = None
    tag: str | None = None
    team_scope: str | None = None
    owners: tuple[str, ...] | None = None
    after: str | None = None  # cursor: the last id of the previous page
    limit: int = 100


class KeyStore(Protocol):
    async def put(self, record: KeyRecord) -> None:
        """Insert the key, or replace the record with the same id (within its tenant)."""

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        """The authentication lookup. Returns disabled and expired keys too: the caller decides."""

    async def get(self, tenant_id: str, key_id: str) -> KeyRecord | None: ...

    async def find(self, key_id: str) -> KeyRecord | None:
        """A key by id in any tenant: for the platform admin only (ids are unique everywhere)."""

    async def list_keys(self, tenant_id: str) -> list[KeyRecord]: ...

    async def page_keys(self, tenant_id: str, query: KeyQuery) -> list[KeyRecord]:
        """At most ``query.limit`` keys matching it, after the cursor; ValueError for a cursor
        that is no key of the tenant."""

    async def disable(self, tenant_id: str, key_id: str) -> bool:
        """False when the tenant has no such key."""

    async def touch(self, used: Mapping[str, datetime]) -> None:
        """Record when keys (by id) were last used, in one batch; a time never moves backwards."""


class AuditLog(Protocol):
    """Append-only: entries are added and read, never changed or removed through the gateway."""

    async def append(self, entry: AuditEntry) -> int:
        """Store the entry; returns its id."""

    async def query(self, tenant_id: str, query: AuditQuery) -> list[AuditEntry]:
        """The tenant's entries matching ``query``, newest first."""


class Counters(Protocol):
    async def incr(self, scope: str, name: str, *, window: float, amount: int = 1) -> int:
        """Add ``amount`` to the counter of the current fixed window of ``window`` seconds and
        return the new value, atomically. Counters of one ``scope`` (a tenant, a key) live
        together, so one script can check several of them."""

    async def get(self, scope: str, name: str, *, window: float) -> int: ...


# -- rate limits (limits/, pipeline/limits.py) ------------------------------------------------

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
    first bucket that had no room and ``retry_after`` says when it will have)."""

    states: list[BucketState]
    refused: int | None = None
    retry_after: float = 0.0  # seconds; inf when the amount exceeds the capacity itself


class RateLimiter(Protocol):
    async def acquire(self, buckets: Sequence[Bucket]) -> Acquired:
        """Check every bucket and take from all of them at once, or from none (atomically)."""

    async def adjust(self, buckets: Sequence[Bucket], slots: Sequence[int]) -> None:
        """Add ``amount`` (negative: give back) to the slot each bucket was counted in, if that
        slot still counts; a count never goes below zero."""


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


class LimitStore(Protocol):
    async def put(self, record: LimitRecord) -> tuple[LimitRecord, LimitRecord | None]:
        """Insert, or replace the limits of the same (tenant, scope, subject), keeping its id
        and creation time. Returns what is stored now and what was before (None: new)."""

    async def get(self, tenant_id: str, limit_id: str) -> LimitRecord | None: ...

    async def find(self, limit_id: str) -> LimitRecord | None:
        """A record by id in any tenant: for the platform admin only."""

    async def list_limits(self, tenant_id: str) -> list[LimitRecord]:
        """The tenant's records, by scope and subject."""

    async def delete(self, tenant_id: str, limit_id: str) -> bool: ...


# -- budgets (spend/budgets/, pipeline/budgets.py, docs/budgets.md) ----------------------------

BUDGET_SCOPES = ("tenant", "team", "user", "key")
BUDGET_PERIODS = ("daily", "weekly", "monthly", "total")
BUDGET_UNITS = ("usd", "tokens")


@dataclass(frozen=True)
class BudgetRecord:
    """A budget set through the admin API on a tenant, team, user or key of a tenant. One record
    per (tenant, scope, subject, unit, period): a key may have a daily and a monthly budget."""

    id: str
    tenant_id: str
    scope: str  # one of BUDGET_SCOPES
    subject: str  # the tenant, team, user or key id
    max_amount: Decimal  # USD, or tokens (a whole number)
    unit: str = "usd"  # one of BUDGET_UNITS
    period: str = "monthly"  # one of BUDGET_PERIODS
    timezone: str | None = None  # IANA name; None: budgets.timezone of the config
    thresholds: tuple[int, ...] | None = None  # percents that fire a webhook; None: the config's
    downgrade_model: str | None = None  # past downgrade_at percent, calls go to this model
    downgrade_at: int | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None


class BudgetStore(Protocol):
    async def put(self, record: BudgetRecord) -> tuple[BudgetRecord, BudgetRecord | None]:
        """Insert, or replace the budget of the same (tenant, scope, subject, unit, period),
        keeping its id and creation time. Returns what is stored now and what was before."""

    async def get(self, tenant_id: str, budget_id: str) -> BudgetRecord | None: ...

    async def find(self, budget_id: str) -> BudgetRecord | None:
        """A record by id in any tenant: for the platform admin only."""

    async def list_budgets(self, tenant_id: str) -> list[BudgetRecord]:
        """The tenant's records, by scope, subject, unit and period."""

    async def delete(self, tenant_id: str, budget_id: str) -> bool: ...

    async def claim_alert(self, budget_id: str, period_start: datetime, threshold: int) -> bool:
        """True exactly once per (budget, period, threshold), whichever instance asks first:
        a threshold's webhook fires once per crossing per period."""


class Charge(NamedTuple):
    """One budget in force on one request, in whole units (nano-USD, or tokens)."""

    key: str  # the budget's id and period start, e.g. ``bud_1:1764547200``
    limit: int
    amount: int  # what this request reserves
    ttl: float  # seconds the period's counter must live; inf: for ever (total budgets)


class Reserved(NamedTuple):
    """All-or-nothing, like ``Acquired``. ``used``: per charge, what was spent and reserved
    before this request. ``missing``: charges whose counter is not loaded yet (a new period, or
    the counter store restarted): nothing was reserved; load them from the ledger and retry."""

    used: list[int]
    refused: int | None = None
    missing: tuple[int, ...] = ()


class BudgetCounters(Protocol):
    async def reserve(self, reservation: str, charges: Sequence[Charge], hold: float) -> Reserved:
        """Check every charge and reserve its amount under ``reservation`` in all of them at once,
        or in none. A reservation not settled within ``hold`` seconds lapses."""

    async def load(self, charge: Charge, spent: int) -> None:
        """Start a counter at ``spent`` (what the ledger holds), unless it exists already."""

    async def settle(self, reservation: str, spent: Sequence[tuple[str, int]]) -> list[int]:
        """Drop the reservation and add what was actually spent to each counter (not to one that
        is gone: the ledger holds it); returns the counters' spent totals after (-1: gone)."""

    async def usage(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a counter; None when it is not loaded."""


class UsageLedger(Protocol):
    async def append(self, records: Sequence[UsageRecord]) -> int:
        """Store the records whose request id is new; returns how many were new."""

    async def append_rows(self, rows: Sequence[UsageRow], *, fresh: bool = False) -> None:
        """``append`` for rows (``USAGE_ROW``), the usage spool's fast path: idempotent by
        request id the same way; how many were new is not counted. ``fresh``: the rows were
        never offered before (not a replay), so none can be stored already."""

    async def get(self, tenant_id: str, request_id: str) -> UsageRecord | None: ...

    async def recent(self, tenant_id: str, limit: int = 100) -> list[UsageRecord]:
        """The tenant's latest records, newest first."""

    async def total(self, tenant_id: str, scope: str, subject: str, since: datetime, unit: str) -> Decimal:
        """What the ledger holds for one budget since ``since``: the cost in USD (``unit``
        "usd") or prompt + completion tokens ("tokens") of the records of the tenant (scope
        "tenant"), or of its team, user or key ``subject``. Rebuilds budget counters."""

    async def report(self, tenant_id: str | None, query: UsageReportQuery) -> list[UsageReportRow]:
        """The records grouped and summed in the database, ordered by the group values. Tenant
        None: every tenant (the platform admin's view only)."""


class SharedCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store for ``ttl`` seconds (> 0)."""

    async def delete(self, key: str) -> None: ...


Callback = Callable[[str, str], Awaitable[None]]


class Subscription(Protocol):
    async def close(self) -> None: ...


class ChangeFeed(Protocol):
    """Tells every instance that something changed (a key, a model, a policy). At most once:
    a message can be lost (a reconnect), so whatever it invalidates also has a short TTL."""

    async def publish(self, topic: str, message: str) -> None: ...

    async def subscribe(self, topic: str, callback: Callback) -> Subscription:
        """``callback(topic, message)`` runs for every message published after this returns,
        by any instance. Exceptions from it are logged, never propagated."""


# -- deployment health shared by every instance (cluster only) ------------------------------


class Failure(NamedTuple):
    opened: bool  # this failure opened the cooldown
    cooling_ms: int  # how long the deployment is still cooling down (0: it is not)


class Claim(NamedTuple):
    claimed: bool  # this instance may send the half-open probe
    cooling_ms: int  # still cooling down (opened again elsewhere): no probe yet


class HealthStore(Protocol):
    """Failure streaks, cooldowns and probe claims of deployments, shared through Redis
    (stores/redis/health.py); routing/health.py keeps the state it reads in process."""

    async def failed(self, group: str, deployment: str, threshold: int, cooldown_ms: int,
                     force: bool = False) -> Failure: ...

    async def succeeded(self, group: str, deployment: str, probe: bool = False) -> None: ...

    async def claim_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> Claim: ...

    async def extend_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> bool: ...

    async def cooling_ms(self, group: str, deployment: str) -> int: ...


# -- providers, credentials and models managed at run time ----------------------------------


@dataclass(frozen=True)
class ProviderRecord:
    """A provider added through the admin API (YAML ones are not stored). Platform-wide: the
    platform admin alone manages providers, so there is no tenant."""

    name: str
    type: str
    api_base: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Mapping[str, float] | None = None
    max_connections: int | None = None
    # Callers may send their own credential for this provider (see auth.caller_credentials).
    allow_caller_credentials: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # What the deployment itself accepts per minute (revision 0008); None: not limited.
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class CredentialRecord:
    """One credential of a provider: sealed (``ciphertext``) or a reference (``ref``), never the
    key in clear; ``mask`` (``sk-…abcd``) is what people see."""

    id: str
    provider: str
    mask: str
    ciphertext: str | None = None
    ref: str | None = None
    label: str | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    provider: str
    model: str  # the upstream model id
    timeouts: Mapping[str, float] | None = None
    drop_params: bool = False
    info: Mapping[str, Any] | None = None  # catalog overrides, as in the YAML
    require_approval: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class RoutingState:
    """Every stored provider, credential and model, read in one transaction."""

    providers: list[ProviderRecord]
    credentials: list[CredentialRecord]
    models: list[ModelRecord]


class ProviderStore(Protocol):
    async def load(self) -> RoutingState: ...

    async def get_provider(self, name: str) -> ProviderRecord | None: ...

    async def create_provider(self, record: ProviderRecord) -> bool:
        """False when a provider of that name exists."""

    async def update_provider(self, record: ProviderRecord) -> bool:
        """False when there is no such provider."""

    async def delete_provider(self, name: str) -> str:
        """``deleted`` (with its credentials), ``missing``, or ``in_use`` (a stored model uses
        it; nothing is deleted). Checked and done in one transaction."""

    async def credentials(self, provider: str) -> list[CredentialRecord]:
        """Oldest first."""

    async def add_credential(self, record: CredentialRecord) -> None: ...

    async def delete_credential(self, provider: str, credential_id: str) -> bool: ...

    async def get_model(self, name: str) -> ModelRecord | None: ...

    async def create_model(self, record: ModelRecord) -> bool:
        """False when a stored model of that name exists."""

    async def update_model(self, record: ModelRecord) -> bool: ...

    async def delete_model(self, name: str) -> bool: ...

    async def server_secret(self, name: str) -> str | None:
        """A sealed server secret (e.g. the key-hashing key), as stored."""

    async def init_server_secret(self, name: str, sealed: str) -> str:
        """Store ``sealed`` unless ``name`` exists; returns what is stored (the first writer
        wins when instances start together)."""

    async def reseal(
        self,
        credential: Callable[[CredentialRecord], str],
        secret: Callable[[str, str], str],
    ) -> tuple[int, int]:
        """Replace every sealed credential by ``credential(record)`` and every server secret by
        ``secret(name, sealed)``, in one transaction; rows whose value does not change are not
        written. Returns how many credentials and server secrets were rewritten."""


# -- routing: run-time overrides of a group's deployments (routing/live.py) ------------------


@dataclass(frozen=True)
class RoutingOverride:
    """A deployment's weight set through the admin API, over the configuration's. Gateway-wide
    (groups are), so there is no tenant."""

    group: str
    deployment: str
    weight: int | None
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class SplitOverride:
    """A split's arms' percents, changed at run time (router.splits names the split)."""

    name: str
    percents: Mapping[str, float]  # by arm (its group or deployment name)
    updated_at: datetime = field(default_factory=utcnow)


class RoutingStore(Protocol):
    async def overrides(self) -> list[RoutingOverride]:
        """Every override, by group and deployment."""

    async def split_overrides(self) -> list[SplitOverride]:
        """Every split's run-time percents, by name."""

    async def set_split(self, name: str, percents: Mapping[str, float] | None,
                        ) -> tuple[SplitOverride | None, SplitOverride | None]:
        """Set (or with None remove) a split's percents; returns the override now stored and
        the one before (None: none)."""

    async def set_weight(self, group: str, deployment: str, weight: int | None,
                         ) -> tuple[RoutingOverride | None, RoutingOverride | None]:
        """Set (or with None remove) the weight of one deployment; returns the override now
        stored and the one before (None: none)."""


# -- tenancy: tenants contain teams, teams contain users (people and service accounts) -------

USER = "user"
SERVICE_ACCOUNT = "service_account"


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None
    # Data residency (revision 0009): the regions its requests may be served in; None: anywhere.
    allowed_regions: list[str] | None = None


@dataclass(frozen=True)
class Team:
    id: str  # unique across tenants
    tenant_id: str
    name: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None
    allowed_regions: list[str] | None = None  # as Tenant's, narrowing it
    mcp_tools: Mapping[str, Any] | None = None  # MCP tool permissions (revision 0021), as the key's


@dataclass(frozen=True)
class User:
    """A person, or a service account (``kind``) standing for an application."""

    id: str  # unique across tenants
    tenant_id: str
    role: str  # one of access.roles.ROLES, never the platform admin
    kind: str = USER
    team_id: str | None = None
    name: str | None = None
    email: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    created_by: str | None = None


@dataclass(frozen=True)
class UserQuery:
    team_id: str | None = None
    role: str | None = None
    kind: str | None = None
    after: str | None = None  # cursor: ids greater than this one
    limit: int = 100


class TenancyStore(Protocol):
    """Tenants, teams and users. Every team and user query takes the tenant, and a record of
    another tenant is "not found"; the ``find_*`` lookups across tenants are for the platform
    admin only. Lists are ordered by id, paged with ``after`` (the last id seen). ``create_*``
    raise ``ValueError`` when the id is taken."""

    async def create_tenant(self, tenant: Tenant) -> None: ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def list_tenants(self, *, after: str | None = None, limit: int = 100) -> list[Tenant]: ...

    async def update_tenant(self, tenant: Tenant) -> bool: ...

    async def delete_tenant(self, tenant_id: str) -> bool:
        """Delete the tenant if it has no teams, users or enabled keys, checked by the delete
        itself (one added meanwhile keeps it); False when it is not there or not empty."""

    async def create_team(self, team: Team) -> None: ...

    async def get_team(self, tenant_id: str, team_id: str) -> Team | None: ...

    async def find_team(self, team_id: str) -> Team | None: ...

    async def list_teams(
        self, tenant_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[Team]: ...

    async def update_team(self, team: Team) -> bool: ...

    async def delete_team(self, tenant_id: str, team_id: str) -> bool:
        """Delete the team if it has no users or enabled keys (as :meth:`delete_tenant`)."""

    async def count_members(self, tenant_id: str, *, team_id: str | None = None) -> tuple[int, int, int]:
        """How many teams, users and enabled keys the tenant has (with ``team_id``: 0, and that
        team's users and enabled keys)."""

    async def create_user(self, user: User) -> None: ...

    async def get_user(self, tenant_id: str, user_id: str) -> User | None: ...

    async def find_user(self, user_id: str) -> User | None: ...

    async def list_users(self, tenant_id: str, query: UserQuery) -> list[User]: ...

    async def update_user(self, user: User) -> bool: ...

    async def delete_user(self, tenant_id: str, user_id: str) -> bool: ...


# -- observability (docs/observability.md) --


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


@dataclass(frozen=True, slots=True)
class RetentionDone:
    """What one retention pass removed: whole partitions (PostgreSQL), rows (SQLite, and rows
    PostgreSQL's DEFAULT partitions held)."""

    partitions_dropped: tuple[str, ...] = ()
    rows_deleted: int = 0


class RequestLogStore(Protocol):
    """The request log's bodies (table request_bodies) and its retention (time partitions)."""

    async def append(self, bodies: Sequence[RequestBody]) -> None:
        """Store bodies; one already stored (same request id and time) is kept as it was."""
        ...

    async def get(self, tenant_id: str, request_id: str) -> RequestBody | None: ...

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


# ---


@dataclass(frozen=True)
class LogQuery:
    """A search of the request log: records with ``since <= created_at < until`` (either may be
    None: unbounded) matching every filter given, newest first by (created_at, request_id).

    ``status`` is one status, ``status_class`` a class (5: 500-599); ``owners``: only records
    whose user or key is one of these (a caller who sees only its own). ``text``: words that
    must all occur in the stored request or response body (PostgreSQL: full-text words;
    SQLite: substrings, case-insensitive for ASCII). ``before``: the cursor, (created_at,
    request_id) of the last record of the previous page; only older records follow."""

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
    text: str | None = None
    owners: tuple[str, ...] | None = None
    before: tuple[datetime, str] | None = None
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


# ---


# What analytics groups by (GET /admin/v1/analytics); "tag" reads the per-tag rollup.
ANALYTICS_GROUPS = ("model", "deployment", "provider", "team", "key", "user", "tag", "tenant")
ANALYTICS_INTERVALS = ("hour", "day")


@dataclass(frozen=True)
class AnalyticsQuery:
    """Rollup hours with ``since <= bucket < until`` (whole UTC hours), summed per ``interval``
    (the hour, or the UTC day it is in) and per value of ``group_by`` (None: one series).
    ``owners``: only rows whose user or key is one of these. A ``tag`` (filter or group) reads
    the per-tag rollup, which has no model, deployment or provider: those filters do not apply
    to it (``ValueError``). At most ``max_rows`` rows, else ``TooManyGroups``."""

    since: datetime
    until: datetime
    interval: str = "hour"
    group_by: str | None = None
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    tag: str | None = None
    owners: tuple[str, ...] | None = None
    max_rows: int = 100_000


@dataclass(frozen=True)
class AnalyticsRow:
    """One interval of one group: sums, and histogram counts (stores/histogram.py buckets)."""

    start: datetime
    group: str | None  # None: no grouping, or the dimension was absent on the records
    requests: int = 0
    errors: int = 0  # status >= 400
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # cache reads
    reasoning_tokens: int = 0
    cost_nano_usd: int = 0
    latency_ms_sum: int = 0
    ttft_ms_sum: int = 0
    ttft_count: int = 0  # records with a time to first token
    latency_histogram: tuple[int, ...] = ()
    ttft_histogram: tuple[int, ...] = ()


class AnalyticsStore(Protocol):
    """Rollups of the usage ledger, kept as records are stored, and queries over them.

    The ledger updates the rollups in the transaction that stores the records, counting only
    records it actually inserted (a replayed record is not counted twice)."""

    async def series(self, tenant_id: str | None, query: AnalyticsQuery) -> list[AnalyticsRow]:
        """The rollups summed per interval and group, ordered by start then group. Tenant None:
        every tenant (the platform admin's view only)."""

    async def rebuild(self, since: datetime, until: datetime, tenant_id: str | None = None) -> int:
        """Recompute the rollups of the whole UTC hours covering ``[since, until)`` from the
        ledger (one tenant, or every tenant); returns how many records were counted."""

    async def purge(self, before: datetime) -> int:
        """Delete the rollups of every hour that starts before ``before`` (retention); returns
        how many rows were deleted."""


# ---


@dataclass(frozen=True)
class Incident:
    """An alert incident: a rule's condition holding for one subject (a deployment
    ``group/deployment``, a budget's threshold in a period), from ``started_at`` until resolved.
    ``tenant_id`` is set for a tenant's own subject (budgets), None for the platform's."""

    id: str
    rule: str
    kind: str  # error_rate | latency | breaker | budget
    subject: str
    value: float  # what was measured when it opened
    threshold: float | None
    started_at: datetime
    tenant_id: str | None = None
    details: Mapping[str, Any] | None = None
    state: str = "open"  # open | resolved
    last_seen_at: datetime | None = None  # the condition last seen holding (any instance)
    resolves_at: datetime | None = None  # resolved on its own from then (a budget's period end)
    resolved_at: datetime | None = None
    resolved_value: float | None = None


@dataclass(frozen=True)
class IncidentQuery:
    tenant_id: str | None = None  # None: every incident (the platform's and every tenant's)
    platform: bool = False  # with tenant_id: also the platform's incidents (tenant_id NULL)
    state: str | None = None  # open | resolved
    kind: str | None = None
    rule: str | None = None
    since: datetime | None = None  # started at or after
    before_id: str | None = None  # the cursor: incidents listed after this one (older)
    limit: int = 100


class IncidentStore(Protocol):
    """Alert incidents shared by every instance: one open incident per rule and subject."""

    async def open(self, incident: Incident) -> Incident | None:
        """Open ``incident``; None when one is open for its (rule, subject) already (opened by
        another instance, or earlier): exactly one caller wins, whatever the concurrency."""
        ...

    async def touch(self, rule: str, subject: str, at: datetime) -> None:
        """The condition still holds (seen at ``at``): moves the open incident's last_seen_at."""
        ...

    async def resolve(self, rule: str, subject: str, at: datetime, value: float | None) -> Incident | None:
        """Resolve the open incident of (rule, subject); the resolved incident to the one caller
        that resolved it, None to every other (none open, or resolved by someone else)."""
        ...

    async def open_incidents(self) -> list[Incident]: ...

    async def get(self, incident_id: str) -> Incident | None: ...

    async def query(self, query: IncidentQuery) -> list[Incident]:
        """Newest first (started_at, then id)."""
        ...


# -- files and batches (revision 0015; docs/api-files.md) ------------------------------------------

FILE = "file"
BATCH = "batch"


@dataclass(frozen=True)
class OwnedObject:
    """A file or batch created through the gateway at an upstream: who owns it, and the upstream's
    object as last seen. ``id`` is the upstream's id, which callers use; a caller sees only the
    objects of its own tenant and ``owner`` (its key id, else its principal id)."""

    id: str
    kind: str  # FILE | BATCH
    provider: str  # the provider entry that holds it
    tenant_id: str
    owner: str
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    purpose: str | None = None  # a file's purpose, a batch's endpoint
    status: str | None = None  # a batch's status as last seen
    body: Mapping[str, Any] = field(default_factory=dict)  # the upstream's object as last seen
    created_at: datetime = field(default_factory=utcnow)
    costed: bool = False  # a batch whose cost is in the usage ledger


class FileStore(Protocol):
    async def put(self, record: OwnedObject) -> None:
        """Record a new object (an id already recorded for ``kind`` is left as it was)."""

    async def get(self, kind: str, object_id: str) -> OwnedObject | None: ...

    async def list_owned(self, kind: str, tenant_id: str, owner: str, *, after: str | None = None,
                         limit: int = 20, purpose: str | None = None) -> list[OwnedObject]:
        """The owner's objects, newest first; ``after``: those created before that id."""

    async def update(self, kind: str, object_id: str, body: Mapping[str, Any], status: str | None) -> None:
        """The upstream's object as now seen."""

    async def delete(self, kind: str, object_id: str) -> bool: ...

    async def open_batches(self, limit: int) -> list[OwnedObject]:
        """Batches not yet costed, least recently seen first (for the poller)."""

    async def mark_costed(self, object_id: str) -> bool:
        """Mark a batch's cost as recorded; True for the one call that changed it."""


# -- stored Responses API responses (http/responses/, revision 0014) ----------------------------


@dataclass(frozen=True)
class StoredResponse:
    """A Responses API response kept for ``previous_response_id`` and ``GET /v1/responses/{id}``.

    It belongs to one caller: its tenant and its owner (the key id, else the principal's id);
    callers other than the owner are answered "not found". ``conversation`` holds the canonical
    chat messages up to and including this response's output (not the instructions), so a
    request continuing it reads one row."""

    id: str
    tenant_id: str | None
    owner: str
    created_at: datetime
    expires_at: datetime
    response: Mapping[str, Any]
    input_items: Sequence[Mapping[str, Any]]
    conversation: Sequence[Mapping[str, Any]]


class ResponseStore(Protocol):
    async def put(self, record: StoredResponse) -> None:
        """Insert ``record`` (ids are unique; a repeated id replaces nothing and raises)."""
        ...

    async def get(self, response_id: str) -> StoredResponse | None:
        """The record, or None when there is none or it has expired."""
        ...

    async def delete(self, response_id: str) -> bool: ...

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        """Delete at most ``limit`` records expired at ``now``; how many were deleted."""
        ...


# -- the prompt registry (prompts/, revision 0016) -------------------------------------------


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a prompt. Versions count from 1 per (tenant, name); a change is
    a new version, labels (``production``, ``staging``, any name) point at versions."""

    tenant_id: str
    name: str
    version: int
    # The chat messages, each ``{"role": ..., "content": <Jinja2 template text>}``.
    messages: Sequence[Mapping[str, Any]]
    # JSON schema of the variables (an object schema).
    variables: Mapping[str, Any]
    # The bound model or model group.
    model: str
    # Default request parameters: temperature, max_tokens, tools, response_format, ...
    params: Mapping[str, Any] = field(default_factory=dict)
    # JSON schema the output must satisfy (structured output); None: plain text.
    output_schema: Mapping[str, Any] | None = None
    description: str | None = None
    team_id: str | None = None  # the owning team
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)


class PromptStore(Protocol):
    async def create_version(self, draft: PromptVersion) -> PromptVersion:
        """Store ``draft`` as the next version of its (tenant, name) (``draft.version`` is
        ignored); the stored version, its number assigned atomically."""
        ...

    async def get(self, tenant_id: str, name: str, *, version: int | None = None,
                  label: str | None = None) -> PromptVersion | None:
        """A version by number, or the one a label points at; neither: the latest."""
        ...

    async def versions(self, tenant_id: str, name: str) -> list[PromptVersion]: ...

    async def version_numbers(self, tenant_id: str, names: Iterable[str]) -> dict[str, list[int]]:
        """The version numbers of each of ``names`` (ascending; [] for a name without one), in one
        query rather than one per prompt."""
        ...

    async def labels(self, tenant_id: str, name: str) -> dict[str, int]: ...

    async def set_label(self, tenant_id: str, name: str, label: str, version: int) -> None: ...

    async def list_prompts(self, tenant_id: str, *, team_id: str | None = None,
                           after: str | None = None, limit: int = 100) -> list[PromptVersion]:
        """The latest version of each of the tenant's prompts (one team's when ``team_id``), by
        name; ``after``: only the names after it."""
        ...

    async def all_labels(self, tenant_id: str, names: list[str]) -> dict[str, dict[str, int]]:
        """The labels of each of ``names`` (a name without labels is absent)."""
        ...


# -- prompts published as APIs (apis/, revision 0017) -----------------------------------------


@dataclass(frozen=True)
class ApiRecord:
    """A prompt published as ``POST /apis/{name}``. It follows a prompt ``label`` or a fixed
    prompt ``version``; ``/apis/{name}/v{N}`` pins prompt version N."""

    tenant_id: str
    name: str
    prompt: str
    version: int | None = None
    label: str | None = None
    # draft -> published -> deprecated -> retired
    status: str = "published"
    description: str | None = None
    team_id: str | None = None  # the owning team
    require_approval: bool = False
    successor: str | None = None  # named in Deprecation/Sunset links and the 410 of a retired API
    sunset_at: datetime | None = None
    deprecated_at: datetime | None = None  # when it became deprecated (the Deprecation header)
    # A/B split between prompt versions: [{"version": N, "percent": P}, ...]; sticky per key.
    split: Sequence[Mapping[str, Any]] | None = None
    # Server-side sessions (x-switchboard-session) for multi-turn APIs; None: off.
    sessions: Mapping[str, Any] | None = None
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class ApiExists(Exception):
    """An API of this name already exists in the tenant."""


class ApiStore(Protocol):
    async def create(self, record: ApiRecord) -> ApiRecord:
        """Store a new API; ApiExists when the tenant has one of that name."""
        ...

    async def get(self, tenant_id: str, name: str) -> ApiRecord | None: ...

    async def list_apis(self, tenant_id: str) -> list[ApiRecord]: ...

    async def update(self, record: ApiRecord) -> ApiRecord:
        """Replace the stored API of that (tenant, name) (``updated_at`` set now); KeyError if none."""
        ...


# -- sessions of multi-turn prompt APIs (apis/sessions.py, revision 0018) ----------------------


@dataclass(frozen=True)
class ApiSession:
    """The server-side history of one session of a published API: per tenant, per caller
    (``owner``: the key's id, else the principal's) and per session id. ``turns`` are the
    exchanges, oldest first, each a list of canonical chat messages (the user's, then the
    reply). ``version`` counts saves (optimistic concurrency)."""

    tenant_id: str
    owner: str
    api: str
    session_id: str
    turns: Sequence[Sequence[Mapping[str, Any]]]
    expires_at: datetime
    version: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class SessionStore(Protocol):
    async def get(self, tenant_id: str, owner: str, api: str, session_id: str,
                  now: datetime | None = None) -> ApiSession | None:
        """The session; None when missing or expired (at ``now``, default: the current time)."""
        ...

    async def save(self, session: ApiSession, expected_version: int | None) -> bool:
        """Store ``session`` (its ``version`` is the new one): insert it when
        ``expected_version`` is None, else replace the stored one only if it is still at
        ``expected_version``. False when another save got there first (reload and retry)."""
        ...

    async def delete(self, tenant_id: str, owner: str, api: str, session_id: str) -> bool: ...

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        """Delete at most ``limit`` sessions expired at ``now``; how many were deleted."""
        ...


# -- plain REST services registered through the admin API (services/, revision 0019) ----------


@dataclass(frozen=True)
class ServiceRecord:
    """A REST service proxied under ``/services/{name}/``, stored for one tenant. ``spec`` is the
    service's settings (config/services.py ``ServiceSettings``) without its headers; ``headers``
    maps each added header's name to its value sealed with the provider-credential keyring."""

    tenant_id: str
    name: str
    spec: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class ServiceExists(Exception):
    """The tenant has a service of that name already."""


class ServiceStore(Protocol):
    async def create(self, record: ServiceRecord) -> ServiceRecord:
        """Store a new service; ServiceExists when the (tenant, name) is taken."""
        ...

    async def get(self, tenant_id: str, name: str) -> ServiceRecord | None: ...

    async def list_services(self, tenant_id: str | None) -> list[ServiceRecord]:
        """A tenant's services by name (None: every tenant's)."""
        ...

    async def update(self, record: ServiceRecord) -> ServiceRecord | None:
        """Replace the spec and headers of an existing service; None when there is none."""
        ...

    async def delete(self, tenant_id: str, name: str) -> bool: ...

    async def reseal(self, headers: Callable[[ServiceRecord], Mapping[str, str]]) -> int:
        """Replace every service's sealed headers with ``headers(record)`` where they differ, in
        one transaction (an exception from ``headers`` writes nothing); how many changed."""
        ...


# -- MCP servers managed at run time and per-user OAuth tokens (mcp/, revision 0020) ----------


@dataclass(frozen=True)
class McpServerRecord:
    """An MCP server registered through the admin API. ``config`` holds the server's settings
    (``McpServerConfig`` fields) without its secrets; ``sealed`` holds them (the static headers
    and the OAuth client secret) encrypted under the server secret."""

    id: str
    name: str
    tenant_id: str | None  # None: every tenant (the platform admin's)
    config: Mapping[str, Any]
    sealed: str | None = None
    header_names: Sequence[str] = ()  # the static headers' names (their values are sealed)
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class McpTokenRecord:
    """One user's OAuth tokens for one server, sealed (access and refresh token, their expiry)."""

    tenant_id: str
    user_id: str
    server: str
    sealed: str
    expires_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)


class McpStore(Protocol):
    async def create_server(self, record: McpServerRecord) -> bool:
        """False when the name is taken in the record's scope (its tenant, or the global ones)."""
        ...

    async def get_server(self, server_id: str) -> McpServerRecord | None: ...

    async def find_server(self, tenant_id: str | None, name: str) -> McpServerRecord | None:
        """The server of this name in exactly this scope (None: the global ones)."""
        ...

    async def list_servers(self, tenant_id: str | None, *, with_global: bool = True,
                           every_tenant: bool = False) -> list[McpServerRecord]:
        """A tenant's servers (and the global ones unless ``with_global`` is false); tenant None:
        the global ones only; ``every_tenant``: all of them. Ordered by name, then id."""
        ...

    async def update_server(self, record: McpServerRecord) -> bool: ...

    async def delete_server(self, server_id: str) -> McpServerRecord | None:
        """Remove the server and every user's tokens for it; the removed record."""
        ...

    async def get_token(self, tenant_id: str, user_id: str, server: str) -> McpTokenRecord | None: ...

    async def put_token(self, record: McpTokenRecord) -> None:
        """Insert or replace the user's tokens for the server."""
        ...

    async def delete_token(self, tenant_id: str, user_id: str, server: str) -> bool: ...

    async def reseal(self, server: Callable[[McpServerRecord], str],
                     token: Callable[[McpTokenRecord], str]) -> tuple[int, int]:
        """Re-seal every server's secrets and every token (``switchboard secrets rotate``), in one
        transaction; how many of each changed."""
        ...
