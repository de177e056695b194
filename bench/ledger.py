"""The usage ledger's cost per record, in CPU time: spooling (on the request path) and the
batched flush behind it (fsync, the rows converted and inserted into SQLite), at batch sizes from
one record (a quiet gateway) to hundreds (a loaded one: 32 requests in flight at thousands of
requests a second fill a 0.5 s flush with far more than the 500-record batch that wakes it early).

    python bench/ledger.py                      # this checkout
    PYTHONPATH=/other/src python bench/ledger.py  # another tree, to compare

CPU time of the whole process (the database driver's thread and the kernel's share included),
not wall time, so a busy machine slows it down but does not inflate it much. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from switchboard.spend.ledger import LedgerWriter
from switchboard.stores import UsageRecord
from switchboard.stores.factory import open_at
from switchboard.stores.sql.urls import async_url

BATCHES = (1, 10, 100, 500, 1000)


def record(number: int) -> UsageRecord:
    """A record like the benchmark's requests leave: master key, no cache, a small cost."""
    return UsageRecord(
        request_id=f"chatcmpl-{number:020d}", tenant_id="default", model="bench-model",
        provider="bench-upstream", status=200, prompt_tokens=9, completion_tokens=12,
        cost_usd=Decimal("0.00000855"), latency_ms=1, created_at=datetime.now(UTC),
        metadata={"operation": "chat"}, upstream_model="gpt-4o-mini",
    )


async def measure(records: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-ledger-") as tmp:
        root = Path(tmp)
        stores = await open_at(async_url(None, root / "db"), None)
        writer = LedgerWriter(stores.ledger, root / "spool", flush_seconds=3600, batch=10**9)
        await writer.start()
        try:
            number = 0
            print(f"{'batch':>6} {'spool us/record':>16} {'flush us/record':>16} {'flush ms/batch':>15}")
            for batch in BATCHES:
                rounds = max(3, records // batch)
                spool = flush = 0.0
                for _ in range(rounds):
                    pending = [record(number + i) for i in range(batch)]
                    number += batch
                    t0 = time.process_time()
                    for one in pending:
                        writer.record(one)
                    t1 = time.process_time()
                    await writer.flush()
                    t2 = time.process_time()
                    spool += t1 - t0
                    flush += t2 - t1
                n = rounds * batch
                print(f"{batch:>6} {spool / n * 1e6:>16.1f} {flush / n * 1e6:>16.1f} "
                      f"{flush / rounds * 1e3:>15.2f}", flush=True)
        finally:
            await writer.close()
            await stores.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="records per batch size (default 5000)")
    args = parser.parse_args(argv)
    asyncio.run(measure(args.records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
