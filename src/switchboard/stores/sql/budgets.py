"""Budgets set through the admin API, in SQL (revision 0007), and the alerts already fired.

One row per (tenant, scope, subject, unit, period). Amounts are whole numbers: nano-USD for a
USD budget (exact on every dialect), tokens for a token budget. The request path never reads
this table: the running budgets keep each tenant's rows in memory, told of changes by the feed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, BudgetRecord
from switchboard.stores.protocols.budgets import KEY_BUDGET_PREFIX, AlertsCutoff, SetAudited
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.tables import api_keys as keys
from switchboard.stores.sql.tables import budget_alerts as alerts
from switchboard.stores.sql.tables import budgets as t
from switchboard.stores.sql.times import from_db, to_db

NANO = Decimal(10**9)


def to_units(amount: Decimal, unit: str) -> int:
    """A budget's amount as the whole number stored: nano-USD (half to even), or tokens."""
    scaled = amount * NANO if unit == "usd" else amount
    return int(scaled.to_integral_value(ROUND_HALF_EVEN))


def from_units(units: int, unit: str) -> Decimal:
    return Decimal(units) / NANO if unit == "usd" else Decimal(units)


def _thresholds(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(p) for p in text.split(",") if p)


def _values(record: BudgetRecord) -> dict[str, Any]:
    """What a put writes besides the identity (tenant, scope, subject, unit, period)."""
    return {
        "max_units": to_units(record.max_amount, record.unit),
        "timezone": record.timezone,
        "thresholds": None if record.thresholds is None else ",".join(str(p) for p in record.thresholds),
        "downgrade_model": record.downgrade_model,
        "downgrade_at": record.downgrade_at,
        "updated_at": to_db(record.updated_at),
    }


def _settings(record: BudgetRecord) -> dict[str, Any]:
    """What a put may change, as stored (the amount in whole units): equal, the put is no change."""
    return {k: v for k, v in _values(record).items() if k != "updated_at"}


def _record(row: sa.Row[Any]) -> BudgetRecord:
    m = row._mapping
    created, updated = from_db(m["created_at"]), from_db(m["updated_at"])
    assert created is not None and updated is not None
    return BudgetRecord(
        id=m["id"], tenant_id=m["tenant_id"], scope=m["scope"], subject=m["subject"],
        max_amount=from_units(int(m["max_units"]), m["unit"]), unit=m["unit"], period=m["period"],
        timezone=m["timezone"], thresholds=_thresholds(m["thresholds"]),
        downgrade_model=m["downgrade_model"], downgrade_at=m["downgrade_at"], created_at=created,
        updated_at=updated, created_by=m["created_by"],
    )


# A key's own budget: its id is the prefix and the chain's lineage, its period its keys'
# budget_period. Its claims are those whose id starts with the prefix (compared as equal, not as a
# range, which a database collation may order punctuation in otherwise), its keys those of the
# lineage the id ends with, through ix_api_keys_lineage: the claims are read, never every key.
_own_claim = sa.func.substr(alerts.c.budget_id, 1, len(KEY_BUDGET_PREFIX)) == KEY_BUDGET_PREFIX
_claim_lineage = sa.func.substr(alerts.c.budget_id, len(KEY_BUDGET_PREFIX) + 1)
_own_period = sa.func.coalesce(keys.c.budget_period, "total")


def _may_spend(key: sa.FromClause, now: datetime) -> sa.ColumnElement[bool]:
    """Whether the key (a row of ``api_keys`` or of an alias of it) may spend at ``now``."""
    return sa.and_(key.c.enabled.is_(True), sa.or_(key.c.expires_at.is_(None), key.c.expires_at > to_db(now)))


def _spends(tenant: sa.ColumnElement[str], lineage: sa.ColumnElement[str], now: datetime) -> sa.Exists:
    """Whether a key of the chain (tenant, lineage) may spend at ``now``."""
    return (sa.select(keys.c.id)
            .where(keys.c.tenant_id == tenant, keys.c.lineage_id == lineage, _may_spend(keys, now))
            .exists())


def ended_chains_statement(now: datetime) -> sa.CompoundSelect:
    """(tenant, lineage) of the key chains with no key that may spend at ``now`` and budgets set
    on them (the key budgets through ``ix_budgets_scope``, never the others) or claims of their
    own budget (the keys of the claims' lineages through ``ix_api_keys_lineage``); each chain's
    keys through an index."""
    chain = keys.alias("chain")
    with_budgets = sa.select(t.c.tenant_id, t.c.subject).where(t.c.scope == "key",
                                                                ~_spends(t.c.tenant_id, t.c.subject, now))
    # Each claimed lineage once (a chain has a claim per threshold and period), its keys read once
    # and judged together: a join of the claims with the keys, checked per pair, read a chain's
    # keys again for each of its claims and keys.
    claimed = sa.select(_claim_lineage).where(_own_claim)
    with_claims = (sa.select(chain.c.tenant_id, chain.c.lineage_id)
                   .where(chain.c.lineage_id.in_(claimed))
                   .group_by(chain.c.tenant_id, chain.c.lineage_id)
                   .having(sa.func.max(sa.case((_may_spend(chain, now), 1), else_=0)) == 0))
    return sa.union(with_budgets, with_claims)  # each chain once
# The periods and zones of the budgets with claims, and of the keys' own budgets with claims.
_set_kinds = (sa.select(t.c.period, t.c.timezone)
              .where(t.c.id.in_(sa.select(alerts.c.budget_id))).distinct())
own_kinds = (sa.select(_own_period, sa.null())
             .select_from(alerts.join(keys, keys.c.lineage_id == _claim_lineage))
             .where(_own_claim).distinct())


def _zone_is(timezone: str | None) -> sa.ColumnElement[bool]:
    return t.c.timezone.is_(None) if timezone is None else t.c.timezone == timezone


def purge_statement(period: str, timezone: str | None, before: datetime) -> sa.Delete:
    """Delete the claims of periods starting before ``before`` of the budgets of ``period`` and
    ``timezone`` (None: the config's; the keys' own budgets are in it), by the period and zone
    each budget has now."""
    owned: list[sa.ColumnElement[bool]] = [
        alerts.c.budget_id.in_(sa.select(t.c.id).where(t.c.period == period, _zone_is(timezone)))]
    if timezone is None:
        of_period = sa.select(keys.c.id).where(keys.c.lineage_id == _claim_lineage, _own_period == period)
        owned.append(sa.and_(_own_claim, of_period.exists()))
    return sa.delete(alerts).where(sa.or_(*owned), alerts.c.period_start < to_db(before))


async def delete_in(conn: AsyncConnection, tenant_id: str, scope: str | None = None,
                    subject: str | None = None, *, budget_id: str | None = None,
                    audited: Callable[[BudgetRecord], AuditEntry] | None = None) -> list[BudgetRecord]:
    """``BudgetStore.delete_budgets`` in ``conn``'s transaction (a key's revoke ends its chain's
    budgets in its own: stores/sql/keys.py)."""
    where = [t.c.tenant_id == tenant_id]
    if budget_id is not None:
        where.append(t.c.id == budget_id)
    if scope is not None:
        where.append(t.c.scope == scope)
    if subject is not None:
        where.append(t.c.subject == subject)
    # RETURNING (PostgreSQL, SQLite 3.35+): what this statement deleted. Two callers deleting the
    # same budgets at once (a revoke and the look for expired key chains, or every instance's
    # look) each get only their own, so each budget's delete is audited once; a SELECT first
    # returned them to both on SQLite, which reads outside the transaction.
    found = [_record(row) for row in await conn.execute(sa.delete(t).where(*where).returning(*t.c))]
    if found:
        await conn.execute(sa.delete(alerts).where(alerts.c.budget_id.in_([r.id for r in found])))
    if audited is not None:
        for record in found:
            await append_in(conn, audited(record))  # a failing entry undoes the delete
    return found


class SqlBudgetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: BudgetRecord, *, audited: SetAudited | None = None
                  ) -> tuple[BudgetRecord, BudgetRecord | None]:
        try:
            return await self._put(record, audited)
        except IntegrityError:  # created by someone else meanwhile: now it is an update
            return await self._put(record, audited)

    async def _put(self, record: BudgetRecord, audited: SetAudited | None
                   ) -> tuple[BudgetRecord, BudgetRecord | None]:
        where = (t.c.tenant_id == record.tenant_id, t.c.scope == record.scope, t.c.subject == record.subject,
                 t.c.unit == record.unit, t.c.period == record.period)
        # What is stored, as it reads back (the amount rounded to whole units).
        amount = from_units(to_units(record.max_amount, record.unit), record.unit)
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(t).where(*where).with_for_update())).first()
            before = None if row is None else _record(row)
            if before is None:
                stored = record
                await conn.execute(sa.insert(t).values(
                    id=record.id, tenant_id=record.tenant_id, scope=record.scope, subject=record.subject,
                    unit=record.unit, period=record.period, created_at=to_db(record.created_at),
                    created_by=record.created_by, **_values(record),
                ))
            elif _settings(before) == _settings(record):
                return before, before  # the budget as it is already: nothing written (nor audited)
            else:
                stored = replace(record, id=before.id, created_at=before.created_at,
                                 created_by=before.created_by)
                await conn.execute(sa.update(t).where(t.c.id == before.id).values(**_values(record)))
            stored = replace(stored, max_amount=amount)
            if audited is not None:
                await append_in(conn, audited(stored, before))  # a failing entry undoes the write
        return stored, before

    async def get(self, tenant_id: str, budget_id: str) -> BudgetRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == budget_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def find(self, budget_id: str) -> BudgetRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.id == budget_id))).first()
        return None if row is None else _record(row)

    async def list_budgets(self, tenant_id: str) -> list[BudgetRecord]:
        query = (sa.select(t).where(t.c.tenant_id == tenant_id)
                 .order_by(t.c.scope, t.c.subject, t.c.unit, t.c.period))
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def delete(self, tenant_id: str, budget_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(t).where(t.c.tenant_id == tenant_id, t.c.id == budget_id))
            if not result.rowcount:
                return False
            await conn.execute(sa.delete(alerts).where(alerts.c.budget_id == budget_id))
        return True

    async def delete_budgets(self, tenant_id: str, scope: str | None = None, subject: str | None = None,
                             *, budget_id: str | None = None,
                             audited: Callable[[BudgetRecord], AuditEntry] | None = None
                             ) -> list[BudgetRecord]:
        async with self._engine.begin() as conn:
            return await delete_in(conn, tenant_id, scope, subject, budget_id=budget_id, audited=audited)

    async def forget_alerts(self, budget_id: str, limit: int, thresholds: Sequence[int]) -> None:
        other = sa.or_(alerts.c.max_units != limit, alerts.c.threshold.not_in(list(thresholds)))
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(alerts).where(alerts.c.budget_id == budget_id, other))

    async def release_alerts(self, budget_id: str) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(alerts).where(alerts.c.budget_id == budget_id))
        return result.rowcount

    async def purge_alerts(self, cutoff: AlertsCutoff) -> int:
        async with self._engine.connect() as conn:
            kinds = [*(await conn.execute(_set_kinds)), *(await conn.execute(own_kinds))]
        purged = 0
        for period, timezone in {(row[0], row[1]) for row in kinds}:
            before = cutoff(period, timezone)
            if before is None:
                continue
            # Each budget's claims by the period and zone it has now: a statement per kind, and
            # deleting what another instance deleted meanwhile deletes nothing.
            async with self._engine.begin() as conn:
                result = await conn.execute(purge_statement(period, timezone, before))
            purged += result.rowcount
        return purged

    async def ended_key_chains(self, now: datetime) -> list[tuple[str, str]]:
        async with self._engine.connect() as conn:
            return [(row.tenant_id, row.subject) for row in await conn.execute(ended_chains_statement(now))]

    async def claim_alert(self, budget_id: str, period_start: datetime, threshold: int, limit: int) -> bool:
        stmt = insert(self._engine, alerts).values(
            budget_id=budget_id, period_start=to_db(period_start), threshold=threshold, max_units=limit,
            fired_at=datetime.now(UTC),
        ).on_conflict_do_nothing()
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(stmt)
        except IntegrityError:  # claimed by another instance at the same instant
            return False
        return bool(result.rowcount)
