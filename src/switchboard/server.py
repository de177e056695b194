"""Runs the gateway under uvicorn (uvloop + httptools), one or many worker processes."""

from __future__ import annotations

import logging
import math
import os
import pickle
import resource
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from switchboard.app import SwitchboardApp, create_app
from switchboard.config.schema import ServerConfig, Settings
from switchboard.http.protocol import EdgeLimits, GatewayHttpProtocol
from switchboard.observability.logs import configure as configure_logs
from switchboard.observability.logs import uvicorn_log_config
from switchboard.observability.metrics import MULTIPROC_ENV
from switchboard.observability.metrics_dir import InstanceMetricsDir, hold
from switchboard.settings.embedded import embedded_settings
from switchboard.settings.loader import ConfigError, load, serving_problems
from switchboard.settings.secret import SecretKeyMissing, padded_secret, padded_warning, with_secret_key
from switchboard.stores.factory import data_dir

_ENV = "SWITCHBOARD_SERVE"
# How long uvicorn's parent waits for a replacement worker's start-up (opening the stores,
# migrations under a lock) during a SIGHUP rolling restart; past it the new worker is killed and
# the restart given up. A start is some 3 s of CPU (a fresh interpreter's imports, the stores):
# on a busy host (10 runnable processes a core) that is 30 s and more, so 30 s gave up restarts
# there; a worker that fails exits, which is seen at once, so only a slow start waits this long.
# Health pings are answered by a thread of the worker, so this does not slow the detection of a
# dead one.
WORKER_READY_SECONDS = 120
# How often a worker checks that uvicorn's parent is still there (see _watch_parent).
PARENT_POLL_SECONDS = 1.0
# How long the event loop's own teardown may take once the gateway has closed (see exit_after_close).
EXIT_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class ServeOptions:
    config: str | None
    host: str | None
    port: int | None
    workers: int | None


def resolve_settings(opts: ServeOptions) -> Settings:
    """The config file (or the embedded default) with command-line overrides applied."""
    if opts.config:
        settings = load(opts.config)
    else:
        settings = embedded_settings(opts.host or "127.0.0.1", opts.port if opts.port is not None else 4000)
    overrides = {
        k: v
        for k, v in {"host": opts.host, "port": opts.port, "workers": opts.workers}.items()
        if v is not None
    }
    if overrides:
        settings = settings.model_copy(update={"server": _overridden(settings.server, overrides)})
    problems = serving_problems(settings)
    if problems:
        raise ConfigError(opts.config or "(embedded default)", problems)
    try:
        return with_secret_key(settings)
    except SecretKeyMissing as exc:
        raise ConfigError(opts.config or "(embedded default)", [str(exc)]) from None


def listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (taken, an unknown name), or None. Tried before
    anything starts, with the socket options uvicorn uses, so that a port in use is one line and
    exit 1 instead of uvicorn's error after the application has started, and exit 3."""
    if port == 0:
        return None
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _overridden(server: ServerConfig, overrides: dict[str, Any]) -> ServerConfig:
    """``server`` with the command line's values, validated as if the file had them (model_copy
    would take --port 70000 as given, and the socket would wrap it to 4464)."""
    try:
        return ServerConfig.model_validate({**server.model_dump(), **overrides})
    except ValidationError as err:
        problems = [f"--{e['loc'][0]}: {str(e['msg']).removeprefix('Value error, ')}"
                    for e in err.errors(include_url=False)]
        raise ConfigError("command line", problems) from None


_HANDOFF_PREFIX = ".serve-settings-"


def write_handoff(settings: Settings) -> Path:
    """The validated settings, secrets resolved, in a 0600 file in the data directory (created 0700) for
    the workers to read. A worker the supervisor restarts (a crash, an OOM kill, SIGHUP) then runs
    exactly what the parent checked, never a config file or ``env:``/``file:`` reference edited
    since. Not the environment: MCP stdio servers and other children must not inherit secrets."""
    directory = data_dir(settings)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_orphaned_handoffs(directory)
    fd, name = tempfile.mkstemp(prefix=f"{_HANDOFF_PREFIX}{os.getpid()}-", dir=directory)  # mode 0600
    with os.fdopen(fd, "wb") as f:
        pickle.dump(settings, f)
    return Path(name)


def _remove_orphaned_handoffs(directory: Path) -> None:
    """A parent killed outright (SIGKILL, power loss) leaves its hand-off behind, secrets and
    all: remove those whose parent process is gone."""
    for path in directory.glob(f"{_HANDOFF_PREFIX}*"):
        pid = path.name.removeprefix(_HANDOFF_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours to judge
        return True
    return True


def read_handoff(path: str) -> Settings:
    # Written by this user's parent process into a directory only this user can write.
    with open(path, "rb") as f:
        settings = pickle.load(f)  # noqa: S301
    assert isinstance(settings, Settings)
    return settings


def app_factory() -> SwitchboardApp:
    """Entry point for worker processes: the settings the parent validated and handed over."""
    if (folder := os.environ.get(MULTIPROC_ENV)) is not None:  # this instance's metric files
        hold(folder)  # the folder stays this instance's until this worker ends, too
    settings = read_handoff(os.environ[_ENV])
    configure_logs(settings.server.log_level, settings.server.log_format)
    configure_edge(settings)
    _watch_parent(os.getppid())
    app = create_app(settings)
    app.on_closed = exit_after_close
    return app


def exit_after_close(seconds: float = EXIT_GRACE_SECONDS) -> None:
    """End the process if it has not ended ``seconds`` after the gateway closed.

    By then what the gateway held is stored or spooled; only the event loop's teardown is left,
    and a database driver can leave a task there that never ends: a SQLite write cut at its
    shutdown bound (a file locked by another process, a disk that stalls) makes aiosqlite's worker
    stop before the connection's close is answered, and asyncio.run waits on it forever. A daemon
    timer, so a process that ends in time is not held by it."""

    def force() -> None:
        log = logging.getLogger("switchboard")
        log.warning("the event loop did not end within %g s after the gateway closed (a database "
                    "connection still waiting); exiting now", seconds)
        for handler in (*logging.getLogger().handlers, *log.handlers):
            handler.flush()
        os._exit(0)

    timer = threading.Timer(seconds, force)
    timer.name = "switchboard-exit-watch"
    timer.daemon = True
    timer.start()


def _watch_parent(parent: int) -> None:
    """Stop this worker, as on SIGTERM (drain, grace, usage records stored), once uvicorn's parent
    is gone. A parent killed outright (SIGKILL, OOM) leaves its workers re-parented and still
    serving the shared port, with nothing to restart or stop them and the next start refused with
    "address already in use". A thread polling getppid() costs nothing on the request path."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        logging.getLogger("switchboard").warning(
            "the supervising process %d is gone; this worker shuts down", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="switchboard-parent-watch", daemon=True).start()


def configure_edge(settings: Settings) -> None:
    """The connection bounds for this process (each worker runs this too, before serving)."""
    server = settings.server
    GatewayHttpProtocol.limits = EdgeLimits(
        max_header_bytes=server.max_header_bytes,
        header_timeout=server.header_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        request_timeout=server.request_timeout_seconds,
        send_timeout=server.send_timeout_seconds,
        max_connections=server.max_connections,
    )
    # Client connections, every provider's connection pool, and headroom (files, listeners).
    _raise_fd_limit(server.max_connections + sum(p.max_connections for p in settings.providers) + 256)


def _raise_fd_limit(wanted: int) -> None:
    """Lift the soft open-file limit towards ``wanted``, so the connection cap is reached before
    descriptors run out; warn when the hard limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError, OverflowError):  # Overflow: past a C long (no hard limit)
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        logging.getLogger("switchboard").warning(
            "open-file limit %d is below what server.max_connections needs (%d); lower "
            "max_connections or raise the limit (ulimit -n)", soft, wanted,
        )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    s = settings.server
    return {
        # JSON lines, or uvicorn's own text format; the access log's credentials redacted either way.
        "log_config": uvicorn_log_config(s.log_level, s.log_format),
        "host": s.host,
        "port": s.port,
        "loop": "uvloop",
        "http": GatewayHttpProtocol,
        "lifespan": "on",
        "access_log": s.access_log,
        "log_level": s.log_level,
        # 0 means "do not wait"; uvicorn reads None as "wait forever", which is never wanted here.
        "timeout_graceful_shutdown": math.ceil(s.graceful_shutdown_seconds),
        "timeout_keep_alive": s.keep_alive_seconds,
        "server_header": False,
        "proxy_headers": False,
    }


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> None:
    configure_logs(settings.server.log_level, settings.server.log_format)
    if (padded := padded_secret(settings, os.environ)) is not None:  # named, never shown
        logging.getLogger("switchboard").warning(padded_warning(padded))
    configure_edge(settings)
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; exiting 0 then tells process
    # managers the shutdown was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    options = uvicorn_options(settings)
    if settings.server.workers > 1:
        # A fresh, empty folder of this instance's own for the workers' metric files
        # (prometheus-client's multiprocess mode), set in the environment before uvicorn starts
        # the workers, which inherit it: each writes its values there and a scrape adds them up.
        # Counters begin at zero with the process, as with one worker; another instance on the
        # same data directory keeps its own folder (observability/metrics_dir.py).
        metrics = InstanceMetricsDir(data_dir(settings)) if settings.metrics.enabled else None
        if metrics is not None:
            os.environ[MULTIPROC_ENV] = str(metrics.path)
        try:
            handoff = write_handoff(settings)
            # Worker processes import the factory, which loads these settings (the variable is a path).
            os.environ[_ENV] = str(handoff)
            try:
                uvicorn.run(
                    "switchboard.server:app_factory", factory=True, workers=settings.server.workers,
                    timeout_worker_healthcheck=WORKER_READY_SECONDS, **options,
                )
            finally:
                handoff.unlink(missing_ok=True)
        finally:
            if metrics is not None:  # the workers are gone: uvicorn joined them
                metrics.remove()
    else:
        app = create_app(settings)
        app.on_closed = exit_after_close
        uvicorn.run(app, **options)
