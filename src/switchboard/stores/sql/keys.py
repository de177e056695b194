"""API keys in SQL: looked up by hash on the request path, managed per tenant."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, BudgetRecord, KeyQuery, KeyRecord, User
from switchboard.stores.protocols.access import MUTABLE_KEY_FIELDS, ROTATED_TO, Revoked
from switchboard.stores.protocols.clock import utcnow
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.budgets import delete_in, from_units, to_units
from switchboard.stores.sql.dialect import insert
from switchboard.stores.sql.owners import of_team
from switchboard.stores.sql.tables import api_keys as t
from switchboard.stores.sql.tables import teams, tenants, users
from switchboard.stores.sql.times import from_db, to_db


def _nano(usd: Decimal | None) -> int | None:
    return None if usd is None else to_units(usd, "usd")


def _usd(nano: int | None) -> Decimal | None:
    return None if nano is None else from_units(int(nano), "usd")


def intersect(*policies: Iterable[str] | None) -> frozenset[str] | None:
    """The regions every policy allows; None policies allow anywhere (None: all are None)."""
    out: frozenset[str] | None = None
    for policy in policies:
        if policy is not None:
            out = frozenset(policy) if out is None else out & frozenset(policy)
    return out


def _row(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "key_hash": record.key_hash,
        "prefix": record.prefix,
        "tenant_id": record.tenant_id,
        "team_id": record.team_id,
        "user_id": record.user_id,
        "role": record.role,
        "allowed_models": None if record.allowed_models is None else list(record.allowed_models),
        "expires_at": to_db(record.expires_at),
        "enabled": record.enabled,
        "metadata": dict(record.metadata),
        "created_at": to_db(record.created_at),
        "name": record.name,
        "created_by": record.created_by,
        "last_used_at": to_db(record.last_used_at),
        "tags": list(record.tags),
        "service_account_id": record.service_account_id,
        "rpm_limit": record.rpm_limit,
        "tpm_limit": record.tpm_limit,
        "max_budget_nano_usd": _nano(record.max_budget_usd),
        "budget_period": record.budget_period,
        "allowed_regions": None if record.allowed_regions is None else list(record.allowed_regions),
        "mcp_tools": None if record.mcp_tools is None else dict(record.mcp_tools),
        "lineage_id": record.lineage,
        "blocked_by_role": record.blocked_by_role,
        "revision": record.revision,
        "updated_at": to_db(record.updated_at),
        "checked": record.checked,
    }


def _record(row: sa.Row[Any]) -> KeyRecord:
    m = row._mapping
    created = from_db(m["created_at"])
    assert created is not None
    return KeyRecord(
        id=m["id"],
        key_hash=m["key_hash"],
        prefix=m["prefix"],
        tenant_id=m["tenant_id"],
        team_id=m["team_id"],
        user_id=m["user_id"],
        role=m["role"],
        allowed_models=None if m["allowed_models"] is None else tuple(m["allowed_models"]),
        expires_at=from_db(m["expires_at"]),
        enabled=bool(m["enabled"]),
        metadata=m["metadata"] or {},
        created_at=created,
        name=m["name"],
        created_by=m["created_by"],
        last_used_at=from_db(m["last_used_at"]),
        tags=tuple(m["tags"] or ()),
        service_account_id=m["service_account_id"],
        rpm_limit=m["rpm_limit"],
        tpm_limit=m["tpm_limit"],
        max_budget_usd=_usd(m["max_budget_nano_usd"]),
        budget_period=m["budget_period"],
        allowed_regions=None if m["allowed_regions"] is None else tuple(m["allowed_regions"]),
        mcp_tools=m["mcp_tools"],
        # None for a key that is its own lineage, as the record was made (KeyRecord.lineage).
        lineage_id=None if m["lineage_id"] == m["id"] else m["lineage_id"],
        blocked_by_role=m["blocked_by_role"],
        revision=int(m["revision"]),
        updated_at=from_db(m["updated_at"]),
        checked=bool(m["checked"]),
    )


# Every write to a key's settings counts a revision (KeyRecord.revision): a write made from an
# older read compares it and fails.
_NEXT = {"revision": t.c.revision + 1}


def _live(tenant_id: str, lineage: str, now: datetime) -> sa.Select[Any]:
    """A key of the chain that may still authenticate at ``now`` (a blocked key counts)."""
    live = sa.or_(t.c.expires_at.is_(None), t.c.expires_at > to_db(now))
    return (sa.select(t.c.id).where(t.c.tenant_id == tenant_id, t.c.lineage_id == lineage,
                                    t.c.enabled.is_(True), live).limit(1))


def _disable(tenant_id: str, key_id: str) -> sa.Update:
    """Revoke the key: only one not revoked yet, so revoking it again writes nothing (its revoke
    time stays)."""
    return (sa.update(t).where(t.c.tenant_id == tenant_id, t.c.id == key_id, t.c.enabled.is_(True))
            .values(enabled=False, updated_at=to_db(utcnow()), **_NEXT))


async def follow_owner(conn: AsyncConnection, read: User, user: User, keys_above: Collection[str],
                       audited: Callable[[KeyRecord, KeyRecord], AuditEntry] | None = None) -> None:
    """In the owner's own transaction, the keys of the user (or service account) ``read``
    follow it to ``user``: those of its old team move to its new one, and those of a role in
    ``keys_above`` take its new role, each with ``audited``'s entry (a failing entry undoes the
    owner's change too). A write that fails midway leaves neither changed, and the admin's retry
    does both (a user demoted alone would keep keys of its former rank)."""
    follows = []
    if user.team_id != read.team_id:
        follows.append(t.c.team_id.is_not_distinct_from(read.team_id))
    if keys_above:
        follows.append(t.c.role.in_(sorted(keys_above)))
    if not follows:
        return
    owned = sa.or_(t.c.user_id == read.id, t.c.service_account_id == read.id)
    which = (t.c.tenant_id == read.tenant_id, owned, sa.or_(*follows))
    # Locked as read (PostgreSQL), so each entry's "before" is what the move changed.
    rows = await conn.execute(sa.select(t).where(*which).with_for_update())
    before = {row.id: _record(row) for row in rows}
    if not before:
        return
    team: sa.ColumnElement[Any] = t.c.team_id
    if user.team_id != read.team_id:
        team = sa.case((t.c.team_id.is_not_distinct_from(read.team_id), user.team_id), else_=t.c.team_id)
    role: sa.ColumnElement[Any] = t.c.role
    if keys_above:
        role = sa.case((t.c.role.in_(sorted(keys_above)), user.role), else_=t.c.role)
    # One write per key (one revision more), however many of its settings follow.
    stmt = (sa.update(t).where(*which, t.c.id.in_(sorted(before)))
            .values(team_id=team, role=role, updated_at=to_db(utcnow()), **_NEXT).returning(*t.c))
    for row in (await conn.execute(stmt)).fetchall():
        if audited is not None:
            await append_in(conn, audited(before[row.id], _record(row)))


class _OwnerGone(Exception):
    """Rolls back a key issued to an owner that was deleted meanwhile."""


class SqlKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: KeyRecord) -> None:
        row = _row(record)
        stmt = insert(self._engine, t).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.id],
            # last_used_at belongs to touch(): a put from an older read must not move it back.
            set_={k: stmt.excluded[k] for k in row if k not in ("id", "last_used_at")},
            # An id of another tenant is never taken over.
            where=t.c.tenant_id == stmt.excluded.tenant_id,
        )
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(stmt)
        except IntegrityError:
            raise ValueError(f"key hash of {record.id!r} is already another key's") from None
        if result.rowcount == 0:
            raise ValueError(f"key id {record.id!r} belongs to another tenant")

    async def issue(self, record: KeyRecord, owners: Collection[str] = ("tenant", "team", "user"), *,
                    audited: Sequence[AuditEntry] = ()) -> bool:
        """Insert a new key only while its ``owners`` exist (of "tenant", "team", "user": its
        tenant, team, user or service account, where it names one); False, nothing stored, when
        one does not. The row is written first, then each
        owner's row read (a shared lock on PostgreSQL): a delete of the owner under way (it locks
        the row for update first, stores/sql/tenancy.py) is waited for and then seen, and one
        that comes after waits for this transaction and then sees the key, which keeps the owner.
        SQLite runs one writer at a time: holding the write lock, the reads see every delete
        committed before. So no key is left live for an owner that is gone."""
        rows = []
        if "tenant" in owners:
            rows.append(sa.select(tenants.c.id).where(tenants.c.id == record.tenant_id))
        if "team" in owners and record.team_id is not None:
            rows.append(sa.select(teams.c.id).where(teams.c.id == record.team_id,
                                                    teams.c.tenant_id == record.tenant_id))
        for user_id in (record.user_id, record.service_account_id):
            if "user" in owners and user_id is not None:
                rows.append(sa.select(users.c.id).where(users.c.id == user_id,
                                                        users.c.tenant_id == record.tenant_id))
        try:
            async with self._engine.begin() as conn:
                try:
                    await conn.execute(sa.insert(t).values(_row(record)))
                except IntegrityError:
                    raise ValueError(f"key {record.id!r} or its hash is already another key's") from None
                for row in rows:
                    if (await conn.execute(row.with_for_update(read=True))).first() is None:
                        raise _OwnerGone
                for entry in audited:
                    await append_in(conn, entry)  # a failing entry undoes the key
        except _OwnerGone:
            return False
        return True

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        """The key, with ``effective_regions``: its tenant's, team's and own allowed regions."""
        query = (
            sa.select(t, tenants.c.allowed_regions.label("tenant_regions"),
                      teams.c.allowed_regions.label("team_regions"),
                      teams.c.mcp_tools.label("team_mcp_tools"))
            .select_from(t.outerjoin(tenants, tenants.c.id == t.c.tenant_id)
                         .outerjoin(teams, sa.and_(teams.c.id == t.c.team_id,
                                                   teams.c.tenant_id == t.c.tenant_id)))
            .where(t.c.key_hash == key_hash)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        record = _record(row)
        m = row._mapping
        regions = intersect(m["tenant_regions"], m["team_regions"], record.allowed_regions)
        return replace(record, effective_regions=regions, team_mcp_tools=m["team_mcp_tools"])

    async def get(self, tenant_id: str, key_id: str) -> KeyRecord | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == key_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def count_unchecked(self, now: datetime) -> int:
        # Through ix_api_keys_checked: only the keys from before the check are read.
        live = sa.or_(t.c.expires_at.is_(None), t.c.expires_at > to_db(now))
        query = sa.select(sa.func.count()).select_from(t).where(
            t.c.checked == sa.false(), t.c.enabled.is_(True), live)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def find(self, key_id: str) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.id == key_id))).first()
        return None if row is None else _record(row)

    async def list_keys(self, tenant_id: str) -> list[KeyRecord]:
        query = sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.created_at, t.c.id)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def page_keys(self, tenant_id: str, query: KeyQuery) -> list[KeyRecord]:
        found: list[KeyRecord] = []
        async with self._engine.connect() as conn:
            after: datetime | None = None
            if query.after is not None:
                # Within the caller's reach, as the page: a key out of it is an unknown cursor,
                # so a page after it does not tell that it exists.
                cursor = (await conn.execute(sa.select(t.c.created_at).where(
                    t.c.tenant_id == tenant_id, t.c.id == query.after, *_in_reach(query)))).first()
                if cursor is None:
                    raise ValueError("unknown cursor")
                after = cursor[0]
            stmt = page_statement(tenant_id, query, after)
            if query.tag is None:
                return [_record(row) for row in await conn.execute(stmt.limit(query.limit))]
            # Tags are a JSON list (no portable "contains"): read on until the page is full.
            rows = await conn.stream(stmt.execution_options(yield_per=500))
            async for row in rows:
                record = _record(row)
                if query.tag in record.tags:
                    found.append(record)
                    if len(found) >= query.limit:
                        break
            await rows.close()
        return found

    async def touch(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        stmt = (
            sa.update(t)
            .where(t.c.id == sa.bindparam("key_id"))
            .where(sa.or_(t.c.last_used_at.is_(None), t.c.last_used_at < sa.bindparam("used")))
            .values(last_used_at=sa.bindparam("used"))
        )
        rows = [{"key_id": key_id, "used": to_db(when)} for key_id, when in used.items()]
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def lineage_live(self, tenant_id: str, lineage: str, now: datetime) -> bool:
        async with self._engine.connect() as conn:
            return (await conn.execute(_live(tenant_id, lineage, now))).first() is not None

    async def revoke(self, tenant_id: str, key_id: str, now: datetime, *,
                     audited: Callable[[KeyRecord], AuditEntry],
                     budget_audited: Callable[[BudgetRecord], AuditEntry]) -> Revoked | None:
        lineage = (sa.select(t.c.lineage_id).where(t.c.tenant_id == tenant_id, t.c.id == key_id)
                   .scalar_subquery())
        async with self._engine.begin() as conn:
            # The chain's keys locked first, in one order (PostgreSQL): revokes of its last two
            # keys at once run one after the other, so the second sees the first and ends the chain.
            await conn.execute(sa.select(t.c.id).where(t.c.tenant_id == tenant_id, t.c.lineage_id == lineage)
                               .order_by(t.c.id).with_for_update())
            row = (await conn.execute(_disable(tenant_id, key_id).returning(*t.c))).first()
            if row is None:
                return None
            key = _record(row)
            await append_in(conn, audited(key))
            if (await conn.execute(_live(tenant_id, key.lineage, now))).first() is not None:
                return Revoked(key, False, [])
            # The chain's last key that could spend: the budgets set on it end with it.
            deleted = await delete_in(conn, tenant_id, "key", key.lineage, audited=budget_audited)
        return Revoked(key, True, deleted)

    async def update(self, record: KeyRecord, fields: Collection[str], *,
                     audited: AuditEntry | None = None) -> bool:
        unknown = set(fields) - MUTABLE_KEY_FIELDS
        if unknown:
            raise ValueError(f"not changeable on a key: {sorted(unknown)}")
        row = _row(record)
        # Compare-and-set on the revision read: a revoke, rotation, move or update since then
        # fails this WHERE (PostgreSQL re-checking it once the row is free), and so does a
        # revoked or rotated key whatever its revision: neither ever comes back.
        stmt = (
            sa.update(t)
            .where(t.c.tenant_id == record.tenant_id, t.c.id == record.id, t.c.revision == record.revision,
                   t.c.enabled.is_(True), t.c.metadata[ROTATED_TO].as_string().is_(None))
            .values({**{name: row[name] for name in fields}, "updated_at": row["updated_at"], **_NEXT})
        )
        async with self._engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return False
            if audited is not None:
                await append_in(conn, audited)  # a failing entry undoes the change
        return True

    async def rotate(self, old: KeyRecord, successor: KeyRecord, expires_at: datetime, *,
                     audited: Sequence[AuditEntry] = ()) -> bool:
        # Compare-and-set: the row is retired only while enabled and not rotated (a concurrent
        # revoke or rotation fails this WHERE, PostgreSQL re-checking it once the row is
        # free), and only the columns the rotation owns are written.
        retire = (
            sa.update(t)
            .where(t.c.tenant_id == old.tenant_id, t.c.id == old.id, t.c.revision == old.revision,
                   t.c.enabled.is_(True), t.c.blocked_by_role.is_(None),
                   t.c.metadata[ROTATED_TO].as_string().is_(None))
            .values(expires_at=to_db(expires_at), metadata={**old.metadata, ROTATED_TO: successor.id},
                    updated_at=to_db(successor.created_at), **_NEXT)
        )
        async with self._engine.begin() as conn:
            if (await conn.execute(retire)).rowcount != 1:
                return False
            await conn.execute(sa.insert(t).values(_row(successor)))
            for entry in audited:
                await append_in(conn, entry)  # a failing entry undoes the rotation
        return True

    async def reassign(self, tenant_id: str, key_id: str, team_id: str | None, role: str) -> bool:
        stmt = (sa.update(t).where(t.c.tenant_id == tenant_id, t.c.id == key_id)
                .values(team_id=team_id, role=role, updated_at=to_db(utcnow()), **_NEXT))
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)


def page_statement(tenant_id: str, query: KeyQuery, after: datetime | None) -> sa.Select[Any]:
    """A tenant's keys matching ``query`` in (created_at, id) order; with ``after`` (the creation
    time, as stored, of the cursor key ``query.after``) only those after the cursor."""
    stmt = sa.select(t).where(t.c.tenant_id == tenant_id, *_matching(query)).order_by(t.c.created_at, t.c.id)
    if query.after is not None and after is not None:
        # The plain bound first: it starts the (tenant_id, created_at, id) index scan at the
        # cursor (the OR alone does not), so a page reads a page, not every key before it.
        later = sa.or_(t.c.created_at > after, sa.and_(t.c.created_at == after, t.c.id > query.after))
        stmt = stmt.where(t.c.created_at >= after, later)
    return stmt


def _matching(query: KeyQuery) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    for column, value in ((t.c.team_id, query.team_id), (t.c.user_id, query.user_id),
                          (t.c.service_account_id, query.service_account_id)):
        if value is not None:
            where.append(column == value)
    if query.checked is not None:
        where.append(t.c.checked.is_(query.checked))
    return where + _in_reach(query)


def _in_reach(query: KeyQuery) -> list[sa.ColumnElement[bool]]:
    """The caller's reach (``team_scope``, ``owners``), not the filters it asked for."""
    where: list[sa.ColumnElement[bool]] = []
    if query.team_scope is not None:
        where.append(t.c.team_id == query.team_scope)
    if query.owners is not None:
        owners = list(query.owners)
        owned = sa.or_(t.c.user_id.in_(owners),
                       sa.and_(t.c.user_id.is_(None), t.c.service_account_id.in_(owners)))
        if query.owner_team is not None:  # a key reaches its user's keys of its own team only
            owned = sa.and_(owned, of_team(t.c.team_id, query.owner_team))
        where.append(sa.or_(owned, t.c.id.in_(owners)))
    return where
