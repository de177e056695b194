"""Real PostgreSQL and Redis servers on 127.0.0.1, on free ports, in temporary directories.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``pg_ctl`` run as the ``postgres``
user (``runuser``) on a data directory that user owns. Readiness is polled with a deadline.

PostgreSQL's directory is in memory (/dev/shm) where there is room: a session creates a database
per store test (a few MB of files each); on a disk, the kernel writes them out meanwhile, and
deleting them at the end of the session then took a minute and more on a 2-core runner, where
tmpfs takes a fraction of a second (databases are dropped once done with, so little is held).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port

# A server's start, and one psql command (CREATE DATABASE copies the template): a second or so
# when idle, far more on a loaded 2-core runner. The waits end as soon as the server is ready.
READY_TIMEOUT = 60.0
# Where PostgreSQL's directory goes when it has this much room; else the temporary directory.
MEMORY_DIR = Path("/dev/shm")
MEMORY_DIR_ROOM = 2 << 30


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} not found (apt-get install postgresql)")
    return on_path


def _wait(check: object, what: str, timeout: float = READY_TIMEOUT) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout}s")
        time.sleep(0.05)


def _pg_major() -> int:
    """The major version of the PostgreSQL the tests run (``initdb (PostgreSQL) 15.4``: 15)."""
    out = subprocess.run([_pg_bin("initdb"), "--version"], check=True, capture_output=True, text=True).stdout
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else 0


def _server_dir() -> Path:
    """A new directory for a server's files: in memory where there is room (see the module's doc)."""
    memory = MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK) and (
        shutil.disk_usage(MEMORY_DIR).free >= MEMORY_DIR_ROOM)
    return Path(tempfile.mkdtemp(prefix="sb-postgres-", dir=MEMORY_DIR if memory else None))


@dataclass
class Postgres:
    port: int
    directory: Path
    _as_user: list[str]
    major: int = 0  # the server's major version

    @property
    def url(self) -> str:
        """The server's maintenance database (``postgres``), as the config would name it."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        subprocess.run(
            [*self._as_user, _pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", sql],
            check=True, capture_output=True, timeout=READY_TIMEOUT,
        )

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database: empty, or a copy of the database ``template`` (which nobody may be
        connected to meanwhile; PostgreSQL waits a few seconds for leaving sessions to end)."""
        copy = f' TEMPLATE "{template}"' if template else ""
        if template and self.major >= 15:
            # Copies the files, where the default (WAL_LOG) also writes all of them to the WAL.
            copy += " STRATEGY FILE_COPY"
        self.psql(f'CREATE DATABASE "{name}"{copy}')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the sessions still on it (a test's leftover connections)."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if self.major >= 13 else ""))

    def rows(self, sql: str, database: str = "postgres") -> list[str]:
        """What ``sql`` answers, one line per row (of one column)."""
        done = subprocess.run(self._psql(database, sql), check=True, capture_output=True, text=True,
                              timeout=READY_TIMEOUT)
        return done.stdout.split()

    def _psql(self, database: str, sql: str) -> list[str]:
        return [*self._as_user, _pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql]

    def hold(self, database: str, lock: str) -> subprocess.Popen[bytes]:
        """A session of its own that runs ``lock`` (``SELECT ... FOR UPDATE``) in a transaction
        and keeps it open, holding those rows, until :meth:`release`; once it holds them."""
        holder = subprocess.Popen(self._psql(database, f"BEGIN; {lock}; SELECT pg_sleep({HOLD_SECONDS})"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: bool(self.rows(_HOLDERS, database)), "a session holding rows")
        return holder

    def cut_waiting(self, database: str) -> None:
        """Once a session waits for rows a :meth:`hold` holds, end it (as a failover or an
        administrator's pg_terminate_backend would): its client sees the connection drop."""
        waiting = ("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                   "AND datname = current_database()")
        _wait(lambda: bool(self.rows(waiting, database)), "a session waiting for held rows")
        self.rows(f"SELECT pg_terminate_backend(pid) FROM ({waiting}) AS cut", database)

    def release(self, database: str, holder: subprocess.Popen[bytes]) -> None:
        """End the :meth:`hold`, freeing its rows."""
        self.rows(f"SELECT pg_terminate_backend(pid) FROM ({_HOLDERS}) AS held", database)
        holder.wait(READY_TIMEOUT)

    def ready(self) -> bool:
        probe = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-t", "1"],
            capture_output=True, timeout=10,
        )
        return probe.returncode == 0

    def stop(self) -> None:
        subprocess.run(
            [*self._as_user, _pg_bin("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "-w",
             "stop"],
            capture_output=True, timeout=60,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


# How long a Postgres.hold keeps its rows at most (a test releases them sooner), and the sessions
# doing it (the query of the one asking is never theirs).
HOLD_SECONDS = 120
_HOLDERS = (f"SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep({HOLD_SECONDS})%' "
            "AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()")


def start_postgres() -> Postgres:
    directory = _server_dir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {directory} -c fsync=off -c max_connections=200"
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w",
         "-t", str(int(READY_TIMEOUT)), "start"],
        check=True, capture_output=True, timeout=READY_TIMEOUT + 10,
    )
    server = Postgres(port, directory, as_user, _pg_major())
    try:
        _wait(server.ready, "PostgreSQL")
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class RedisServer:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"FLUSHALL\r\n")
            assert s.recv(16).startswith(b"+OK")

    def shut_down_keeping_data(self) -> None:
        """Stop the server with its data saved on disk (as a Redis with persistence, or one
        failed over, comes back with it): ``restart`` loads it on the same port."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"SHUTDOWN SAVE\r\n")
            s.recv(16)  # nothing, or an error: the server closes the connection as it exits
        self.proc.wait(10)

    def restart(self) -> None:
        """Start the server again on its port and directory (with what it saved there)."""
        assert self.proc.poll() is not None, "the server is still running"
        self.proc = _spawn_redis(self.port, self.directory)
        _wait_redis(self)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _spawn_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise RuntimeError("redis-server not found (apt-get install redis-server)")
    return subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
         "--unixsocket", str(directory / "redis.sock"), "--unixsocketperm", "700"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


def _wait_redis(server: RedisServer) -> None:
    def up() -> bool:
        if server.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.proc.returncode}")
        return server.ping()

    try:
        _wait(up, "redis-server")
    except BaseException:
        server.stop()
        raise


def start_redis() -> RedisServer:
    directory = Path(tempfile.mkdtemp(prefix="sb-redis-"))
    port = free_port()
    server = RedisServer(port, directory, _spawn_redis(port, directory))
    _wait_redis(server)
    return server


def with_cluster(config: dict[str, Any], request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """``config`` on a cluster (a fresh PostgreSQL database and the Redis server of the session)
    when the fixture's param is ``cluster``; as it is for ``embedded``."""
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"{name}_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    return config
