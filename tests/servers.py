"""Start real Switchboard processes (gateway and mock upstream) on free ports for the tests."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests import forkserver

MASTER_KEY = "sk-test-master-key-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-key-ABCDEF"
SECRET_KEY = "test-server-secret-0123456789abcdefghijklmnop"
# How long a started process may take to serve (and the default of the other waits on its
# output): a few seconds when idle, many more on a loaded 2-core runner (a cluster gateway
# migrates a fresh database first). A wait ends as soon as the line comes.
START_TIMEOUT = 60.0
# Starts on a port another process took meanwhile, tried again on a new port (see free_port).
PORT_ATTEMPTS = 3

Child = subprocess.Popen[str] | forkserver.ForkedChild


def free_port() -> int:
    """A port free now. Nothing holds it until the process it is for listens (a gateway: after
    its start-up), so another process may take it meanwhile (another worker's server, rarely
    an outgoing connection): :func:`start_mock` and :func:`start_gateway` then start again on a
    new one (:func:`port_taken`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A socket bound and never listening: a connection to its port is refused at once, and no other
# process can bind the port (nor use it for an outgoing connection) while it is held. It is held
# for the test process's life, so one port serves every "nothing answers here" in the session.
_refusing: socket.socket | None = None


def refused_port() -> int:
    """A port where every connection is refused for the rest of the test process: for an
    upstream, store or collector that must stay unreachable. A port from :func:`free_port`
    that nothing binds may be taken by another process meanwhile, which then answers."""
    global _refusing
    if _refusing is None:
        # No SO_REUSEADDR: with it on both sockets, Linux lets another socket bind a port
        # whose holder does not listen.
        _refusing = socket.socket()
        _refusing.bind(("127.0.0.1", 0))
    return int(_refusing.getsockname()[1])


@dataclass
class ReservedPort:
    """A port refused (see :func:`refused_port`) until :meth:`release`, for a server that is
    down until a test starts it there: nobody else can take the port meanwhile."""

    port: int
    _socket: socket.socket | None

    def release(self) -> int:
        """Free the port for the server about to bind it (the process that binds it should be
        started right after); the port."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        return self.port


def reserve_port() -> ReservedPort:
    held = socket.socket()  # no SO_REUSEADDR: see refused_port
    held.bind(("127.0.0.1", 0))
    return ReservedPort(int(held.getsockname()[1]), held)


def port_taken(process: Process) -> bool:
    """Whether ``process`` ended because its port was taken (our check before start-up, or
    uvicorn's bind after it)."""
    return process.proc.poll() is not None and "address already in use" in process.output.lower()


@dataclass
class Process:
    """A child process whose combined output is collected line by line."""

    proc: Child
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:  # closed at the end of the output
            for line in self.proc.stdout:
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def wait_serving(self, workers: int = 1) -> None:
        """Block until the gateway accepts connections. One worker binds its socket only after
        the application's start-up ("Uvicorn running on" follows "Application startup
        complete"); several workers share a socket the supervisor bound before starting them."""
        self.wait_for("Application startup complete")
        if workers == 1:
            self.wait_for("Uvicorn running on")

    def wait_for(self, marker: str, timeout: float = START_TIMEOUT) -> None:
        """Block until a line containing ``marker`` is printed."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no {marker!r} within {timeout}s:\n{self.output}") from None
            if line is None:
                raise RuntimeError(f"process exited ({self.proc.wait()}) before {marker!r}:\n{self.output}")
            if marker in line:
                return

    def wait_for_all(self, *parts: str, timeout: float = START_TIMEOUT) -> str:
        """Block until one line contains every one of ``parts`` (e.g. a unique request id and a
        phrase), so a line from another request cannot satisfy the wait; returns that line. A line
        printed before the call counts too (another wait may have read past it already)."""
        for line in list(self.lines):
            if all(p in line for p in parts):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no line with {parts!r} within {timeout}s:\n{self.output}") from None
            if line is None:
                raise RuntimeError(f"process exited ({self.proc.wait()}) before {parts!r}:\n{self.output}")
            if all(p in line for p in parts):
                return line

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        """Wait for the process to end and for all its output to be collected; its exit code.

        Use this before asserting that something is *absent* from :attr:`output`."""
        code = self.proc.wait(timeout)
        self._pump_thread.join(timeout)
        assert not self._pump_thread.is_alive(), "output still open after the process ended"
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._dump_stacks()
                self.proc.kill()
        return self.proc.wait()

    def _dump_stacks(self) -> None:
        """Ask a child that did not end for its threads' stacks, so the failure shows where it
        hung (forked children print them on SIGUSR1; a plain child just ends)."""
        if isinstance(self.proc, forkserver.ForkedChild):
            self.proc.send_signal(signal.SIGUSR1)
            with contextlib.suppress(TimeoutError, RuntimeError):
                self.wait_for_all("most recent call first", timeout=5)
        # Shown with the failing test's captured output (the assertion shows only a shortened repr).
        print(f"--- output of {' '.join(map(str, self.proc.args))}, which did not end ---\n{self.output}",
              file=sys.stderr)


# What a child needs from this process when it must not inherit the rest of the environment:
# finding Python and the package, and coverage measurement of the child.
_ESSENTIAL_ENV = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "TMPDIR")
_ESSENTIAL_ENV_PREFIXES = ("COV_CORE_", "COVERAGE_")


def essential_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k in _ESSENTIAL_ENV or k.startswith(_ESSENTIAL_ENV_PREFIXES)
    }


def launch(args: list[str], env: dict[str, str], cwd: Path | None = None) -> Child:
    """``python -m switchboard ARGS`` with exactly ``env``; its output and errors on one pipe.
    Through the fork server where there is one (see tests/forkserver.py)."""
    forks = forkserver.server()
    if forks is not None:
        try:
            return forks.start(args, env, cwd)
        except forkserver.ForkServerGone as gone:
            warnings.warn(f"{gone}: starting processes from scratch", stacklevel=2)
    return subprocess.Popen(
        [sys.executable, "-m", "switchboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )


def spawn(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, *, inherit: bool = True
) -> Process:
    """Run ``python -m switchboard ARGS``. With ``inherit=False`` the child sees only
    :func:`essential_env` plus ``env``: what it reads from the environment is what the test set."""
    base = dict(os.environ) if inherit else essential_env()
    return Process(launch(args, {**base, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd))


@dataclass
class Mock:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def new_marker() -> str:
    """A unique value for ``mock:capture=<marker>`` (or a request id)."""
    return uuid.uuid4().hex


def captured(
    mock: Mock, marker: str, *, outcome: str | None = None, count: int = 1, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The requests the mock recorded under ``marker``, oldest first (see mock/capture.py).

    The mock waits, at most ``timeout`` seconds, until ``count`` records exist and the latest has
    ``outcome``; it answers with what it has either way, so the caller asserts on the result.
    """
    params = {"count": str(count), "timeout": str(timeout)}
    if outcome:
        params["outcome"] = outcome
    resp = httpx.get(f"{mock.url}/_mock/captured/{marker}", params=params, timeout=timeout + 10)
    resp.raise_for_status()
    records: list[dict[str, Any]] = resp.json()["requests"]
    return records


def start_mock(api_key: str | None = UPSTREAM_KEY, extra: list[str] | None = None) -> Mock:
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        args = ["mock", "--port", str(port), *(["--api-key", api_key] if api_key else []), *(extra or [])]
        process = spawn(args)
        try:
            process.wait_for("Uvicorn running on")
        except RuntimeError:
            if attempt < PORT_ATTEMPTS and port_taken(process):
                continue
            raise
        return Mock(port, process)
    raise AssertionError("unreachable")


@dataclass
class Gateway:
    port: int
    process: Process
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


def start_gateway(
    config: dict[str, Any], tmp: Path, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Gateway:
    workers = (args or [])[(args or []).index("--workers") + 1] if "--workers" in (args or []) else None
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        path = tmp / f"switchboard-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        process = spawn(
            ["serve", "--config", str(path), "--port", str(port), *(args or [])],
            env={
                "SWITCHBOARD_MASTER_KEY": MASTER_KEY,
                "UPSTREAM_KEY": UPSTREAM_KEY,
                # The database (SQLite by default) lives with the test, not in ~/.switchboard.
                "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
                # Instances sharing a database must share the secret that keys the API-key hashes.
                "SWITCHBOARD_SECRET_KEY": SECRET_KEY,
                **(env or {}),
            },
        )
        try:
            process.wait_serving(int(workers or (config.get("server") or {}).get("workers") or 1))
        except RuntimeError:
            if attempt < PORT_ATTEMPTS and port_taken(process):
                path.unlink()
                continue
            raise
        return Gateway(port, process, path)
    raise AssertionError("unreachable")


def openai_config(mock: Mock, **server: Any) -> dict[str, Any]:
    """The minimal config form from the core issue, plus test models."""
    return {
        "providers": [
            {
                "name": "local-openai",
                "type": "openai",
                "api_base": f"{mock.url}/v1",
                "api_key": "${UPSTREAM_KEY}",
            },
            {
                "name": "bad-key",
                "type": "openai",
                "api_base": f"{mock.url}/v1",
                "api_key": "sk-wrong-key-123",
            },
            {"name": "nowhere", "type": "openai", "api_base": f"http://127.0.0.1:{refused_port()}/v1"},
            {
                "name": "slow",
                "type": "openai",
                "api_base": f"{mock.url}/v1",
                "api_key": "${UPSTREAM_KEY}",
                "timeouts": {"connect": 2, "first_byte": 1.0, "total": 3},
            },
        ],
        "models": [
            {"name": "gpt-4o-mini", "provider": "local-openai", "model": "gpt-4o-mini"},
            {"name": "text-embedding-3-small", "provider": "local-openai", "model": "text-embedding-3-small"},
            {"name": "gpt-3.5-turbo-instruct", "provider": "local-openai", "model": "gpt-3.5-turbo-instruct"},
            {"name": "misconfigured", "provider": "bad-key", "model": "gpt-4o-mini"},
            {"name": "unreachable", "provider": "nowhere", "model": "gpt-4o-mini"},
            {"name": "slow-model", "provider": "slow", "model": "gpt-4o-mini"},
            {"name": "impatient-model", "provider": "local-openai", "model": "gpt-4o-mini",
             "timeouts": {"first_byte": 0.5}},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "server": server,
    }


def workers_of(parent: int) -> set[int]:
    """The uvicorn worker processes under ``parent`` (multiprocessing's spawned children; the
    resource tracker is a child too, and is left out)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent and b"spawn_main" in cmdline:
            pids.add(int(entry.name))
    return pids


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
