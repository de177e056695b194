"""PostgreSQL and Redis for the cluster-mode benchmark target: the test suite's throwaway
servers (tests/services.py, in temp dirs on 127.0.0.1), pinned to the load generator's CPU, and a
count of the Redis commands the gateway sends."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from procs import can_pin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.services import start_postgres, start_redis


def _pin(pid: int, cpu: int | str) -> None:
    """Every thread of ``pid`` onto ``cpu``; processes it forks later (PostgreSQL's backends)
    inherit it."""
    if can_pin():
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, check=False)


@contextlib.contextmanager
def cluster(cpu: int | str) -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL) of fresh servers, stopped and removed afterwards."""
    postgres = start_postgres()
    try:
        redis = start_redis()
        try:
            postmaster = int((postgres.directory / "data" / "postmaster.pid").read_text().split()[0])
            _pin(postmaster, cpu)
            _pin(redis.proc.pid, cpu)
            yield postgres.create_database("bench"), redis.url
        finally:
            redis.stop()
    finally:
        postgres.stop()


def count(database: str, table: str) -> int:
    """Rows in ``table`` of a PostgreSQL database (while the server still runs)."""
    out = subprocess.run(["psql", database, "-tAc", f"SELECT count(*) FROM {table}"],
                         capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout.strip())


def redis_commands(url: str) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats), the INFO call excluded."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"INFO commandstats\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            need = _bulk_len(data)
            if need and len(data) >= need:
                break
    calls: dict[str, int] = {}
    for line in data.decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line[8:].partition(":")
            fields = dict(part.split("=", 1) for part in stats.split(","))
            calls[name] = int(fields["calls"])
    calls.pop("info", None)
    return calls


def redis_set(url: str, key: str, value: str) -> None:
    """SET ``key`` ``value`` (no spaces in either: an inline command)."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"SET {key} {value}\r\n".encode())
        if not sock.recv(64).startswith(b"+OK"):
            raise RuntimeError(f"redis refused SET {key}")


def _bulk_len(data: bytes) -> int:
    """The full length of a RESP bulk string reply once its header has arrived."""
    head, sep, _ = data.partition(b"\r\n")
    if not sep or not head.startswith(b"$"):
        return 0
    return len(head) + 2 + int(head[1:]) + 2
