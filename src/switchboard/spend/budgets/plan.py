"""Which budgets are in force on a request, in whole units.

Every budget in scope applies: the tenant's, the team's, the user's (a team key that belongs to
a user counts against that user's budgets too) and the key's (its own ``max_budget_usd`` and
those set on it through the admin API, held under its lineage: the first key of its rotation
chain, so a rotation does not reset them). A request must fit in all of them, so the most
restrictive decides (docs/budgets.md, "Precedence").

USD is counted in whole nano-dollars (10**-9 USD, the ledger's unit), tokens as tokens, so the
counters are integers everywhere (memory, Redis) and add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from switchboard.config.schema import BudgetsConfig
from switchboard.context import Principal
from switchboard.spend.budgets.periods import zone
from switchboard.stores.protocols import BudgetRecord
from switchboard.stores.protocols.budgets import KEY_BUDGET_PREFIX

NANO = Decimal(10**9)


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    tenant_id: str
    scope: str  # tenant | team | user | key
    subject: str
    unit: str  # usd | tokens
    limit: int  # whole units: nano-USD or tokens
    period: str
    zone: ZoneInfo
    thresholds: tuple[int, ...]
    downgrade_model: str | None = None
    downgrade_at: int | None = None
    # The lowest threshold as a total times 100 (``limit * percent``; infinite without one): a
    # settlement whose new total stays below it crossed none, which is what almost every
    # settlement finds, told by one comparison (spend/budgets/book.py, ``_crossed``).
    lowest_mark: float = field(init=False, repr=False, compare=False)
    # (id, period, time zone): what the book keeps this budget's current period under, made once
    # rather than on every charge (spend/budgets/book.py, ``charges``).
    period_key: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lowest = self.limit * min(self.thresholds) if self.thresholds else math.inf
        object.__setattr__(self, "lowest_mark", lowest)
        object.__setattr__(self, "period_key", (self.id, self.period, self.zone.key))

    def shown(self, units: int) -> str:
        """An amount of this budget's unit for people: ``$0.50`` or ``1200 tokens``."""
        if self.unit == "usd":
            return f"${usd_of(units):f}"
        return f"{units} tokens"


# By (scope, subject): the budgets a tenant set through the admin API.
Stored = Mapping[tuple[str, str], Sequence[Budget]]


def nano(usd: Decimal, *, up: bool = False) -> int:
    """USD as whole nano-dollars: rounded up for a reservation, half-even (as the ledger) else."""
    return int((usd * NANO).to_integral_value(ROUND_CEILING if up else ROUND_HALF_EVEN))


def usd_of(units: int) -> Decimal:
    return (Decimal(units) / NANO).normalize() if units else Decimal(0)


def of_record(record: BudgetRecord, config: BudgetsConfig) -> Budget:
    amount = record.max_amount
    return Budget(
        id=record.id, tenant_id=record.tenant_id, scope=record.scope, subject=record.subject,
        unit=record.unit, limit=nano(amount) if record.unit == "usd" else int(amount),
        period=record.period, zone=zone(record.timezone or config.timezone),
        thresholds=tuple(record.thresholds if record.thresholds is not None else config.thresholds),
        downgrade_model=record.downgrade_model, downgrade_at=record.downgrade_at,
    )


# The entry keeps its config alive: the config's id is part of the key, and the id of a config
# that was freed (one replaced on a reload, or a test's) may be given to a new one, which would
# then be handed the budget built from the old one's thresholds and time zone.
_KEY_BUDGETS: dict[tuple[str, str, Decimal, str | None, int], tuple[BudgetsConfig, Budget]] = {}
_KEY_BUDGETS_MAX = 10_000


def key_subject(principal: Principal) -> str | None:
    """What a key's budgets are held under: its lineage, the first key id of its rotation chain,
    so a rotated key carries on with what its predecessors spent."""
    return principal.key_lineage or principal.key_id


def of_key(principal: Principal, config: BudgetsConfig) -> Budget | None:
    """The key's own budget (POST /admin/v1/keys ``max_budget_usd``, ``budget_period``), built
    once per key and kept (bounded): the request path asks on every call."""
    subject = key_subject(principal)
    if principal.max_budget_usd is None or subject is None or principal.tenant_id is None:
        return None
    cache_key = (subject, principal.tenant_id, principal.max_budget_usd, principal.budget_period, id(config))
    entry = _KEY_BUDGETS.get(cache_key)
    if entry is None or entry[0] is not config:
        if len(_KEY_BUDGETS) >= _KEY_BUDGETS_MAX:
            _KEY_BUDGETS.clear()
        entry = _KEY_BUDGETS[cache_key] = (config, _key_budget(principal, subject, config))
    return entry[1]


def _key_budget(principal: Principal, subject: str, config: BudgetsConfig) -> Budget:
    assert principal.tenant_id is not None and principal.max_budget_usd is not None
    return Budget(
        id=KEY_BUDGET_PREFIX + subject, tenant_id=principal.tenant_id, scope="key",
        subject=subject, unit="usd", limit=nano(principal.max_budget_usd),
        period=principal.budget_period or "total", zone=zone(config.timezone),
        thresholds=tuple(config.thresholds),
    )


def in_force(principal: Principal, stored: Stored, config: BudgetsConfig) -> list[Budget]:
    """Every budget that applies to ``principal``'s requests, broadest first."""
    tenant = principal.tenant_id
    if tenant is None:  # the master key: no tenant, no budget
        return []
    out: list[Budget] = []
    subjects = (("tenant", tenant), ("team", principal.team_id), ("user", principal.user_id),
                ("key", key_subject(principal)))
    for scope, subject in subjects:
        if subject is not None:
            out.extend(stored.get((scope, subject), ()))
    own = of_key(principal, config)
    if own is not None:
        out.append(own)
    return out
