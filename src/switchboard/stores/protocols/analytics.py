"""Analytics rollups and alert incidents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

# What analytics groups by (GET /admin/v1/analytics); "tag" reads the per-tag rollup.
ANALYTICS_GROUPS = ("model", "deployment", "provider", "team", "key", "user", "tag", "tenant")
ANALYTICS_INTERVALS = ("hour", "day")


@dataclass(frozen=True)
class AnalyticsQuery:
    """Rollup hours with ``since <= bucket < until`` (whole UTC hours), summed per ``interval``
    (the hour, or the UTC day it is in) and per value of ``group_by`` (None: one series).
    ``owners``: only rows whose user or key is one of these, or, with ``owner_lineage``, whose
    key is of that key lineage (rotation chain). A ``tag`` (filter or group) reads
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
    owner_lineage: str | None = None
    owner_team: str | None = None  # with owners: the user's records of this team only (NO_TEAM: of none)
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


# -- alert incidents --------------------------------------------------------------------------


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

    async def resolve(self, rule: str, subject: str, at: datetime, value: float | None, *,
                      incident_id: str | None = None) -> Incident | None:
        """Resolve the open incident of (rule, subject), only if it is ``incident_id`` when given
        (a caller that decided from an earlier read never ends a newer incident); the resolved
        incident to the one caller that resolved it, None to every other (none open, another
        one open, or resolved by someone else)."""
        ...

    async def open_incidents(self) -> list[Incident]: ...

    async def get(self, incident_id: str) -> Incident | None: ...

    async def query(self, query: IncidentQuery) -> list[Incident]:
        """Newest first (started_at, then id)."""
        ...
