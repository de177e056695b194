"""Run-time routing overrides in SQL: one row per (group, deployment), e.g. its weight. The
request path never reads this table: routing/live.py loads it into the model table at start
and whenever the change feed's ``routing`` topic says it changed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import AuditEntry, RoutingOverride, SplitOverride, utcnow
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.tables import routing_overrides as t
from switchboard.stores.sql.tables import routing_splits as splits
from switchboard.stores.sql.times import from_db, to_db


def override_of(row: sa.Row[Any]) -> RoutingOverride:
    m = row._mapping
    updated = from_db(m["updated_at"])
    assert updated is not None
    return RoutingOverride(group=m["group_name"], deployment=m["deployment"], weight=m["weight"],
                           updated_at=updated)


# Every override and every split, as both this store and the provider store's ``load`` (with the
# model table, on its connection) read them.
OVERRIDES = sa.select(t).order_by(t.c.group_name, t.c.deployment)
SPLITS = sa.select(splits).order_by(splits.c.name)


class SqlRoutingStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def overrides(self) -> list[RoutingOverride]:
        async with self._engine.connect() as conn:
            return [override_of(row) for row in await conn.execute(OVERRIDES)]

    async def set_weight(self, group: str, deployment: str, weight: int | None, *,
                         audited: Callable[[RoutingOverride | None], AuditEntry] | None = None,
                         ) -> tuple[RoutingOverride | None, RoutingOverride | None]:
        where = (t.c.group_name == group, t.c.deployment == deployment)
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(t).where(*where).with_for_update())).first()
            before = None if row is None else override_of(row)
            if (None if before is None else before.weight) == weight:
                return before, before  # already so: nothing written (and nothing to audit)
            if audited is not None:
                await append_in(conn, audited(before))  # a failing entry undoes the change
            if weight is None:
                await conn.execute(sa.delete(t).where(*where))
                return None, before
            now = utcnow()
            stmt = insert(self._engine, t).values(group_name=group, deployment=deployment, weight=weight,
                                                 updated_at=to_db(now))
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[t.c.group_name, t.c.deployment],
                set_={"weight": weight, "updated_at": to_db(now)},
            ))
        return RoutingOverride(group, deployment, weight, now), before

    async def split_overrides(self) -> list[SplitOverride]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(SPLITS)
            return [split_of(row) for row in rows]

    async def set_split(self, name: str, percents: Mapping[str, float] | None, *,
                        audited: Callable[[SplitOverride | None], AuditEntry] | None = None,
                        ) -> tuple[SplitOverride | None, SplitOverride | None]:
        where = splits.c.name == name
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(splits).where(where).with_for_update())).first()
            before = None if row is None else split_of(row)
            if _percents(before) == (None if percents is None else dict(percents)):
                return before, before  # already so: nothing written (and nothing to audit)
            if audited is not None:
                await append_in(conn, audited(before))  # a failing entry undoes the change
            if percents is None:
                await conn.execute(sa.delete(splits).where(where))
                return None, before
            now = utcnow()
            values = {"percents": dict(percents), "updated_at": to_db(now)}
            stmt = insert(self._engine, splits).values(name=name, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=[splits.c.name], set_=values))
        return SplitOverride(name, dict(percents), now), before


def _percents(override: SplitOverride | None) -> dict[str, float] | None:
    return None if override is None else dict(override.percents)


def split_of(row: sa.Row[Any]) -> SplitOverride:
    m = row._mapping
    updated = from_db(m["updated_at"])
    assert updated is not None
    return SplitOverride(name=m["name"], percents=dict(m["percents"]), updated_at=updated)
