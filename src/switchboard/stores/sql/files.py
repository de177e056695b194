"""Files and batches created through the gateway (``owned_objects``): one row per upstream object,
with its owner (tenant, key, team, user) and the upstream's object as last seen. The files API
answers a caller only from the rows it owns; the batch poller reads the batches not yet costed
(OpenAI batches, kind ``batch``, and Anthropic message batches, kind ``msgbatch``).

A deleted object of a listed kind stays as a tombstone (``deleted_at`` set) for
``TOMBSTONE_SECONDS``: its owner's list still takes its id as a cursor (a walk deleting each page
it reads goes on); every other read and write here passes over it (``live``), and a new object
of its id takes its row. The deletes purge the old ones of their kind (``_purge``), and the batch
poller's rounds those of every kind (``purge``), so a tenant that stops deleting keeps none."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import (
    BATCH,
    BATCH_MODELS,
    MESSAGE_BATCH_MODELS,
    TOMBSTONE_SECONDS,
    OwnedObject,
    utcnow,
)
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.tables import owned_objects as t
from switchboard.stores.sql.times import from_db, to_db

# Tombstones purged per delete: each delete adds one, so a backlog (a day of many deletes, then a
# quiet day) drains over the next deletes without one of them deleting it all in its transaction.
PURGE_BATCH = 100
# Tombstones purged per round of the batch poller (``purge``), for those no later delete purges.
POLL_PURGE_BATCH = 1000
# Not a tombstone: what every read and write but the list's cursor lookup sees.
live = t.c.deleted_at.is_(None)


def _record(row: sa.Row[Any]) -> OwnedObject:
    m = row._mapping
    created = from_db(m["created_at"])
    assert created is not None
    return OwnedObject(
        id=m["id"], kind=m["kind"], provider=m["provider"], tenant_id=m["tenant_id"], owner=m["owner"],
        key_id=m["key_id"], team_id=m["team_id"], user_id=m["user_id"], purpose=m["purpose"],
        status=m["status"], body=m["body"] or {}, created_at=created, costed=bool(m["costed"]),
    )


class SqlFileStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: OwnedObject) -> None:
        created = to_db(record.created_at)
        stmt = insert(self._engine, t).values(
            kind=record.kind, id=record.id, provider=record.provider, tenant_id=record.tenant_id,
            owner=record.owner, key_id=record.key_id, team_id=record.team_id, user_id=record.user_id,
            purpose=record.purpose, status=record.status, body=dict(record.body), created_at=created,
            seen_at=created, costed=record.costed,
        )
        # A live object of that id stays as it was; a tombstone's row is the new object's.
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.kind, t.c.id], where=t.c.deleted_at.isnot(None),
            set_={name: stmt.excluded[name] for name in (
                "provider", "tenant_id", "owner", "key_id", "team_id", "user_id", "purpose", "status",
                "body", "created_at", "seen_at", "costed", "deleted_at")})
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, kind: str, object_id: str) -> OwnedObject | None:
        query = sa.select(t).where(t.c.kind == kind, t.c.id == object_id, live)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def list_owned(self, kind: str, tenant_id: str, owner: str, *, after: str | None = None,
                         limit: int = 20, purpose: str | None = None,
                         newest_first: bool = True) -> list[OwnedObject]:
        async with self._engine.connect() as conn:
            at: datetime | None = None
            if after is not None:
                # Deleted or not (a tombstone keeps its place), but only the owner's own.
                cursor = (await conn.execute(sa.select(t.c.created_at).where(
                    t.c.kind == kind, t.c.id == after, t.c.tenant_id == tenant_id, t.c.owner == owner,
                ))).first()
                if cursor is None:
                    raise ValueError("unknown cursor")
                at = cursor[0]
            query = list_statement(kind, tenant_id, owner, purpose, newest_first, after, at).limit(limit)
            return [_record(row) for row in await conn.execute(query)]

    async def update(self, kind: str, object_id: str, body: Mapping[str, Any], status: str | None) -> None:
        stmt = sa.update(t).where(t.c.kind == kind, t.c.id == object_id, live).values(
            body=dict(body), status=status, seen_at=to_db(utcnow()))
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def delete(self, kind: str, object_id: str) -> bool:
        now = utcnow()
        where = (t.c.kind == kind, t.c.id == object_id, live)
        if kind in (MESSAGE_BATCH_MODELS, BATCH_MODELS):  # never listed, so never a cursor: gone at once
            stmt: sa.Delete | sa.Update = sa.delete(t).where(*where)
        else:  # its body too: a tombstone keeps only its place in the list
            stmt = sa.update(t).where(*where).values(deleted_at=to_db(now), body={}, status=None)
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
            await conn.execute(_purge(kind, now))
        return bool(result.rowcount)

    async def purge(self, now: datetime, limit: int = POLL_PURGE_BATCH) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(_purge(None, now, limit))
        return int(result.rowcount or 0)

    async def open_batches(self, limit: int, kind: str = BATCH) -> list[OwnedObject]:
        query = (sa.select(t).where(t.c.kind == kind, t.c.costed == sa.false(), live)
                 .order_by(t.c.seen_at, t.c.id).limit(limit))
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def mark_costed(self, object_id: str, kind: str = BATCH) -> bool:
        stmt = (sa.update(t).where(t.c.kind == kind, t.c.id == object_id, t.c.costed == sa.false(), live)
                .values(costed=True, seen_at=to_db(utcnow())))
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)


    async def unpriced_batch_of_output(self, tenant_id: str, owner: str, file_id: str) -> OwnedObject | None:
        # The owner's open batches only (few): read from ix_owned_objects_owner.
        query = sa.select(t).where(
            t.c.kind == BATCH, t.c.tenant_id == tenant_id, t.c.owner == owner, t.c.costed == sa.false(), live,
            t.c.body["output_file_id"].as_string() == file_id,
        ).limit(1)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)


def _purge(kind: str | None, now: datetime, limit: int = PURGE_BATCH) -> sa.Delete:
    """The oldest ``limit`` tombstones of ``kind`` (None: of every kind) past
    ``TOMBSTONE_SECONDS`` (read from ``ix_owned_objects_deleted``, which holds the tombstones
    alone, so even the scan over every kind reads tombstones only)."""
    cutoff = to_db(now - timedelta(seconds=TOMBSTONE_SECONDS))
    where = [t.c.deleted_at.isnot(None), t.c.deleted_at < cutoff]
    if kind is not None:
        where.append(t.c.kind == kind)
    expired = sa.select(t.c.kind, t.c.id).where(*where).order_by(t.c.deleted_at).limit(limit)
    return sa.delete(t).where(sa.tuple_(t.c.kind, t.c.id).in_(expired))


def list_statement(kind: str, tenant_id: str, owner: str, purpose: str | None, newest_first: bool,
                   after: str | None, at: datetime | None) -> sa.Select[Any]:
    """An owner's objects of ``kind`` in (created_at, id) order; with ``after`` (its creation
    time, as stored, ``at``) only those after that cursor."""
    where = [t.c.kind == kind, t.c.tenant_id == tenant_id, t.c.owner == owner, live]
    if purpose is not None:
        where.append(t.c.purpose == purpose)
    if after is not None and at is not None:
        # The plain bound first: it starts the (kind, tenant_id, owner, created_at) index scan at
        # the cursor (the OR alone does not), so a later page reads a page, not every object
        # before it.
        if newest_first:
            where += [t.c.created_at <= at,
                      sa.or_(t.c.created_at < at, sa.and_(t.c.created_at == at, t.c.id < after))]
        else:
            where += [t.c.created_at >= at,
                      sa.or_(t.c.created_at > at, sa.and_(t.c.created_at == at, t.c.id > after))]
    order = ((t.c.created_at.desc(), t.c.id.desc()) if newest_first
             else (t.c.created_at.asc(), t.c.id.asc()))
    return sa.select(t).where(*where).order_by(*order)
