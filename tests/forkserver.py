"""Start ``python -m switchboard ...`` children without paying the imports each time.

Every gateway, mock and CLI command the tests start is a new ``python -m switchboard`` process,
and most of its start-up is importing (FastAPI, SQLAlchemy, pydantic models, the admin routes)
and building the token encodings: seconds of CPU per start, hundreds of starts per run. A fork
server pays that once per test worker: it imports the package, then forks a child per request.
The child is a real, separate process running the real CLI (``runpy`` runs ``switchboard``'s
``__main__`` as ``python -m`` does) with the environment, working directory and output pipe the
test asked for, so what the tests observe is what a fresh process does.

The child must be the test process's own child (tests wait for it and read its exit code), so
the test process marks itself a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``) and the
server double-forks: when the middle process exits, the kernel hands the child to the test
process. Where that is not available, or with ``SWITCHBOARD_TEST_FORKSERVER=0``, children are
plain ``subprocess.Popen`` processes.

What the server must not do before forking: start threads, open event loops, read settings or
create anything that reads the environment (the CLI's consoles read ``COLUMNS``; the ``cli``
modules are imported by each child instead). A thread running at a fork could hold a lock the
child then waits for forever (Python 3.12+ warns about such forks): the server is a process of its
own, started by ``subprocess`` (which does not fork the test process's threads), and it checks
before each fork that it is still its only thread, refusing the request with the reason if not.
The test process itself never forks.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import faulthandler
import importlib
import io
import json
import os
import pkgutil
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

_PR_SET_CHILD_SUBREAPER = 36
_MAX_MESSAGE = 1 << 20


class ForkedChild:
    """The part of ``subprocess.Popen`` the tests use, for a child handed over by the server."""

    def __init__(self, pid: int, args: list[str], stdout: IO[str]) -> None:
        self.pid = pid
        self.args = args
        self.stdout: IO[str] | None = stdout
        self.stdin = None
        self.stderr = None
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._pidfd = os.pidfd_open(pid)

    def _reap(self, flags: int) -> int | None:
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, flags)
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
                    os.close(self._pidfd)
            return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            # The pidfd becomes readable when the process ends: no polling loop.
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        code = self._reap(0)
        assert code is not None
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """All the output until the child closes it, then its exit (as ``Popen.communicate``)."""
        assert self.stdout is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        fd, chunks = self.stdout.fileno(), []
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        self.stdout.close()
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n"), None


class ForkServerGone(RuntimeError):
    """The server ended during the run; callers start children the plain way from then on."""


class ForkServer:
    """The test process's end: one server per test worker, started on first use."""

    def __init__(self) -> None:
        self.broken = False
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).parent.parent,
        )
        theirs.close()
        reply = self._sock.recv(_MAX_MESSAGE)
        if reply != b"ready":
            raise RuntimeError(f"the fork server did not start: {reply!r}")

    def start(self, args: list[str], env: dict[str, str], cwd: Path | None) -> ForkedChild:
        read_end, write_end = os.pipe()
        request = json.dumps({"args": args, "env": env, "cwd": str(cwd) if cwd else None}).encode()
        try:
            with self._lock:
                socket.send_fds(self._sock, [request], [write_end])
                answer = self._sock.recv(_MAX_MESSAGE)
        except OSError as exc:
            os.close(read_end)
            self.broken = True
            raise ForkServerGone(f"the fork server is gone ({exc!r})") from exc
        finally:
            os.close(write_end)
        if not answer:  # it ended (killed, out of memory): its end of the socket closed
            os.close(read_end)
            self.broken = True
            raise ForkServerGone(f"the fork server is gone (exit status {self._proc.poll()})")
        reply = json.loads(answer)
        if "error" in reply:
            os.close(read_end)
            raise RuntimeError(f"the fork server could not start {args}: {reply['error']}")
        stdout = open(read_end, encoding="utf-8", errors="replace")  # noqa: SIM115 - the child's output
        return ForkedChild(int(reply["pid"]), args, stdout)

    def close(self) -> None:
        if self._sock.fileno() == -1:
            return
        self._sock.close()  # the server exits when its end closes
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_server: ForkServer | None = None
_server_lock = threading.Lock()


def _subreaper() -> bool:
    if os.environ.get("SWITCHBOARD_TEST_FORKSERVER", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def server() -> ForkServer | None:
    """This process's fork server, or None where children must be started the plain way."""
    global _server
    with _server_lock:
        if _server is None:
            if not _subreaper():
                return None
            _server = ForkServer()
            atexit.register(_server.close)
        return None if _server.broken else _server


def shutdown() -> None:
    """Stop this process's fork server, if it started (its coverage data is saved as it exits)."""
    with _server_lock:
        if _server is not None:
            _server.close()


# The server's side.


def _preload() -> None:
    """Import everything a child would, except the CLI modules (they read the environment at
    import), and build the token encodings."""
    import switchboard

    for info in pkgutil.walk_packages(switchboard.__path__, "switchboard."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf.startswith("cli") or leaf == "__main__" or ".migrations" in info.name:
            continue
        with contextlib.suppress(ImportError):
            importlib.import_module(info.name)
    # What migrating a new database loads (stores/sql/migrate.py imports Alembic only then): most
    # children start on a new one.
    for name in ("alembic.command", "alembic.runtime.migration", "alembic.script"):
        importlib.import_module(name)
    import rich.console  # noqa: F401 - what the CLI modules build on
    import typer  # noqa: F401

    from switchboard.tokens import encodings

    encodings.preload()


def _stdio() -> None:
    """Unbuffered standard streams on the inherited descriptors, as ``PYTHONUNBUFFERED=1`` gives."""
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(open(1, "wb", buffering=0, closefd=False), encoding="utf-8",  # noqa: SIM115
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(open(2, "wb", buffering=0, closefd=False), encoding="utf-8",  # noqa: SIM115
                                  errors="backslashreplace", write_through=True)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_child(request: dict[str, Any], output: int, server: socket.socket) -> None:
    """In the forked child: become ``python -m switchboard ARGS`` and never return."""
    code = 1
    try:
        server.close()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(devnull)
        os.close(output)
        os.environ.clear()
        os.environ.update(request["env"])
        if request["cwd"]:
            os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # what ``python -m`` puts first
        _stdio()
        # A test that gives up on a child asks it for its threads' stacks first (Process.stop).
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        sys.argv = ["switchboard", *request["args"]]
        try:
            import runpy

            runpy.run_module("switchboard", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:
            traceback.print_exc()
            code = 1
        # What interpreter shutdown does: wait for non-daemon threads, then the exit handlers
        # (coverage saves its data there).
        with contextlib.suppress(Exception):
            threading._shutdown()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        if code < 0:  # died of a signal, as an uncaught KeyboardInterrupt does
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


def _threads() -> int:
    """How many threads this process has, as the kernel counts them (threads started by C
    libraries too, which ``threading`` does not list)."""
    return len(os.listdir("/proc/self/task"))


def _launch(request: dict[str, Any], output: int, server: socket.socket) -> int:
    """Double-fork: the middle process exits at once, so the child is handed to the nearest
    subreaper above us, the test process."""
    if (threads := _threads()) != 1:
        os.close(output)
        raise RuntimeError(f"the fork server runs {threads} threads: a fork now could leave the child "
                           "waiting for a lock one of them holds")
    report_r, report_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(report_r)
            child = os.fork()
            if child == 0:
                os.close(report_w)
                _run_child(request, output, server)
            os.write(report_w, str(child).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    os.close(output)
    with os.fdopen(report_r, "rb") as report:
        pid = report.read()
    os.waitpid(middle, 0)
    return int(pid)


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    _preload()
    sock.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
        except ConnectionResetError:
            break
        if not message:
            break
        try:
            pid = _launch(json.loads(message), fds[0], sock)
            sock.send(json.dumps({"pid": pid}).encode())
        except Exception as exc:  # the test gets the reason and fails with it
            sock.send(json.dumps({"error": repr(exc)}).encode())


if __name__ == "__main__":
    main(int(sys.argv[1]))
