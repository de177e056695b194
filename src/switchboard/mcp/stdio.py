"""stdio MCP servers: managed child processes of the gateway (docs/mcp.md, "stdio servers").

Only when the platform admin allows it (``mcp.allow_stdio: true``; otherwise the configuration is
refused at start, naming the server), and only from the YAML (a command is never taken from an
API call). Each server is one child process, in a session (process group) of its own, started
with the gateway and kept running by :class:`StdioServer`:

- its MCP session is opened once (``initialize``) and shared by every operation, as any
  :class:`mcp.ClientSession` is (requests are told apart by their JSON-RPC ids);
- a process that exits (or fails to start, or to initialize within
  ``connect_timeout_seconds``) is started again after a backoff that doubles from 0.5 s to 30 s
  (back to 0.5 s once a process has stayed up for a minute); while it is down, operations on it
  fail at once (``ServerDown``), so the toolbox leaves it out of lists;
- its output is bounded: a message on stdout longer than the largest argument or result
  (``mcp.max_argument_bytes``/``max_result_bytes``, plus 64 KiB) ends the process (a protocol
  violation; it is restarted), and stderr is read in bounded pieces, logged a line at a time (each
  cut to 1,000 characters, at most 100 lines a minute) with the last 20 lines kept for
  diagnostics;
- on shutdown its stdin is closed, then the process group is sent SIGTERM after 2 s and SIGKILL
  2 s later.

The transport (:func:`stdio_transport`) yields the same stream pair as the SDK's streamable-HTTP
client, so a server reached over stdio is used exactly as one reached over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types
from mcp import ClientSession
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage

from switchboard.config.mcp import McpConfig, McpServerConfig, check_stdio

log = logging.getLogger("switchboard.mcp.stdio")

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0  # a process up this long resets the backoff
STOP_GRACE = 2.0  # after stdin closes, before SIGTERM; and after SIGTERM, before SIGKILL
STDERR_LINE_CHARS = 1000
STDERR_LINES_PER_MINUTE = 100
STDERR_KEPT = 20
MESSAGE_MARGIN = 64 * 1024


class ServerDown(Exception):
    """The stdio server is not running (starting, restarting or stopped)."""

    def __init__(self, name: str, reason: str | None) -> None:
        super().__init__(f"the MCP server '{name}' is not available" + (f": {reason}" if reason else ""))
        self.name = name


def max_message_bytes(config: McpConfig) -> int:
    return max(config.max_argument_bytes, config.max_result_bytes) + MESSAGE_MARGIN


class _Stderr:
    """A child's stderr: logged a line at a time, bounded in size and rate; the last lines kept."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last: deque[str] = deque(maxlen=STDERR_KEPT)
        self._window = 0.0
        self._logged = 0
        self._dropped = 0

    def line(self, text: str) -> None:
        text = text.rstrip()[:STDERR_LINE_CHARS]
        if not text:
            return
        self.last.append(text)
        now = time.monotonic()
        if now - self._window >= 60.0:
            if self._dropped:
                log.info(
                    "mcp server %s: %d stderr line(s) not logged (over %d a minute)",
                    self.name,
                    self._dropped,
                    STDERR_LINES_PER_MINUTE,
                )
            self._window, self._logged, self._dropped = now, 0, 0
        if self._logged < STDERR_LINES_PER_MINUTE:
            self._logged += 1
            log.info("mcp server %s: %s", self.name, text)
        else:
            self._dropped += 1

    async def pump(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.line(line.decode(errors="replace"))
            if len(pending) > STDERR_LINE_CHARS * 4:  # a line without end: cut it
                self.line(pending.decode(errors="replace"))
                pending = b""
        if pending:
            self.line(pending.decode(errors="replace"))


async def _stop(process: asyncio.subprocess.Process, grace: float = STOP_GRACE) -> None:
    """Close stdin, then SIGTERM and SIGKILL the process group, each after ``grace`` seconds."""
    if process.stdin is not None:
        with contextlib.suppress(Exception):
            process.stdin.close()
    if process.returncode is None:
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), grace)
                break
            except TimeoutError:
                continue
        else:
            log.warning("mcp stdio process %d is still alive after SIGKILL", process.pid)
    # The pipes' transport, even if a child of the process still holds one end.
    transport = getattr(process, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


@asynccontextmanager
async def stdio_transport(
    server: McpServerConfig,
    max_bytes: int,
    stderr: _Stderr | None = None,
    exited: asyncio.Event | None = None,
    started: Callable[[int], None] | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """Start ``server``'s command and yield (read stream, write stream) of JSON-RPC messages, as
    the SDK's transports do; the process is stopped when the block ends. ``exited`` is set when
    the process's stdout ends (it exited, or was stopped for a message over ``max_bytes``)."""
    assert server.command, "a stdio server has a command"
    process = await asyncio.create_subprocess_exec(
        *server.command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=get_default_environment() | dict(server.env),
        start_new_session=True,
        limit=max_bytes,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    if started is not None:
        started(process.pid)
    stdin, stdout = process.stdin, process.stdout
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    errors = stderr or _Stderr(server.name)

    async def reading() -> None:
        try:
            async with read_send:
                while True:
                    try:
                        line = await stdout.readuntil(b"\n")
                    except asyncio.IncompleteReadError:
                        return  # the process exited
                    except asyncio.LimitOverrunError:
                        log.error(
                            "mcp server %s: a message over %d bytes; stopping the process",
                            server.name,
                            max_bytes,
                        )
                        await _stop(process, grace=0.1)  # it broke the protocol: no grace
                        return
                    if not line.strip():
                        continue
                    try:
                        message: SessionMessage | Exception = SessionMessage(
                            mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                        )
                    except ValueError as exc:
                        log.warning(
                            "mcp server %s: a line that is not JSON-RPC: %s", server.name, str(exc)[:200]
                        )
                        message = exc
                    await read_send.send(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        finally:
            if exited is not None:
                exited.set()

    async def writing() -> None:
        try:
            async with write_recv:
                async for message in write_recv:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    stdin.write(data.encode() + b"\n")
                    await stdin.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError, OSError):
            await read_send.aclose()

    tasks = [
        asyncio.create_task(reading(), name=f"mcp-stdio-{server.name}-out"),
        asyncio.create_task(writing(), name=f"mcp-stdio-{server.name}-in"),
        asyncio.create_task(errors.pump(process.stderr), name=f"mcp-stdio-{server.name}-err"),
    ]
    try:
        yield read_recv, write_send
    finally:
        await _stop(process)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in (read_recv, write_send, read_send, write_recv):
            await stream.aclose()


class StdioServer:
    """One stdio server, kept running: its shared MCP session, its state and restarts."""

    def __init__(self, server: McpServerConfig, config: McpConfig) -> None:
        self.server = server
        self._max_bytes = max_message_bytes(config)
        self.stderr = _Stderr(server.name)
        self.state = "stopped"  # starting | up | down | stopped
        self.last_error: str | None = None
        self.restarts = 0
        self.pid: int | None = None
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def name(self) -> str:
        return self.server.name

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self.state = "starting"
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-stdio-{self.name}")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"

    async def session(self, wait: float | None = None) -> ClientSession:
        """The server's MCP session; waits for a (re)start under way at most ``wait`` seconds
        (default: not at all), then raises :class:`ServerDown`."""
        session = self._session
        if session is not None:
            return session
        if wait and self.state == "starting":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)
            if self._session is not None:
                return self._session
        raise ServerDown(self.name, self.last_error)

    def health(self) -> Mapping[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "stderr": list(self.stderr.last),
        }

    async def _supervise(self) -> None:
        delay = INITIAL_BACKOFF
        while not self._closing:
            started = time.monotonic()
            self.state = "starting"
            try:
                await self._run_once()
                self.last_error = "the process exited"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = (str(exc) or type(exc).__name__)[:500]
            finally:
                self._session = None
                self._ready.clear()
                self.pid = None
            if self._closing:
                break
            self.state = "down"
            if time.monotonic() - started >= STABLE_SECONDS:
                delay = INITIAL_BACKOFF
            log.warning("mcp server %s: %s; restarting in %.1f s", self.name, self.last_error, delay)
            await asyncio.sleep(delay)
            self.restarts += 1
            delay = min(delay * 2, MAX_BACKOFF)

    async def _run_once(self) -> None:
        exited = asyncio.Event()

        def started(pid: int) -> None:
            self.pid = pid

        transport = stdio_transport(self.server, self._max_bytes, self.stderr, exited, started)
        async with transport as (read, write), ClientSession(
            read, write, read_timeout_seconds=self.server.timeout_seconds
        ) as session:
            await asyncio.wait_for(session.initialize(), self.server.connect_timeout_seconds)
            self._session = session
            self.state = "up"
            self._ready.set()
            log.info("mcp server %s: up", self.name)
            await exited.wait()


class StdioServers:
    """The stdio servers of the configuration, started with the gateway and stopped with it."""

    def __init__(self, servers: list[McpServerConfig], config: McpConfig) -> None:
        check_stdio(servers, config)
        self.servers = {s.name: StdioServer(s, config) for s in servers if s.transport == "stdio"}

    def get(self, name: str) -> StdioServer | None:
        return self.servers.get(name)

    def start(self) -> None:
        for server in self.servers.values():
            server.start()

    async def close(self) -> None:
        await asyncio.gather(*(server.close() for server in self.servers.values()))
