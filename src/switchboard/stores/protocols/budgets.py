"""Budgets (spend/budgets/, pipeline/budgets.py, docs/budgets.md): their records and the
counters that reserve and settle spend against them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow
from switchboard.stores.protocols.limits import Acquired, Bucket

BUDGET_SCOPES = ("tenant", "team", "user", "key")
BUDGET_PERIODS = ("daily", "weekly", "monthly", "total")
BUDGET_UNITS = ("usd", "tokens")
KEY_BUDGET_PREFIX = "key:"  # the id of a key's own budget: key:<key lineage>
# The first instant of the period before which a (period, timezone) budget's claims are past:
# None for a period that never ends (total). timezone None: the config's budgets.timezone.
AlertsCutoff = Callable[[str, str | None], datetime | None]


@dataclass(frozen=True)
class BudgetRecord:
    """A budget set through the admin API on a tenant, team, user or key of a tenant. One record
    per (tenant, scope, subject, unit, period): a key may have a daily and a monthly budget."""

    id: str
    tenant_id: str
    scope: str  # one of BUDGET_SCOPES
    subject: str  # the tenant, team or user id, or a key's lineage (the first key of its rotation chain)
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


# The audit entry of a budget written: from the budget as stored and as it was (None: new).
SetAudited = Callable[[BudgetRecord, "BudgetRecord | None"], AuditEntry]


class BudgetStore(Protocol):
    async def put(self, record: BudgetRecord, *, audited: SetAudited | None = None
                  ) -> tuple[BudgetRecord, BudgetRecord | None]:
        """Insert, or replace the budget of the same (tenant, scope, subject, unit, period),
        keeping its id and creation time. Returns what is stored now and what was before; a
        budget the same as stored already is not written, and both are then the same record.
        ``audited``'s entry is appended to the audit log in the write's transaction (both or
        neither); none for a budget not written."""

    async def get(self, tenant_id: str, budget_id: str) -> BudgetRecord | None: ...

    async def find(self, budget_id: str) -> BudgetRecord | None:
        """A record by id in any tenant: for the platform admin only."""

    async def list_budgets(self, tenant_id: str) -> list[BudgetRecord]:
        """The tenant's records, by scope, subject, unit and period."""

    async def delete(self, tenant_id: str, budget_id: str) -> bool: ...

    async def claim_alert(self, budget_id: str, period_start: datetime, threshold: int, limit: int) -> bool:
        """True exactly once per (budget, period, threshold, amount), whichever instance asks
        first: a threshold's webhook fires once per period for each amount the budget had
        (``limit``, in whole units), so a budget raised or lowered mid-period alerts again."""

    async def forget_alerts(self, budget_id: str, limit: int, thresholds: Sequence[int]) -> None:
        """Forget the budget's claims at another amount than ``limit`` or at a threshold not in
        ``thresholds``: their incidents were resolved with the change, so the budget set back
        to that amount (or threshold) alerts again when its spend is past it."""

    async def release_alerts(self, budget_id: str) -> int:
        """Forget every claim of the budget (a key chain's own budget, when the chain comes back
        after no key of it could spend), so it alerts again; how many there were."""

    async def purge_alerts(self, cutoff: AlertsCutoff) -> int:
        """Forget the claims of periods that ended (those starting before ``cutoff`` of their
        budget's period and time zone; a key's own budget's by its keys' ``budget_period``, in
        the config's time zone): a later period claims its own. How many were forgotten; safe
        to run on several instances at once."""

    async def ended_key_chains(self, now: datetime) -> list[tuple[str, str]]:
        """(tenant, lineage) of the key chains that have budgets set on them (``scope`` key) or
        claims of their own budget (``key:<lineage>``), and no key left that may spend at ``now``
        (each revoked or past its ``expires_at``); each chain once."""

    async def delete_budgets(self, tenant_id: str, scope: str | None = None, subject: str | None = None,
                             *, budget_id: str | None = None,
                             audited: Callable[[BudgetRecord], AuditEntry] | None = None
                             ) -> list[BudgetRecord]:
        """Delete the tenant's budgets (those of ``scope`` and ``subject``, or the one ``budget_id``
        names, when given) and their claims, and append ``audited``'s entry for each to the audit
        log, in one transaction: all of it or none; returns those deleted."""


class Charge(NamedTuple):
    """One budget in force on one request, in whole units (nano-USD, or tokens)."""

    key: str  # the budget's id and period start, e.g. ``bud_1:1764547200``
    limit: int
    amount: int  # what this request reserves
    ttl: float  # seconds the period's counter must live; inf: for ever (total budgets)


class Reserved(NamedTuple):
    """All-or-nothing, like ``Acquired``. ``used``: per charge, what was spent and reserved
    before this request (every charge's, also when one refused: ``refused`` is the first).
    ``missing``: charges whose counter is not loaded yet (a new period, or the counter store
    restarted): nothing was reserved; load them from the ledger and retry."""

    used: list[int]
    refused: int | None = None
    missing: tuple[int, ...] = ()


class Again(NamedTuple):
    """A settlement tried again: how long ago (seconds) its reservation was made, and its hold."""

    age: float
    hold: float


class BudgetCounters(Protocol):
    # ``reserve`` and ``settle`` as plain calls, for counters that never wait (process memory):
    # the request path then makes no coroutine for them. None for counters that wait (Redis).
    @property
    def reserve_now(self) -> Callable[[str, Sequence[Charge], float], Reserved] | None: ...

    @property
    def settle_now(self) -> Callable[[str, Sequence[tuple[str, int]]], list[int]] | None: ...

    async def reserve(self, reservation: str, charges: Sequence[Charge], hold: float) -> Reserved:
        """Check every charge and reserve its amount under ``reservation`` in all of them at once,
        or in none. A reservation not settled within ``hold`` seconds lapses."""

    async def load(self, charge: Charge, spent: int) -> None:
        """Start a counter at ``spent`` (what the ledger holds), unless it exists already."""

    async def settle(self, reservation: str, spent: Sequence[tuple[str, int]],
                     again: Again | None = None) -> list[int]:
        """Drop the reservation and add what was actually spent to each counter (not to one that
        is gone: the ledger holds it); returns the counters' spent totals after (-1: nothing
        added). ``again``: this settlement was tried before and that try failed, so it may or
        may not have been made; it is then added at most once: only while the reservation is
        still held, or once it lapsed unsettled in a counter loaded before it was made (a
        counter loaded since was read from the ledger, which holds the call)."""

    async def usage(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a counter; None when it is not loaded."""

    async def lost_ago(self) -> float | None:
        """Seconds since the counters were first found to have lost their data (the counter
        store restarted empty), by any instance; the first call after such a loss notices it and
        answers 0. None when they live in this process only (lost only with it)."""


class Admission(Protocol):
    """A request's rate limits and budgets in one atomic call of a shared counter store
    (Redis: one script, one round trip before the upstream call). None in the embedded
    default, whose limiter and counters live in this process and need no round trip."""

    async def acquire_reserve(self, buckets: Sequence[Bucket], reservation: str, charges: Sequence[Charge],
                              hold: float) -> tuple[Acquired, Reserved | None]:
        """``RateLimiter.acquire(buckets)``, then, only when it admitted the request,
        ``BudgetCounters.reserve(reservation, charges, hold)``, as one: None when the limits
        refused (nothing tried on the budgets), and when the budgets' part failed (the caller
        then reserves on its own, so the budgets' store-error policy judges the error). A budget
        refusal leaves what the limits took (the caller gives it back, as after separate calls)."""
