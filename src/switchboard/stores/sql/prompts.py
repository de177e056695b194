"""The prompt registry in SQL (revision 0016), shared by every instance.

Versions are immutable rows keyed (tenant, name, version). The next number is the largest plus
one, inserted under the primary key: when two saves of one name race, one insert fails on the
key and retries with the number after the winner's, so no number is taken twice or skipped.
Labels are one row per (tenant, name, label) naming a version; moving one is a compare and set
on the version read before it, so each move learns the version it replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.errors import StoreError
from switchboard.stores.protocols import AuditEntry, PromptVersion, utcnow
from switchboard.stores.sql.audit import append_in
from switchboard.stores.sql.tables import prompt_labels as lt
from switchboard.stores.sql.tables import prompt_versions as t
from switchboard.stores.sql.times import from_db, to_db

# How often a save retries after losing the race for a version number.
_ATTEMPTS = 20
# How often a label move retries after another move changed the label between its read and
# its write (each round, one of the racing moves wins).
_LABEL_ATTEMPTS = 100
# Names per IN list, well under SQLite's and PostgreSQL's bound parameter limits.
_IN_CHUNK = 500


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _record(row: sa.Row[Any]) -> PromptVersion:
    m = row._mapping
    created = from_db(m["created_at"])
    assert created is not None
    output = m["output_schema"]
    return PromptVersion(
        tenant_id=m["tenant_id"],
        name=m["name"],
        version=int(m["version"]),
        messages=orjson.loads(m["messages"]),
        variables=orjson.loads(m["variables"]),
        model=m["model"],
        params=orjson.loads(m["params"]),
        output_schema=None if output is None else orjson.loads(output),
        description=m["description"],
        team_id=m["team_id"],
        created_by=m["created_by"],
        created_at=created,
    )


class _Raced(Exception):
    """Rolls back a write another one beat (a version number or a new label taken): retried.
    Only the write's own conflict: an audit entry refused is an error, not a race."""


class SqlPromptStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_version(self, draft: PromptVersion, *,
                             audited: Callable[[PromptVersion], AuditEntry] | None = None) -> PromptVersion:
        latest = sa.select(sa.func.max(t.c.version)).where(
            t.c.tenant_id == draft.tenant_id, t.c.name == draft.name
        )
        for _ in range(_ATTEMPTS):
            try:
                async with self._engine.begin() as conn:
                    number = int((await conn.execute(latest)).scalar() or 0) + 1
                    insert = (
                        sa.insert(t).values(
                            tenant_id=draft.tenant_id,
                            name=draft.name,
                            version=number,
                            model=draft.model,
                            messages=_json(list(draft.messages)),
                            variables=_json(draft.variables),
                            params=_json(draft.params),
                            output_schema=None if draft.output_schema is None else _json(draft.output_schema),
                            description=draft.description,
                            team_id=draft.team_id,
                            created_by=draft.created_by,
                            created_at=to_db(draft.created_at),
                        )
                    )
                    try:
                        await conn.execute(insert)
                    except IntegrityError:
                        raise _Raced from None
                    stored = replace(draft, version=number)
                    if audited is not None:
                        await append_in(conn, audited(stored))  # a failing entry undoes the save
            except _Raced:  # another save took this number: take the next
                continue
            return stored
        raise StoreError(f"prompt '{draft.name}': too many concurrent saves, try again")

    async def get(self, tenant_id: str, name: str, *, version: int | None = None,
                  label: str | None = None) -> PromptVersion | None:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name == name)
        if label is not None:
            pointed = sa.select(lt.c.version).where(
                lt.c.tenant_id == tenant_id, lt.c.name == name, lt.c.label == label
            ).scalar_subquery()
            query = query.where(t.c.version == pointed)
        elif version is not None:
            query = query.where(t.c.version == version)
        else:
            query = query.order_by(t.c.version.desc()).limit(1)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def versions(self, tenant_id: str, name: str) -> list[PromptVersion]:
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name == name).order_by(t.c.version)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def version_numbers(self, tenant_id: str, names: Iterable[str]) -> dict[str, list[int]]:
        wanted = sorted(set(names))
        found: dict[str, list[int]] = {name: [] for name in wanted}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                query = (
                    sa.select(t.c.name, t.c.version)
                    .where(t.c.tenant_id == tenant_id, t.c.name.in_(wanted[start:start + _IN_CHUNK]))
                    .order_by(t.c.name, t.c.version)
                )
                for row in await conn.execute(query):
                    found[row.name].append(int(row.version))
        return found

    async def labels(self, tenant_id: str, name: str) -> dict[str, int]:
        query = (
            sa.select(lt.c.label, lt.c.version)
            .where(lt.c.tenant_id == tenant_id, lt.c.name == name)
            .order_by(lt.c.label)
        )
        async with self._engine.connect() as conn:
            return {row.label: int(row.version) for row in await conn.execute(query)}

    async def set_label(self, tenant_id: str, name: str, label: str, version: int, *,
                        audited: Callable[[int | None], AuditEntry] | None = None) -> int | None:
        now = to_db(utcnow())
        where = (lt.c.tenant_id == tenant_id, lt.c.name == name, lt.c.label == label)
        current = sa.select(lt.c.version).where(*where)
        for _ in range(_LABEL_ATTEMPTS):
            async with self._engine.connect() as conn:
                previous = (await conn.execute(current)).scalar()
            if previous is None:
                try:
                    async with self._engine.begin() as conn:
                        try:
                            await conn.execute(sa.insert(lt).values(
                                tenant_id=tenant_id, name=name, label=label, version=version, updated_at=now
                            ))
                        except IntegrityError:
                            raise _Raced from None
                        if audited is not None:
                            await append_in(conn, audited(None))  # a failing entry undoes the move
                    return None
                except _Raced:  # set at the same moment by another call: read it again
                    continue
            if previous == version:
                return int(previous)  # already there: nothing written (the caller audits nothing)
            # Compare and set: only if the label still points where it was read.
            moved = (sa.update(lt).where(*where, lt.c.version == previous)
                     .values(version=version, updated_at=now))
            async with self._engine.begin() as conn:
                if (await conn.execute(moved)).rowcount:
                    if audited is not None:
                        await append_in(conn, audited(int(previous)))  # a failing entry undoes the move
                    return int(previous)
        raise StoreError(f"prompt '{name}': label '{label}' could not be set, try again")

    async def list_prompts(self, tenant_id: str, *, team_id: str | None = None,
                           after: str | None = None, limit: int = 100) -> list[PromptVersion]:
        """The latest version of each of the tenant's prompts (of one team when ``team_id``), by
        name; ``after``: the names after this one."""
        newest = (
            sa.select(t.c.name, sa.func.max(t.c.version).label("version"))
            .where(t.c.tenant_id == tenant_id)
            .group_by(t.c.name)
            .subquery()
        )
        query = (
            sa.select(t)
            .join(newest, sa.and_(t.c.name == newest.c.name, t.c.version == newest.c.version))
            .where(t.c.tenant_id == tenant_id)
            .order_by(t.c.name)
            .limit(limit)
        )
        if team_id is not None:
            query = query.where(t.c.team_id == team_id)
        if after is not None:
            query = query.where(t.c.name > after)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def any_stored(self) -> bool:
        # One row is enough: the first row of any scan, no count over the table.
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(t.c.name).limit(1))).first() is not None

    async def all_labels(self, tenant_id: str, names: list[str]) -> dict[str, dict[str, int]]:
        """The labels of each of ``names`` (a name without labels is absent)."""
        if not names:
            return {}
        query = (
            sa.select(lt.c.name, lt.c.label, lt.c.version)
            .where(lt.c.tenant_id == tenant_id, lt.c.name.in_(names))
            .order_by(lt.c.name, lt.c.label)
        )
        found: dict[str, dict[str, int]] = {}
        async with self._engine.connect() as conn:
            for row in await conn.execute(query):
                found.setdefault(row.name, {})[row.label] = int(row.version)
        return found
