"""A query's plan as the database would run it, for tests that a read goes through an index."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


async def query_plan(conn: Any, stmt: sa.Select[Any] | sa.CompoundSelect | sa.Delete) -> str:
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "postgresql":
        # The tables are empty: without this the planner rightly reads them whole. With it, it
        # shows the cheapest plan that an index allows, which is what a big table gets.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return "\n".join(row[0] for row in await conn.exec_driver_sql("EXPLAIN " + sql))
    return "\n".join(row[3] for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
