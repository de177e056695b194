"""The request log's search at volume: seeds usage records (and a share of them with stored
bodies) over 30 days into a fresh PostgreSQL database and a fresh SQLite file, then times the
common searches through the store (``LogSearch.search``) and a few through the HTTP API
(``GET /admin/v1/logs`` of a gateway started on the same database). Each must answer in under a
second (the median of three runs); the run exits non-zero otherwise.

    python bench/logs.py                                  # 10,000,000 on PostgreSQL, 1,000,000 on SQLite
    python bench/logs.py --records 1000000 --sqlite-records 100000   # smaller, quicker
    python bench/logs.py --database-url postgresql://user@host/empty_db   # an existing empty database
    python bench/logs.py --markdown docs/benchmarks.md    # also write the results table there

Without ``--database-url`` it runs its own PostgreSQL (initdb in a temporary directory, fsync
off, as the test suite does); everything it creates is removed at the end, so it can be run again.
PostgreSQL is seeded with asyncpg's binary COPY with the search indexes dropped, which are then
built once (as a bulk load would); SQLite with the driver's executemany. Rows are written in
time order, as the gateway appends them. Needs about 6 GB of disk for 10 million records.
Not a test, and heavy: do not run it on a shared machine at a busy time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.services and tests.servers: PostgreSQL and the gateway

import httpx  # noqa: E402

from switchboard.stores.factory import open_at, open_database  # noqa: E402
from switchboard.stores.protocols import USAGE_ROW, LogQuery, LogSearch, UsageRow  # noqa: E402
from switchboard.stores.sql.ledger import _postgres_value, _sqlite_time, _sqlite_value  # noqa: E402
from switchboard.stores.sql.urls import async_url, sqlite_path  # noqa: E402

DAYS = 30
LIMIT_SECONDS = 1.0
CHUNK = 20_000  # rows per COPY / executemany call
TENANTS = 20
KEYS = 2000
TEAMS = 200
USERS = 5000
MODELS = (  # name, provider, price in nano-USD per token (input, output), share
    ("gpt-4o-mini", "openai", 150, 600, 30), ("gpt-4o", "openai", 2500, 10000, 15),
    ("claude-sonnet", "anthropic", 3000, 15000, 15), ("claude-haiku", "anthropic", 800, 4000, 10),
    ("gemini-flash", "gemini", 100, 400, 10), ("gemini-pro", "gemini", 1250, 5000, 5),
    ("mistral-large", "mistral", 2000, 6000, 4), ("mistral-small", "mistral", 200, 600, 4),
    ("command-r", "cohere", 150, 600, 3), ("llama-70b", "bedrock", 720, 720, 2),
    ("embed-small", "openai", 20, 0, 1), ("house-model", "vllm", 0, 0, 1),
)
OUTCOMES = (  # status, error code, share in 10,000
    (200, None, 9600), (429, "rate_limited", 200), (400, "invalid_request", 80),
    (502, "upstream_error", 70), (503, "service_unavailable", 20), (504, "upstream_timeout", 30),
)
WORDS = ("please", "summarise", "the", "report", "about", "quarterly", "revenue", "customer", "ticket",
         "translate", "into", "french", "write", "a", "poem", "code", "review", "function", "python",
         "explain", "error", "message", "database", "migration", "invoice", "refund", "shipping")
RARE = "zanzibar"  # in one body in a thousand: what the text search looks for


@dataclass
class World:
    """What the seeding chose, for the queries to ask about."""

    start: datetime
    end: datetime
    tenants: list[str]
    keys: list[tuple[str, str, str]]  # key id, tenant, team
    ids: list[tuple[str, str]] = field(default_factory=list)  # sampled (request id, tenant)


def _weights(n: int) -> list[float]:
    """A long tail: the first tenant (key, user) much busier than the last."""
    return [1 / (i + 1) ** 0.9 for i in range(n)]


def make_world(records: int) -> World:
    end = datetime.now(UTC).replace(microsecond=0)
    tenants = [f"tenant-{i:02d}" for i in range(TENANTS)]
    rnd = random.Random(7)
    keys = []
    for i in range(KEYS):
        tenant = tenants[min(int(rnd.paretovariate(1.2)) - 1, TENANTS - 1)]
        keys.append((f"key_{i:016x}", tenant, f"team-{tenant[-2:]}-{rnd.randrange(TEAMS // TENANTS):02d}"))
    return World(end - timedelta(days=DAYS), end, tenants, keys)


def rows(world: World, count: int, body_share: float, seed: int,
         ) -> Iterator[tuple[UsageRow, dict[str, Any] | None]]:
    """``count`` records in time order over the world's 30 days, each with a body or None."""
    rnd = random.Random(seed)
    key_weights = _weights(len(world.keys))
    model_weights = [m[4] for m in MODELS]
    outcome_weights = [o[2] for o in OUTCOMES]
    start_us = int(world.start.timestamp() * 1_000_000)
    span_us = DAYS * 86_400 * 1_000_000
    step = span_us / count
    sample_every = max(1, count // 200)
    batch = 4096
    i = 0
    while i < count:
        n = min(batch, count - i)
        keys = rnd.choices(world.keys, key_weights, k=n)
        models = rnd.choices(MODELS, model_weights, k=n)
        outcomes = rnd.choices(OUTCOMES, outcome_weights, k=n)
        for j in range(n):
            number = i + j
            key_id, tenant, team = keys[j]
            model, provider, price_in, price_out, _ = models[j]
            status, error, _ = outcomes[j]
            ok = status == 200
            prompt = int(rnd.lognormvariate(6, 1.2)) + 5
            completion = int(rnd.lognormvariate(5, 1)) + 1 if ok else 0
            latency = min(int(rnd.lognormvariate(6.6, 0.8)), 300_000)
            created = start_us + int(number * step) + rnd.randrange(1000)
            deployment = f"{provider}-{'east' if number % 3 else 'west'}/{model}"
            request_id = f"req-{number:010d}-{rnd.getrandbits(40):010x}"
            user = f"user-{tenant[-2:]}-{rnd.randrange(USERS // TENANTS):03d}"
            stream = number % 4 == 0
            row: UsageRow = (
                request_id, tenant, key_id, team, user, model, provider, status, prompt, completion,
                prompt * price_in + completion * price_out, latency, created, {"operation": "chat"},
                0, 0, 0, 0, price_in == 0, latency // 4 if stream and ok else None, stream, error, model,
                ["bench"], 0, 0, 0, 0, deployment,
                [{"deployment": deployment, "group": model, "status": status, "code": error,
                  "ms": latency - 3}],
                3, latency - 3, None, request_id,  # no log id; the entry id: one record per request id
            )
            body = None
            if rnd.random() < body_share:
                text = " ".join(rnd.choices(WORDS, k=rnd.randrange(8, 40)))
                if rnd.random() < 0.001 * 20:  # one body in 50 has the word: 1 in a 1000 records at 5 %
                    text += f" {RARE}"
                messages = [{"role": "user", "content": text}]
                body = {"request": json.dumps({"model": model, "messages": messages}),
                        "response": json.dumps({"choices": [{"message": {"content": " ".join(
                            rnd.choices(WORDS, k=rnd.randrange(8, 60)))}}]}),
                        "request_headers": {"user-agent": "bench"}}
            if number % sample_every == 0:
                world.ids.append((request_id, tenant))
            yield row, body
        i += n


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- PostgreSQL --

SEARCH_INDEXES = ("ix_usage_records_key_created", "ix_usage_records_team_created",
                  "ix_usage_records_user_created", "ix_usage_records_tenant_model_created",
                  "ix_usage_records_tenant_deployment_created", "ix_usage_records_tenant_error_created",
                  "ix_usage_records_tenant_created", "ix_usage_records_created",
                  "ix_usage_records_request_created", "ix_request_bodies_text",
                  "ix_request_bodies_tenant_created", "ix_request_bodies_created")


async def seed_postgres(url: str, world: World, count: int, body_share: float) -> tuple[float, str]:
    """Seeds through asyncpg's binary COPY; the seconds it took (index builds included) and the
    tables' size on disk (indexes included)."""
    import asyncpg

    engine, _ = await open_database(async_url(url, Path("/unused")))  # the schema at head
    await engine.dispose()
    conn = await asyncpg.connect(url)
    try:
        definitions = {name: sql for name, sql in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1::text[])",
            list(SEARCH_INDEXES))}
        for name in definitions:
            await conn.execute(f'DROP INDEX "{name}"')
        await _partitions(conn, world)
        started = time.monotonic()
        body_rows: list[tuple[Any, ...]] = []
        pending: list[tuple[Any, ...]] = []
        done = 0

        async def flush() -> None:
            nonlocal done
            await conn.copy_records_to_table("usage_records", records=pending, columns=list(USAGE_ROW))
            if body_rows:
                await conn.copy_records_to_table(
                    "request_bodies", records=body_rows,
                    columns=["request_id", "created_at", "tenant_id", "request", "response",
                             "request_headers", "truncated", "log_id"])
            done += len(pending)
            pending.clear()
            body_rows.clear()
            if done % (CHUNK * 25) == 0 or done == count:
                print(f"  postgresql: {done:,} records in {time.monotonic() - started:.0f} s", flush=True)

        for row, body in rows(world, count, body_share, seed=11):
            pending.append(_postgres_value(row))
            if body is not None:
                # No log id on the record: the body's is its request id, as for one stored before 0037.
                body_rows.append((row[0], _EPOCH + timedelta(microseconds=row[12]), row[1], body["request"],
                                  body["response"], json.dumps(body["request_headers"]), False, row[0]))
            if len(pending) >= CHUNK:
                await flush()
        if pending:
            await flush()
        print(f"  postgresql: building {len(definitions)} indexes", flush=True)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for name, sql in definitions.items():
            t0 = time.monotonic()
            # A partitioned table's index reads "ON ONLY": rebuilt on the parent and every partition.
            await conn.execute(sql.replace(" ON ONLY ", " ON "))
            print(f"    {name}: {time.monotonic() - t0:.0f} s", flush=True)
        await conn.execute("ANALYZE usage_records")
        await conn.execute("ANALYZE request_bodies")
        seconds = time.monotonic() - started
        size = "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)"
        records = await conn.fetchval(size, "usage_records")
        bodies = await conn.fetchval(size, "request_bodies")
        in_default = await conn.fetchval(
            "SELECT count(*) FROM pg_partition_tree('usage_records') t JOIN pg_class c ON c.oid = t.relid "
            "WHERE c.relname = 'usage_records_default'")
        if in_default:
            rows_default = await conn.fetchval("SELECT count(*) FROM usage_records_default")
            print(f"  postgresql: {rows_default:,} records in the DEFAULT partition", flush=True)
        return seconds, f"records {records / 2**30:.1f} GiB, bodies {bodies / 2**30:.1f} GiB"
    finally:
        await conn.close()


async def _partitions(conn: Any, world: World) -> None:
    """Daily partitions over the seeded days, named as the request log names them, when the
    tables are partitioned by time (a day that has its partition already is left as it is);
    without them every older row would land in the DEFAULT partition."""
    import asyncpg

    for table in ("usage_records", "request_bodies"):
        partitioned = await conn.fetchval(
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = $1::regclass", table)
        if not partitioned:
            continue
        day = world.start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= world.end:
            following = day + timedelta(days=1)
            with contextlib.suppress(asyncpg.PostgresError):  # an existing partition covers it
                await conn.execute(
                    f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{day.isoformat()}') TO ('{following.isoformat()}')")
            day = following


# -- SQLite --

def seed_sqlite(path: Path, world: World, count: int, body_share: float) -> tuple[float, str]:
    columns = ", ".join(USAGE_ROW)
    insert = f"INSERT INTO usage_records ({columns}) VALUES ({', '.join('?' * len(USAGE_ROW))})"
    insert_body = ("INSERT INTO request_bodies (request_id, created_at, tenant_id, request, response, "
                   "request_headers, truncated, log_id) VALUES (?, ?, ?, ?, ?, ?, 0, ?)")
    started = time.monotonic()
    db = sqlite3.connect(path)
    try:
        pending: list[tuple[Any, ...]] = []
        bodies: list[tuple[Any, ...]] = []
        done = 0
        for row, body in rows(world, count, body_share, seed=13):
            pending.append(_sqlite_value(row))
            if body is not None:
                bodies.append((row[0], _sqlite_time(row[12]), row[1], body["request"], body["response"],
                               json.dumps(body["request_headers"]), row[0]))
            if len(pending) >= CHUNK:
                with db:
                    db.executemany(insert, pending)
                    db.executemany(insert_body, bodies)
                done += len(pending)
                pending.clear()
                bodies.clear()
                if done % (CHUNK * 10) == 0:
                    print(f"  sqlite: {done:,} records in {time.monotonic() - started:.0f} s", flush=True)
        with db:
            db.executemany(insert, pending)
            db.executemany(insert_body, bodies)
        db.execute("ANALYZE")
    finally:
        db.close()
    return time.monotonic() - started, f"file {path.stat().st_size / 2**30:.2f} GiB"


# -- the queries --

@dataclass
class Timing:
    backend: str
    via: str
    name: str
    first_ms: float
    median_ms: float
    found: int

    @property
    def ok(self) -> bool:
        return self.median_ms < LIMIT_SECONDS * 1000


def queries(world: World) -> list[tuple[str, str | None, LogQuery]]:
    """The common searches: (name, tenant or None for the platform admin's view, query)."""
    now = world.end
    day, week = now - timedelta(days=1), now - timedelta(days=7)
    busy = world.tenants[0]
    key_id, _, team = next(k for k in world.keys if k[1] == busy)
    rid, rid_tenant = world.ids[len(world.ids) // 2]
    return [
        ("by request id (platform admin)", None, LogQuery(request_id=rid, include_bodies=True)),
        ("by request id (its tenant)", rid_tenant, LogQuery(request_id=rid, include_bodies=True)),
        ("last 50 of a tenant (24 h)", busy, LogQuery(since=day, until=now)),
        ("last 50, every tenant (24 h)", None, LogQuery(since=day, until=now)),
        ("last 50 of a tenant, with bodies", busy, LogQuery(since=day, until=now, include_bodies=True)),
        ("by key over a day", busy, LogQuery(since=day, until=now, key_id=key_id)),
        ("by team over a day (team admin)", busy, LogQuery(since=day, until=now, team_id=team)),
        ("own user or key over a day (developer)", busy,
         LogQuery(since=day, until=now, owners=(f"user-{busy[-2:]}-000", key_id))),
        ("model + status 5xx over a week", busy,
         LogQuery(since=week, until=now, model="gpt-4o", status_class=5)),
        ("error code over a day", busy, LogQuery(since=day, until=now, error_code="upstream_timeout")),
        ("latency >= 10 s over a day", busy, LogQuery(since=day, until=now, min_latency_ms=10_000)),
        ("cost >= $0.05 over a day", busy, LogQuery(since=day, until=now, min_cost_usd=Decimal("0.05"))),
        ("text in bodies over a day", busy, LogQuery(since=day, until=now, text=RARE, include_bodies=True)),
        ("a common word in bodies over a day", busy,
         LogQuery(since=day, until=now, text="invoice", include_bodies=True)),
        ("text in bodies over a week", busy, LogQuery(since=week, until=now, text=RARE, include_bodies=True)),
    ]


async def timed(run: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    times = []
    found = 0
    for _ in range(3):
        t0 = time.perf_counter()
        found = await run()
        times.append((time.perf_counter() - t0) * 1000)
    return times[0], statistics.median(times), found


async def time_store(backend: str, url: str, world: World) -> list[Timing]:
    stores = await open_at(url, None)
    results = []
    try:
        search: LogSearch | None = stores.log_search
        assert search is not None
        for name, tenant, query in queries(world):
            async def run(tenant: str | None = tenant, query: LogQuery = query) -> int:
                assert search is not None
                return len((await search.search(tenant, query)).entries)
            first, median, found = await timed(run)
            results.append(Timing(backend, "store", name, first, median, found))
            print(f"  {backend} store  {name:<36} {median:8.1f} ms  ({found} found)", flush=True)
        # The second page of the busiest tenant's day, by cursor.
        day = LogQuery(since=world.end - timedelta(days=1), until=world.end)
        page = await search.search(world.tenants[0], day)
        last = page.entries[-1].record
        cursor_query = LogQuery(since=world.end - timedelta(days=1), until=world.end,
                                before=(last.created_at, last.request_id))

        async def second() -> int:
            assert search is not None
            return len((await search.search(world.tenants[0], cursor_query)).entries)
        first, median, found = await timed(second)
        results.append(Timing(backend, "store", "next page by cursor", first, median, found))
    finally:
        await stores.close()
    return results


async def time_http(backend: str, gateway_url: str, world: World, key: str) -> list[Timing]:
    busy = world.tenants[0]
    rid, _ = world.ids[len(world.ids) // 3]
    cases = [
        ("by request id (platform admin)", {"request_id": rid}),
        ("last 50 of a tenant (24 h)", {"tenant": busy}),
        ("status 5xx of a tenant over a week", {"tenant": busy, "status": "5xx",
                                                "from": (world.end - timedelta(days=7)).isoformat()}),
        ("text in bodies over a day", {"tenant": busy, "q": RARE, "include_bodies": "true"}),
    ]
    results = []
    async with httpx.AsyncClient(base_url=gateway_url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60) as client:
        for name, params in cases:
            async def run(params: dict[str, str] = params) -> int:
                resp = await client.get("/admin/v1/logs", params=params)
                resp.raise_for_status()
                return len(resp.json()["data"])
            first, median, found = await timed(run)
            results.append(Timing(backend, "http", name, first, median, found))
            print(f"  {backend} http   {name:<36} {median:8.1f} ms  ({found} found)", flush=True)
    return results


def start_gateway(database_url: str | None, data_dir: Path) -> Any:
    from tests.servers import start_gateway as start

    config: dict[str, Any] = {
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},  # the admin API is all it serves here
        "providers": [{"name": "unused", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
        "models": [{"name": "unused", "provider": "unused", "model": "unused"}],
    }
    if database_url:
        config["database"] = {"url": database_url}
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return start(config, data_dir.parent)


# -- the run --

def markdown(results: list[Timing], seeded: dict[str, tuple[int, float, str]], machine: str) -> str:
    scale = "; ".join(f"{b}: {n:,} records seeded in {s / 60:.1f} min, {size}"
                      for b, (n, s, size) in seeded.items())
    lines = [f"Seeded ({machine}): {scale}. Median of three runs; the first run in brackets.", "",
             "| backend | via | query | found | median ms | (first ms) |", "|---|---|---|---:|---:|---:|"]
    for r in results:
        flag = "" if r.ok else " **over 1 s**"
        lines.append(f"| {r.backend} | {r.via} | {r.name} | {r.found} | {r.median_ms:.1f}{flag} | "
                     f"({r.first_ms:.1f}) |")
    return "\n".join(lines)


BEGIN, END = "<!-- bench/logs.py: begin -->", "<!-- bench/logs.py: end -->"


def write_markdown(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + BEGIN + "\n" + table + "\n" + END + rest.split(END, 1)[1]
    else:
        text += f"\n{BEGIN}\n{table}\n{END}\n"
    path.write_text(text)


async def run_postgres(args: argparse.Namespace, tmp: Path, results: list[Timing],
                       seeded: dict[str, tuple[int, float, str]]) -> None:
    server = None
    url = args.database_url
    if url is None:
        from tests.services import start_postgres

        server = start_postgres()
        server.psql("CREATE DATABASE bench_logs")
        url = server.database_url("bench_logs")
    try:
        world = make_world(args.records)
        print(f"postgresql: seeding {args.records:,} records", flush=True)
        seconds, size = await seed_postgres(url, world, args.records, args.bodies)
        seeded["postgresql"] = (args.records, seconds, size)
        results += await time_store("postgresql", async_url(url, tmp), world)
        gateway = start_gateway(url, tmp / "pg-gateway" / "data")
        try:
            from tests.servers import MASTER_KEY

            results += await time_http("postgresql", gateway.url, world, MASTER_KEY)
        finally:
            gateway.process.stop()
    finally:
        if server is not None:
            server.stop()


async def run_sqlite(args: argparse.Namespace, tmp: Path, results: list[Timing],
                     seeded: dict[str, tuple[int, float, str]]) -> None:
    data = tmp / "sqlite" / "data"
    url = async_url(None, data)
    engine, _ = await open_database(url)  # the schema at head
    await engine.dispose()
    path = sqlite_path(url)
    assert path is not None
    world = make_world(args.sqlite_records)
    print(f"sqlite: seeding {args.sqlite_records:,} records into {path}", flush=True)
    seconds, size = seed_sqlite(path, world, args.sqlite_records, args.bodies)
    seeded["sqlite"] = (args.sqlite_records, seconds, size)
    results += await time_store("sqlite", url, world)
    gateway = start_gateway(None, data)
    try:
        from tests.servers import MASTER_KEY

        results += await time_http("sqlite", gateway.url, world, MASTER_KEY)
    finally:
        gateway.process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="PostgreSQL records (0: skip)")
    parser.add_argument("--sqlite-records", type=int, default=1_000_000, help="SQLite records (0: skip)")
    parser.add_argument("--bodies", type=float, default=0.05, help="share of records with a body (0.05)")
    parser.add_argument("--database-url", help="an existing, empty PostgreSQL database (postgresql://...)")
    parser.add_argument("--markdown", type=Path, help="write the results table into this file")
    args = parser.parse_args(argv)
    results: list[Timing] = []
    seeded: dict[str, tuple[int, float, str]] = {}
    machine = f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs"
    with tempfile.TemporaryDirectory(prefix="sb-bench-logs-") as name:
        tmp = Path(name)
        if args.sqlite_records:
            asyncio.run(run_sqlite(args, tmp, results, seeded))
        if args.records:
            asyncio.run(run_postgres(args, tmp, results, seeded))
    table = markdown(results, seeded, machine)
    print(table)
    if args.markdown:
        write_markdown(args.markdown, table)
    slow = [r for r in results if not r.ok]
    for r in slow:
        print(f"OVER {LIMIT_SECONDS} s: {r.backend} {r.via} {r.name}: {r.median_ms:.0f} ms", file=sys.stderr)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
