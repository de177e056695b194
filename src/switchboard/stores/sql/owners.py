"""What a caller who sees only its own may read of the ledger, the request log and the rollups."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from switchboard.stores.sql.tables import api_keys


def owned(user_id: sa.ColumnElement[str | None], key_id: sa.ColumnElement[str | None],
          tenant_id: str | None, owners: Iterable[str], lineage: str | None) -> sa.ColumnElement[bool]:
    """Rows whose user or key is one of ``owners``, or, given a key's ``lineage``, whose key is
    any key of that rotation chain in the tenant (a rotated key keeps its history, as it keeps
    its budgets). One indexed subquery (api_keys by tenant and lineage), no extra round trip."""
    ids = list(owners)
    conditions = [user_id.in_(ids), key_id.in_(ids)]
    if lineage is not None:
        chain = sa.select(api_keys.c.id).where(api_keys.c.lineage_id == lineage)
        if tenant_id is not None:
            chain = chain.where(api_keys.c.tenant_id == tenant_id)
        conditions.append(key_id.in_(chain))
    return sa.or_(*conditions)
