"""Tenants, teams and users (people and service accounts) in SQL.

Every team and user query is scoped by tenant; ``find_team``/``find_user`` look across tenants
and are for the platform admin only. Lists are ordered by id and paged by the last id seen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchboard.stores.protocols import AuditEntry, BudgetRecord, KeyRecord, Team, Tenant, User, UserQuery
from switchboard.stores.protocols.clock import utcnow
from switchboard.stores.protocols.tenancy import TenantIdRetired
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.budgets import delete_in
from switchboard.stores.sql.keys import follow_owner
from switchboard.stores.sql.tables import api_keys, retired_tenants, teams, tenants, users
from switchboard.stores.sql.times import from_db, to_db

_FIXED = frozenset({"id", "tenant_id", "created_at", "created_by"})  # never changed by an update


def _row(record: Tenant | Team | User) -> dict[str, Any]:
    row = asdict(record)
    row["created_at"] = to_db(record.created_at)
    return row


def _values(row: sa.Row[Any]) -> dict[str, Any]:
    values = dict(row._mapping)
    values["created_at"] = from_db(values["created_at"])
    return values


async def _append(conn: AsyncConnection, audited: AuditEntry | None) -> None:
    """The change's audit entry, in its transaction: a failing entry undoes the change."""
    if audited is not None:
        await append_in(conn, audited)


class SqlTenancyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _insert(self, table: sa.Table, record: Tenant | Team | User, *,
                      owner: sa.Select[Any] | None = None, audited: AuditEntry | None = None) -> bool:
        """Insert the record; with ``owner`` (a row it belongs to, read FOR SHARE after the
        insert), nothing is stored and False returned when that row is gone (:func:`_owner_held`).
        ``audited`` is appended in the same transaction."""
        try:
            async with self._engine.begin() as conn:
                try:
                    await conn.execute(sa.insert(table).values(_row(record)))
                except IntegrityError:
                    raise ValueError(f"the id {record.id!r} is taken") from None
                if owner is not None and (await conn.execute(owner)).first() is None:
                    raise _OwnerGone  # rolls the insert back
                await _append(conn, audited)
        except _OwnerGone:
            return False
        return True

    async def _one(self, query: sa.Select[Any]) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _values(row)

    async def _many(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            return [_values(row) for row in await conn.execute(query)]

    async def _update(self, table: sa.Table, record: Tenant | Team | User, fields: Collection[str] | None,
                      *where: Any, owner: sa.Select[Any] | None = None,
                      then: Callable[[AsyncConnection], Awaitable[None]] | None = None,
                      audited: Callable[[dict[str, Any]], AuditEntry] | None = None) -> dict[str, Any] | None:
        """Write only ``fields`` (every changeable column when None) and return the row as it
        is now: two admins changing different fields at once both keep their change, where
        writing the whole record read before would put back the other's old value. With
        ``owner`` (a row the record now belongs to, read FOR SHARE), nothing is written and None
        returned when that row is gone: see :func:`_owner_held`. ``then``: run in the same
        transaction once the row is written (a user's keys following it); ``audited``'s entry,
        from the row as written, too."""
        row = _row(record)
        names = set(row) - _FIXED if fields is None else set(fields)
        if names & _FIXED or names - set(row):
            raise ValueError(f"not changeable: {sorted(names & _FIXED | (names - set(row)))}")
        stmt = (sa.update(table).where(table.c.id == record.id, *where)
                .values({name: row[name] for name in names}).returning(*table.c))
        try:
            async with self._engine.begin() as conn:
                found = (await conn.execute(stmt)).first()
                if found is not None and owner is not None and (await conn.execute(owner)).first() is None:
                    raise _OwnerGone  # rolls the write back
                if found is not None:
                    if then is not None:
                        await then(conn)
                    if audited is not None:
                        await _append(conn, audited(_values(found)))
        except _OwnerGone:
            return None
        return None if found is None else _values(found)

    async def _delete(self, table: sa.Table, *where: Any, audited: AuditEntry | None = None) -> bool:
        async with self._engine.begin() as conn:
            await _lock(conn, table, *where)
            if not (await conn.execute(sa.delete(table).where(*where))).rowcount:
                return False
            await _append(conn, audited)
        return True

    @staticmethod
    def _page(query: sa.Select[Any], table: sa.Table, after: str | None, limit: int) -> sa.Select[Any]:
        if after is not None:
            query = query.where(table.c.id > after)
        return query.order_by(table.c.id).limit(limit)

    # tenants

    async def create_tenant(self, tenant: Tenant, *, audited: AuditEntry | None = None) -> None:
        # A deleted tenant's id is never reused: its data is still filed under it.
        retired = sa.select(retired_tenants.c.id).where(retired_tenants.c.id == tenant.id)
        async with self._engine.begin() as conn:
            if (await conn.execute(retired)).first() is not None:
                raise TenantIdRetired(tenant.id)
            try:
                await conn.execute(sa.insert(tenants).values(_row(tenant)))
            except IntegrityError:
                raise ValueError(f"the id {tenant.id!r} is taken") from None
            await _append(conn, audited)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        found = await self._one(sa.select(tenants).where(tenants.c.id == tenant_id))
        return None if found is None else Tenant(**found)

    async def tenant_retired(self, tenant_id: str) -> bool:
        query = sa.select(retired_tenants.c.id).where(retired_tenants.c.id == tenant_id)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def list_tenants(self, *, after: str | None = None, limit: int = 100) -> list[Tenant]:
        query = self._page(sa.select(tenants), tenants, after, limit)
        return [Tenant(**found) for found in await self._many(query)]

    async def update_tenant(self, tenant: Tenant, fields: Collection[str] | None = None, *,
                            audited: Callable[[Tenant], AuditEntry] | None = None) -> Tenant | None:
        found = await self._update(tenants, tenant, fields,
                                   audited=None if audited is None else lambda row: audited(Tenant(**row)))
        return None if found is None else Tenant(**found)

    async def delete_tenant(self, tenant_id: str, *, audited: AuditEntry | None = None,
                            budget_audited: Callable[[BudgetRecord], AuditEntry] | None = None
                            ) -> list[BudgetRecord] | None:
        # Emptiness is checked by the delete itself: a team, user or key added meanwhile keeps it.
        # The id is retired, its budgets deleted and all of it audited in the same transaction.
        delete = sa.delete(tenants).where(tenants.c.id == tenant_id, *_no_members(tenant_id))
        async with self._engine.begin() as conn:
            await _lock(conn, tenants, tenants.c.id == tenant_id, *_no_members(tenant_id))
            if not (await conn.execute(delete)).rowcount:
                return None
            retire = sa.insert(retired_tenants).values(id=tenant_id, deleted_at=to_db(utcnow()))
            await conn.execute(retire)
            await _append(conn, audited)
            return await delete_in(conn, tenant_id, audited=budget_audited)

    # teams

    async def create_team(self, team: Team, *, audited: AuditEntry | None = None) -> None:
        await self._insert(teams, team, audited=audited)

    async def get_team(self, tenant_id: str, team_id: str) -> Team | None:
        found = await self._one(sa.select(teams).where(teams.c.tenant_id == tenant_id, teams.c.id == team_id))
        return None if found is None else Team(**found)

    async def find_team(self, team_id: str) -> Team | None:
        found = await self._one(sa.select(teams).where(teams.c.id == team_id))
        return None if found is None else Team(**found)

    async def list_teams(self, tenant_id: str, *, after: str | None = None, limit: int = 100) -> list[Team]:
        query = self._page(sa.select(teams).where(teams.c.tenant_id == tenant_id), teams, after, limit)
        return [Team(**found) for found in await self._many(query)]

    async def update_team(self, team: Team, fields: Collection[str] | None = None, *,
                          audited: Callable[[Team], AuditEntry] | None = None) -> Team | None:
        found = await self._update(teams, team, fields, teams.c.tenant_id == team.tenant_id,
                                   audited=None if audited is None else lambda row: audited(Team(**row)))
        return None if found is None else Team(**found)

    async def delete_team(self, tenant_id: str, team_id: str, *, audited: AuditEntry | None = None) -> bool:
        return await self._delete(teams, teams.c.tenant_id == tenant_id, teams.c.id == team_id,
                                  *_no_members(tenant_id, team_id), audited=audited)

    async def count_members(self, tenant_id: str, *, team_id: str | None = None) -> tuple[int, int, int]:
        count = sa.func.count()
        user_query = sa.select(count).select_from(users).where(users.c.tenant_id == tenant_id)
        key_query = sa.select(count).select_from(api_keys).where(api_keys.c.tenant_id == tenant_id,
                                                                 api_keys.c.enabled.is_(True))
        n_teams = 0
        async with self._engine.connect() as conn:
            if team_id is not None:
                user_query = user_query.where(users.c.team_id == team_id)
                key_query = key_query.where(api_keys.c.team_id == team_id)
            else:
                team_query = sa.select(count).select_from(teams).where(teams.c.tenant_id == tenant_id)
                n_teams = (await conn.execute(team_query)).scalar_one()
            n_users = (await conn.execute(user_query)).scalar_one()
            n_keys = (await conn.execute(key_query)).scalar_one()
        return int(n_teams), int(n_users), int(n_keys)

    # users and service accounts

    async def create_user(self, user: User, *, team_held: bool = False,
                          audited: AuditEntry | None = None) -> bool:
        owner = None
        if team_held and user.team_id is not None:
            owner = _owner_held(teams, teams.c.tenant_id == user.tenant_id, teams.c.id == user.team_id)
        return await self._insert(users, user, owner=owner, audited=audited)

    async def get_user(self, tenant_id: str, user_id: str) -> User | None:
        found = await self._one(sa.select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id))
        return None if found is None else User(**found)

    async def find_user(self, user_id: str) -> User | None:
        found = await self._one(sa.select(users).where(users.c.id == user_id))
        return None if found is None else User(**found)

    async def list_users(self, tenant_id: str, query: UserQuery) -> list[User]:
        stmt = sa.select(users).where(users.c.tenant_id == tenant_id)
        if query.team_id is not None:
            stmt = stmt.where(users.c.team_id == query.team_id)
        if query.role is not None:
            stmt = stmt.where(users.c.role == query.role)
        if query.kind is not None:
            stmt = stmt.where(users.c.kind == query.kind)
        stmt = self._page(stmt, users, query.after, query.limit)
        return [User(**found) for found in await self._many(stmt)]

    async def update_user(self, user: User, fields: Collection[str] | None = None, *,
                          read: User | None = None, keys_above: Collection[str] = (),
                          audited: Callable[[User], AuditEntry] | None = None,
                          keys_audited: Callable[[KeyRecord, KeyRecord], AuditEntry] | None = None
                          ) -> User | None:
        where = [users.c.tenant_id == user.tenant_id]
        then: Callable[[AsyncConnection], Awaitable[None]] | None = None
        if read is not None:
            # A role is checked against the team it goes with (a team admin needs one): the
            # pair must still be the one read, or a role and a team set at once by two admins
            # could make a pair neither checked.
            where += [users.c.role == read.role, users.c.team_id.is_not_distinct_from(read.team_id)]
            then = partial(follow_owner, read=read, user=user, keys_above=keys_above, audited=keys_audited)
        owner = None
        if user.team_id is not None and (fields is None or "team_id" in fields):
            owner = _owner_held(teams, teams.c.tenant_id == user.tenant_id, teams.c.id == user.team_id)
        found = await self._update(users, user, fields, *where, owner=owner, then=then,
                                   audited=None if audited is None else lambda row: audited(User(**row)))
        return None if found is None else User(**found)

    async def delete_user(self, tenant_id: str, user_id: str, *, audited: AuditEntry | None = None) -> bool:
        # Unrevoked keys are checked by the delete itself, as for a team: a key issued to the
        # user (or service account) after the admin API looked keeps it.
        held = sa.and_(api_keys.c.tenant_id == tenant_id, api_keys.c.enabled.is_(True),
                       sa.or_(api_keys.c.user_id == user_id, api_keys.c.service_account_id == user_id))
        return await self._delete(users, users.c.tenant_id == tenant_id, users.c.id == user_id,
                                  ~sa.exists().where(held), audited=audited)


class _OwnerGone(Exception):
    """Rolls back a write that put a record under an owner deleted meanwhile."""


def _owner_held(table: sa.Table, *where: Any) -> sa.Select[Any]:
    """The owner row a record is moved under (a user's new team), read after the write in the
    same transaction, as a key's owner is when it is issued (SqlKeyStore.issue). PostgreSQL: a
    shared lock, so a delete of the owner under way (it locks the row first, :func:`_lock`) is
    waited for and then seen as gone, and one that comes after waits for this transaction and
    then sees the moved record as a member. SQLite runs one writer at a time: holding the write
    lock, the read sees every delete committed before."""
    return sa.select(table.c.id).where(*where).with_for_update(read=True)


async def _lock(conn: AsyncConnection, table: sa.Table, *where: Any) -> None:
    """PostgreSQL: lock the row to be deleted before the delete checks it has no members. A
    key being issued to it holds the row shared (SqlKeyStore.issue) until it commits, so the
    delete, a statement of its own after this one, sees that key; without the lock it would
    not (its snapshot predates the key) and would leave the key to an owner that is gone.
    SQLite runs one writer at a time and needs no lock."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(table.c.id).where(*where).with_for_update())


def _no_members(tenant_id: str, team_id: str | None = None) -> list[sa.ColumnElement[bool]]:
    """The tenant (or its team) has no teams, users or enabled keys left."""
    user = users.c.tenant_id == tenant_id
    key = sa.and_(api_keys.c.tenant_id == tenant_id, api_keys.c.enabled.is_(True))
    if team_id is not None:
        return [~sa.exists().where(user, users.c.team_id == team_id),
                ~sa.exists().where(key, api_keys.c.team_id == team_id)]
    return [~sa.exists().where(teams.c.tenant_id == tenant_id), ~sa.exists().where(user),
            ~sa.exists().where(key)]
