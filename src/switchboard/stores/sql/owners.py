"""What a caller who sees only its own may read of the ledger, the request log and the rollups."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from switchboard.stores.protocols.access import NO_TEAM
from switchboard.stores.sql.tables import api_keys


def owned(dialect: str, user_id: sa.ColumnElement[str | None], key_id: sa.ColumnElement[str | None],
          tenant_id: str | None, owners: Iterable[str], lineage: str | None,
          team_id: sa.ColumnElement[str | None], team: str | None) -> sa.ColumnElement[bool]:
    """Rows whose user or key is one of ``owners``, or, given a key's ``lineage``, whose key is
    any key of that rotation chain in the tenant (a rotated key keeps its history, as it keeps
    its budgets). One indexed subquery (api_keys by tenant and lineage), no extra round trip.
    With ``team`` (a key's own team, ``NO_TEAM`` for a key of none) the user's rows are only
    those of that team: a key does not reach its user's records of another team.

    The key conditions are one: the key is in ``owners`` and the chain's ids together (as
    ledger.total_statement reads a lineage), so each id is a range of the (key_id, created_at)
    index and the user's condition one of (user_id, created_at), OR'd as two index reads. A
    sub-select as one of the OR's terms is no index condition: PostgreSQL read every record of
    the tenant in the period and filtered each through a hashed sub-plan. On PostgreSQL the ids
    are gathered once into an array first (an InitPlan), as ``key_id = ANY(array)`` is an index
    condition where ``key_id IN (sub-select)`` inside an OR is not."""
    ids = list(owners)
    users = user_id.in_(ids) if team is None else sa.and_(user_id.in_(ids), of_team(team_id, team))
    if lineage is None:
        return sa.or_(users, key_id.in_(ids))
    chain = sa.select(api_keys.c.id).where(api_keys.c.lineage_id == lineage)
    if tenant_id is not None:
        chain = chain.where(api_keys.c.tenant_id == tenant_id)
    keys = sa.union(*(sa.select(sa.literal(i, sa.String).label("id")) for i in ids), chain)
    if dialect == "postgresql":
        gathered = sa.select(sa.func.array_agg(keys.subquery().c.id)).scalar_subquery()
        # The cast makes it one array value: ``= ANY (SELECT ...)`` would be a sub-select again.
        return sa.or_(users, key_id == sa.any_(sa.cast(gathered, postgresql.ARRAY(sa.String))))
    return sa.or_(users, key_id.in_(keys))


def of_team(team_id: sa.ColumnElement[str | None], team: str) -> sa.ColumnElement[bool]:
    """Rows of ``team``; ``NO_TEAM``: of none (NULL in records and keys, '' in the rollups)."""
    if team == NO_TEAM:
        return sa.or_(team_id.is_(None), team_id == NO_TEAM)
    return team_id == team
