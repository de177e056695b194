"""``/admin/v1/budgets``: budgets in USD or in tokens for a tenant, a team, a user or a key, per
day, week, month or in total (docs/budgets.md). Keys may also carry their own
(``max_budget_usd``, ``budget_period`` on ``POST /admin/v1/keys``).

``PUT /admin/v1/budgets`` sets the budget of one (scope, subject, unit, period), replacing what
was set before; ``GET`` lists or reads them, each with its live status when the gateway runs
budgets; ``DELETE /admin/v1/budgets/{id}`` removes one. Every change is audited and published,
so every instance applies it at once. Tenant admins manage their tenant's budgets; every role
may read them; a record of another tenant answers 404 ``budget_not_found``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

from switchboard.access.roles import Reach
from switchboard.config.schema import check_timezone
from switchboard.errors import InvalidRequest, NotFound
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.query import query_params
from switchboard.http.admin.scoping import (
    TenantQuery,
    key_not_above,
    new_id,
    scoped_subject,
    tenant_in_reach,
)
from switchboard.observability.alerts.evaluator import Alerts
from switchboard.spend.budgets.plan import KEY_BUDGET_PREFIX
from switchboard.spend.budgets.service import BudgetService
from switchboard.stores import Stores
from switchboard.stores.protocols import (
    BUDGET_PERIODS,
    BUDGET_SCOPES,
    BUDGET_UNITS,
    AuditEntry,
    BudgetRecord,
    KeyRecord,
)

router = APIRouter(prefix="/admin/v1/budgets", tags=["budgets"])
log = logging.getLogger("switchboard.admin")

# Beyond these a budget is a typo, not a policy.
MAX_USD = Decimal(10**9)
MAX_TOKENS = 10**15
NANO = Decimal("0.000000001")  # the smallest USD amount counted
STATUS_CONCURRENCY = 8  # statuses read at once for a list
Amount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Percent = Annotated[StrictInt, Field(ge=1, le=100)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Zone = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Scope = Literal["tenant", "team", "user", "key"]
Unit = Literal["usd", "tokens"]
Period = Literal["daily", "weekly", "monthly", "total"]


def check_usd(amount: Decimal) -> Decimal:
    """A USD budget counts whole nano-USD: an amount that rounds to none is no budget."""
    if amount < NANO:
        raise ValueError("must be at least 0.000000001 (one nano-USD)")
    return amount


def quantize_usd(amount: Decimal) -> Decimal:
    """The amount as counted: whole nano-USD, half to even."""
    return amount.quantize(NANO, ROUND_HALF_EVEN)


# A key's own budget (POST /admin/v1/keys max_budget_usd).
UsdAmount = Annotated[Decimal, Field(gt=0, le=MAX_USD, allow_inf_nan=False), AfterValidator(check_usd)]


class Downgrade(AdminBody):
    model_config = ConfigDict(extra="forbid")

    model: Subject = Field(description="The model calls go to past `at_percent` of the budget.")
    at_percent: Percent


class BudgetSet(AdminBody):
    model_config = ConfigDict(extra="forbid")

    scope: Scope
    subject: Subject | None = Field(
        default=None, description="The team, user or key id; `tenant`: the tenant (default)."
    )
    unit: Unit = "usd"
    max_amount: Amount = Field(description="USD (at most 1e9), or tokens (a whole number, at most 1e15).")
    period: Period = "monthly"
    timezone: Zone | None = Field(default=None, description="IANA name; default: budgets.timezone.")
    thresholds: Annotated[list[Percent], Field(max_length=10)] | None = Field(
        default=None, description="Percents that fire the webhook; default: budgets.thresholds."
    )
    downgrade: Downgrade | None = None
    tenant: Ident | None = Field(default=None, description="Another tenant (platform admin only).")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("thresholds")
    @classmethod
    def _unique(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each percent at most once")
        return None if value is None else sorted(value)


def amount_json(amount: Decimal, unit: str) -> int | float:
    """USD as a JSON number (a float), tokens as an integer."""
    return int(amount) if unit == "tokens" else float(amount)


def public(record: BudgetRecord) -> dict[str, Any]:
    """The budget as set (audit entries hold this; answers add the live ``status``)."""
    downgrade = None
    if record.downgrade_model is not None:
        downgrade = {"model": record.downgrade_model, "at_percent": record.downgrade_at}
    return {
        "id": record.id,
        "object": "budget",
        "tenant": record.tenant_id,
        "scope": record.scope,
        "subject": record.subject,
        "unit": record.unit,
        "max_amount": amount_json(record.max_amount, record.unit),
        "period": record.period,
        "timezone": record.timezone,
        "thresholds": None if record.thresholds is None else list(record.thresholds),
        "downgrade": downgrade,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "created_by": record.created_by,
    }


async def shown(request: Request, record: BudgetRecord, unanswered: asyncio.Event | None = None,
                *, alert: bool = False) -> dict[str, Any]:
    """The budget and its current period's status: null when budgets are not running, or when
    the counters cannot be read right now or in time (the budget itself is read from the
    database). ``unanswered``, shared by the budgets of one answer, is set at the first read that
    timed out: the others are then null at once, so a hung Redis costs a list one bound.
    ``alert``: the budget was just changed; alert on the thresholds of its new amount that its
    spend is at or past already (docs/budgets.md, "Threshold webhooks")."""
    service = request.app.state.services.budgets()
    status = None
    if service is not None and not (unanswered is not None and unanswered.is_set()):
        try:
            status = await service.status(record, alert=alert)
        except TimeoutError:
            log.warning("budget %s: no status (the counters did not answer in time)", record.id)
            if unanswered is not None:
                unanswered.set()
        except Exception as exc:
            log.warning("budget %s: no status (%s)", record.id, type(exc).__name__)
    return {**public(record), "status": status}


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.services.stores()
    assert stores.budgets is not None
    return stores


async def _changed(request: Request, tenant: str) -> None:
    service = request.app.state.services.budgets()
    if service is not None:
        await service.changed(tenant)


def _thresholds(request: Request, record: BudgetRecord) -> tuple[int, ...]:
    """The percents the budget alerts at: its own, or budgets.thresholds."""
    if record.thresholds is not None:
        return record.thresholds
    return tuple(request.app.state.services.settings.budgets.thresholds)


async def _ended(request: Request, record: BudgetRecord) -> None:
    """The budget's open alert incidents at an amount or a threshold no longer in force resolved:
    no period's end would resolve a total budget's, and no crossing would at a threshold dropped.
    (A deleted budget's all are, by ``_deleted``.)"""
    alerts = request.app.state.services.alerts()
    if alerts is not None:
        await alerts.budget_ended(record.id, record.unit, record.max_amount, _thresholds(request, record))


async def _forget_alerts(request: Request, record: BudgetRecord) -> None:
    """Its incidents at another amount or threshold resolved, their claims go too: set back, the
    budget alerts again once its spend is past a threshold. Logged, not raised, on failure."""
    service = request.app.state.services.budgets()
    if service is None:
        return
    try:
        await service.forget_alerts(record)
    except Exception as exc:
        log.warning("budget %s: its past alerts not forgotten (%s)", record.id, type(exc).__name__)


def _deletes_audited(request: Request, tenant: str) -> Callable[[BudgetRecord], AuditEntry]:
    """The ``budget.delete`` entry of a budget the caller's request deletes."""

    def audited(record: BudgetRecord) -> AuditEntry:
        return audit.entry(request, "budget.delete", "budget", record.id, before=public(record),
                           tenant=tenant)

    return audited


async def delete_with(request: Request, tenant: str, budget_id: str) -> list[BudgetRecord]:
    """Delete the budget ``budget_id`` names, audited as ``budget.delete`` by the caller in the
    delete's transaction, its open alert incidents resolved. Returns it (none: not there)."""
    services = request.app.state.services
    return await _deleted(services.stores(), services.budgets(), services.alerts(), tenant, None, None,
                          budget_id, (), _deletes_audited(request, tenant))


async def delete_tenant_with(request: Request, tenant: str, audited: AuditEntry) -> bool:
    """Delete the (empty) tenant, audited by ``audited``, and its budgets, each audited as
    ``budget.delete``, in one transaction (an audit entry the database does not take leaves all
    of them as they were); then their open alert incidents resolved. False: not deleted (gone,
    or not empty)."""
    services = request.app.state.services
    stores = services.stores()
    deleted = await stores.tenancy.delete_tenant(tenant, audited=audited,
                                                 budget_audited=_deletes_audited(request, tenant))
    if deleted is None:
        return False
    await _gone(stores, services.budgets(), services.alerts(), tenant, deleted, ())
    return True


async def _deleted(stores: Stores, service: BudgetService | None, alerts: Alerts | None, tenant: str,
                   scope: str | None, subject: str | None, budget_id: str | None, also: tuple[str, ...],
                   audited: Callable[[BudgetRecord], AuditEntry]) -> list[BudgetRecord]:
    """The budgets deleted with their audit entries (one transaction: both or neither), then
    ``_gone``."""
    deleted = [] if stores.budgets is None else await stores.budgets.delete_budgets(
        tenant, scope, subject, budget_id=budget_id, audited=audited)
    await _gone(stores, service, alerts, tenant, deleted, also)
    return deleted


async def _gone(stores: Stores, service: BudgetService | None, alerts: Alerts | None, tenant: str,
                deleted: list[BudgetRecord], also: tuple[str, ...]) -> None:
    """Budgets deleted: every instance told, the claims of those ``also`` names forgotten
    (nothing would forget a total budget's), and the incidents of all of them resolved."""
    if deleted and service is not None:
        await service.changed(tenant)
    for own in also:
        await _release(stores, service, own)
    if alerts is not None:
        await alerts.budgets_deleted((*also, *(r.id for r in deleted)))


async def revoke_with(request: Request, record: KeyRecord, audited: Callable[[KeyRecord], AuditEntry]
                      ) -> KeyRecord | None:
    """Revoke the key, audited by ``audited``; when it was its rotation chain's last key that
    could spend (a rotated key's successor, or its predecessor in its grace period, carries them
    on otherwise), the chain's budgets end with it: those set on it deleted, each audited as
    ``budget.delete``, in the revoke's transaction (an audit entry the database does not take
    leaves the key and its budgets as they were); then its own budget's claims forgotten and the
    incidents of all of them resolved. The key as revoked; None when it was revoked already."""
    services = request.app.state.services
    stores, tenant = services.stores(), record.tenant_id
    revoked = await stores.keys.revoke(tenant, record.id, datetime.now(UTC), audited=audited,
                                       budget_audited=_deletes_audited(request, tenant))
    if revoked is None:
        return None
    if revoked.chain_ended:
        await _gone(stores, services.budgets(), services.alerts(), tenant, revoked.deleted,
                    (KEY_BUDGET_PREFIX + revoked.key.lineage,))
    return revoked.key


async def _release(stores: Stores, service: BudgetService | None, budget_id: str) -> None:
    """Forget every threshold claim of ``budget_id``: through the running budgets, which tell
    every instance; in the database alone when budgets are not running here."""
    if service is not None:
        await service.release_alerts(budget_id)
    elif stores.budgets is not None:
        await stores.budgets.release_alerts(budget_id)


async def end_chain(stores: Stores, service: BudgetService | None, alerts: Alerts | None, tenant: str,
                    lineage: str) -> None:
    """What revoking a key chain's last key does to its budgets, for a chain whose keys all
    expired (spend/budgets/chains.py finds it): those set on it deleted, each audited as
    ``budget.delete`` by the system, its own budget's claims forgotten, their incidents and its
    own budget's resolved."""

    def audited(record: BudgetRecord) -> AuditEntry:
        return audit.system_entry("budget.delete", "budget", record.id, before=public(record), tenant=tenant)

    await _deleted(stores, service, alerts, tenant, "key", lineage, None, (KEY_BUDGET_PREFIX + lineage,),
                   audited)


async def chain_back(request: Request, lineage: str) -> None:
    """A key chain no key of which could spend was brought back (an expired key's ``expires_at``
    pushed back): its own budget's threshold claims are forgotten, here and on every instance,
    whatever sent them (the budgets webhook, an alert rule), so it alerts again at each threshold
    its spend is past as it spends. Logged, not raised, on failure: the key is changed already."""
    service = request.app.state.services.budgets()
    if service is None:
        return
    try:
        await service.release_alerts(KEY_BUDGET_PREFIX + lineage)
    except Exception as exc:
        log.warning("key chain %s brought back: its own budget's past alerts not forgotten (%s)", lineage,
                    type(exc).__name__)


def _amount(body: BudgetSet) -> Decimal:
    def bad(message: str) -> InvalidRequest:
        return InvalidRequest(f"max_amount: {message}", param="max_amount", code="invalid_value")

    if body.unit == "usd":
        if body.max_amount > MAX_USD:
            raise bad(f"a USD budget is at most {MAX_USD}")
        try:
            return quantize_usd(check_usd(body.max_amount))
        except ValueError as exc:
            raise bad(str(exc)) from None
    if body.max_amount != body.max_amount.to_integral_value():
        raise bad("a token budget is a whole number of tokens")
    if body.max_amount > MAX_TOKENS:
        raise bad(f"a token budget is at most {MAX_TOKENS}")
    return Decimal(int(body.max_amount))


async def _subject(access: Access, body: BudgetSet, tenant: str, stores: Stores) -> str:
    subject = await scoped_subject(stores, tenant, body.scope, body.subject, "budget")
    if body.scope == "key":
        key = await stores.keys.get(tenant, subject)
        if key is None or not key.enabled:  # a revoked key spends nothing more
            raise NotFound(f"no key with id '{subject[:64]}'", code="key_not_found")
        key_not_above(access, key)
        return key.lineage  # held for the whole rotation chain: a rotated key keeps it
    return subject


async def _in_reach(access: Access, stores: Stores, budget_id: str) -> BudgetRecord:
    assert stores.budgets is not None
    if access.reach >= Reach.ANY:
        record = await stores.budgets.find(budget_id)
    else:
        record = await stores.budgets.get(access.tenant, budget_id)
    if record is None or not access.sees(record.tenant_id):
        raise NotFound(f"no budget with id '{budget_id[:64]}'", code="budget_not_found")
    return record


@router.put("", summary="Set the budget of a tenant, team, user or key (replaces the same one)")
async def set_budget(
    body: BudgetSet, request: Request, access: Annotated[Access, Depends(allow("budget", "set"))]
) -> dict[str, Any]:
    stores = _stores(request)
    assert stores.budgets is not None
    amount = _amount(body)
    routing = request.app.state.services.routing
    cheaper = None if body.downgrade is None else body.downgrade.model
    if cheaper is not None and routing is not None and cheaper not in routing.current.routes:
        raise InvalidRequest(f"downgrade.model: no model '{cheaper[:256]}' is served",
                             param="downgrade.model", code="model_not_found")
    tenant = access.tenant_for(body.tenant)
    platform = access.reach >= Reach.ANY
    if platform and tenant != access.tenant and await stores.tenancy.get_tenant(tenant) is None:
        raise NotFound(f"no tenant '{tenant[:64]}'", code="tenant_not_found")
    now = datetime.now(UTC)
    record = BudgetRecord(
        id=new_id("bud"), tenant_id=tenant, scope=body.scope,
        subject=await _subject(access, body, tenant, stores),
        max_amount=amount, unit=body.unit, period=body.period, timezone=body.timezone,
        thresholds=None if body.thresholds is None else tuple(body.thresholds),
        downgrade_model=None if body.downgrade is None else body.downgrade.model,
        downgrade_at=None if body.downgrade is None else body.downgrade.at_percent,
        created_at=now, updated_at=now, created_by=access.principal.id,
    )
    def audited(stored: BudgetRecord, before: BudgetRecord | None) -> AuditEntry:
        return audit.entry(request, "budget.set", "budget", stored.id, after=public(stored), tenant=tenant,
                           before=None if before is None else public(before))

    # Written and audited in one transaction: an error answered means nothing changed.
    stored, before = await stores.budgets.put(record, audited=audited)
    if stored is before:  # the budget as it is already: nothing written, published or audited
        return await shown(request, stored)
    await _changed(request, tenant)
    if before is not None and ((before.max_amount, before.unit) != (stored.max_amount, stored.unit)
                               or not set(_thresholds(request, stored)) >= set(_thresholds(request, before))):
        await _ended(request, stored)
        await _forget_alerts(request, stored)
    return await shown(request, stored, alert=True)


@router.get("", summary="The budgets set for a tenant")
async def list_budgets(
    request: Request,
    access: Annotated[Access, Depends(allow("budget", "read"))],
    tenant: TenantQuery = None,
    scope: Annotated[Scope | None, Query()] = None,
) -> dict[str, Any]:
    query_params(request, ("tenant", "scope"))  # a misspelt or repeated filter is a 400, not ignored
    stores = _stores(request)
    assert stores.budgets is not None
    records = await stores.budgets.list_budgets(await tenant_in_reach(access, stores, tenant))
    wanted = [r for r in records if scope is None or r.scope == scope]
    # Each status may rebuild a counter from the ledger: a few at a time, not the whole list.
    gate = asyncio.Semaphore(STATUS_CONCURRENCY)
    unanswered = asyncio.Event()

    async def one(record: BudgetRecord) -> dict[str, Any]:
        async with gate:
            return await shown(request, record, unanswered)

    return {"object": "list", "data": list(await asyncio.gather(*(one(r) for r in wanted)))}


@router.get("/{budget_id}", summary="One budget and its current period")
async def get_budget(
    budget_id: str, request: Request, access: Annotated[Access, Depends(allow("budget", "read"))]
) -> dict[str, Any]:
    query_params(request, ())  # misspelt or repeated: a 400, never ignored
    return await shown(request, await _in_reach(access, _stores(request), budget_id))


@router.delete("/{budget_id}", summary="Remove a budget")
async def delete_budget(
    budget_id: str, request: Request, access: Annotated[Access, Depends(allow("budget", "delete"))]
) -> dict[str, Any]:
    stores = _stores(request)
    assert stores.budgets is not None
    record = await _in_reach(access, stores, budget_id)
    if record.scope == "key":  # subject: the key's lineage, the id of the first key of its chain
        key_not_above(access, await stores.keys.get(record.tenant_id, record.subject))
    # Deleted and audited in one transaction, as with a revoked key chain or a deleted tenant:
    # an audit entry the database does not take leaves the budget in place.
    if not await delete_with(request, record.tenant_id, budget_id):
        raise NotFound(f"no budget with id '{budget_id[:64]}'", code="budget_not_found")
    return {"id": budget_id, "object": "budget", "deleted": True}


assert set(BUDGET_SCOPES) == {"tenant", "team", "user", "key"}
assert set(BUDGET_PERIODS) == {"daily", "weekly", "monthly", "total"}
assert set(BUDGET_UNITS) == {"usd", "tokens"}
