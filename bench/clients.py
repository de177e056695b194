"""Upstream HTTP client comparison: CPU per request of the gateway's own client (upstream/http1.py
through UpstreamClient), aiohttp and httpx for the gateway's use.

Each client, in its own process pinned to CPU 0 with uvloop, sends pooled keep-alive POSTs of the
benchmark's chat body to the nginx upstream (pinned to CPU 1) with 32 requests in flight, reads
and parses each JSON reply. Reported: requests/s and CPU microseconds per request (process CPU
time / requests), the figure that decides how much of a gateway core the client eats.

    python bench/clients.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import upstream
from procs import pinned

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench-key"}


async def with_aiohttp(url: str, total: int, concurrency: int) -> None:
    import aiohttp
    import orjson

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def worker(n: int) -> None:
            for _ in range(n):
                async with session.post(url, data=BODY) as resp:
                    orjson.loads(await resp.read())

        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))


async def with_httpx(url: str, total: int, concurrency: int) -> None:
    import httpx
    import orjson

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=HEADERS) as client:

        async def worker(n: int) -> None:
            for _ in range(n):
                resp = await client.post(url, content=BODY)
                orjson.loads(resp.content)

        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))


async def with_switchboard(url: str, total: int, concurrency: int) -> None:
    import orjson

    from switchboard.config.schema import Timeouts
    from switchboard.upstream.auth import StaticHeaderAuth
    from switchboard.upstream.client import UpstreamClient
    from switchboard.upstream.request import UpstreamRequest

    auth = StaticHeaderAuth({"Authorization": HEADERS["Authorization"]})
    client = UpstreamClient("bench", auth, concurrency, {}, Timeouts())
    await client.start()
    try:

        async def worker(n: int) -> None:
            for _ in range(n):
                reply = await client.send(UpstreamRequest("POST", url, BODY), None)
                orjson.loads(reply.body)

        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    finally:
        await client.close()


CLIENTS = {"switchboard": with_switchboard, "aiohttp": with_aiohttp, "httpx": with_httpx}


def child(name: str, url: str, total: int) -> None:
    import uvloop

    run = CLIENTS[name]
    uvloop.run(run(url, 2000, 32))  # warm-up: connections, caches
    cpu0, wall0 = time.process_time(), time.perf_counter()
    uvloop.run(run(url, total, 32))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(json.dumps({"client": name, "rps": total / wall, "cpu_us": 1e6 * cpu / total}))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--child", nargs=2, metavar=("CLIENT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests)
        return 0
    with tempfile.TemporaryDirectory(prefix="sb-clients-") as tmp:
        service, base = upstream.nginx(Path(tmp) / "nginx", cpu=1)
        with service:
            service.wait_ready(base + upstream.CHAT_PATH, timeout=10)
            for name in CLIENTS:
                cmd = pinned(
                    [
                        sys.executable,
                        __file__,
                        "--requests",
                        str(args.requests),
                        "--child",
                        name,
                        base + upstream.CHAT_PATH,
                    ],
                    0,
                )
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ))
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{row['client']:12s} {row['rps']:>9,.0f} req/s  {row['cpu_us']:6.1f} us CPU/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
