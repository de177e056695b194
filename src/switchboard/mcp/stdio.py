"""stdio MCP servers: managed child processes of the gateway (docs/mcp.md, "stdio servers").

Only when the platform admin allows it (``mcp.allow_stdio: true``; otherwise the configuration is
refused at start, naming the server), and only from the YAML (a command is never taken from an
API call). Each server is one child process, in a process group of its own, started with the
gateway and kept running by :class:`StdioUpstream`, which the registry holds like any upstream
(mcp/upstream.py): the same ``request()``, health and errors, so the toolbox, the ``/mcp``
endpoint and the tool loop use a stdio server exactly as an HTTP one.

- One MCP session per process (``initialize`` once, newline-delimited JSON-RPC on
  stdin/stdout), shared by every operation; requests are told apart by their ids. stdio has no
  per-request headers, so a server with per-user OAuth cannot be a stdio server.
- A process that exits (or fails to start, or to initialize within ``connect_timeout_seconds``)
  is started again after a backoff doubling from 0.5 s to 30 s (back to 0.5 s once a process
  stayed up a minute). While it is down, requests fail at once (``mcp_server_unavailable``) and
  the toolbox leaves it out of lists; requests under way when it exits fail at once too.
- Output is bounded: a reply larger than ``mcp.max_result_bytes`` fails its call with
  ``mcp_result_too_large``, as from an HTTP server (the process stays up); a message on stdout
  longer than the largest argument or result (``mcp.max_argument_bytes``/``max_result_bytes``,
  plus 64 KiB) ends the process (it broke the protocol; it is restarted); stderr is read in
  bounded pieces and logged a line at a time (each cut to 1,000 characters, at most 100 lines a
  minute), the last 20 lines kept for ``health()``.
- Requests the server sends (sampling, elicitation, roots) are answered with an error (the
  gateway has no client to pass them to from a child process); ``ping`` is answered.
- On shutdown: stdin is closed, then the process group gets SIGTERM after 2 s and SIGKILL 2 s later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.background import stop_task
from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal
from switchboard.errors import UpstreamTimeout
from switchboard.mcp.interfaces import Credentials
from switchboard.mcp.relay import Notify
from switchboard.mcp.upstream import (
    CLIENT_INFO,
    PROTOCOL_VERSION,
    Malformed,
    RpcError,
    ServerBusy,
    ServerDown,
    Upstream,
    _result,
    _scrubbed,
    _scrubbed_result,
    _scrubbing,
    server_request_reply,
    too_large,
    tool_failed,
)

log = logging.getLogger("switchboard.mcp.stdio")

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0  # a process up this long resets the backoff
STOP_GRACE = 2.0  # after stdin closes, before SIGTERM; and after SIGTERM, before SIGKILL
STDERR_LINE_CHARS = 1000
STDERR_LINES_PER_MINUTE = 100
STDERR_KEPT = 20
MESSAGE_MARGIN = 64 * 1024
# What a child inherits of the gateway's environment (as the MCP SDK's stdio client does); its
# own ``env`` is added. Never the gateway's secrets.
INHERITED = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    base = {name: value for name in INHERITED
            if (value := os.environ.get(name)) is not None and not value.startswith("()")}
    return base | dict(extra)


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
                log.info("mcp server %s: %d stderr line(s) not logged (over %d a minute)",
                         self.name, self._dropped, STDERR_LINES_PER_MINUTE)
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


async def stop_process(process: asyncio.subprocess.Process, grace: float = STOP_GRACE) -> None:
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


class _Child:
    """One running process: its pipes, the replies awaited by request id."""

    def __init__(self, upstream: StdioUpstream, process: asyncio.subprocess.Process) -> None:
        self.upstream = upstream
        self.process = process
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.progress: dict[Any, Notify] = {}  # progress token -> where its notifications go
        self.background: set[asyncio.Task[None]] = set()
        self.exited = asyncio.Event()
        self.write_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        assert self.process.stdout is not None and self.process.stderr is not None
        name = self.upstream.name
        self.tasks = [asyncio.create_task(self._read(self.process.stdout), name=f"mcp-stdio-{name}-out"),
                      asyncio.create_task(self.upstream.stderr.pump(self.process.stderr),
                                          name=f"mcp-stdio-{name}-err")]

    async def send(self, message: Mapping[str, Any]) -> None:
        stdin = self.process.stdin
        if stdin is None or self.exited.is_set():
            raise ServerDown(f"the MCP server '{self.upstream.name}' is not running")
        async with self.write_lock:
            try:
                stdin.write(orjson.dumps(message) + b"\n")
                await stdin.drain()
            except (ConnectionError, OSError):
                raise ServerDown(f"the MCP server '{self.upstream.name}' stopped reading") from None

    def cancel(self, rid: int, reason: str) -> None:
        """Send ``notifications/cancelled`` for ``rid`` in the background."""
        async def send() -> None:
            with contextlib.suppress(Exception):
                await self.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": rid, "reason": reason}})

        task = asyncio.create_task(send())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        name = self.upstream.name
        error: Exception = ServerDown(f"the MCP server '{name}' exited")
        try:
            while True:
                try:
                    line = await stdout.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return  # the process exited
                except asyncio.LimitOverrunError:
                    limit = self.upstream.max_bytes
                    log.error("mcp server %s: a message over %d bytes; stopping the process", name, limit)
                    error = Malformed(f"the MCP server '{name}' sent a message over {limit} bytes (the "
                                      "larger of mcp.max_argument_bytes and mcp.max_result_bytes, plus "
                                      "64 KiB); it is restarted", code="mcp_result_too_large")
                    await stop_process(self.process, grace=0.1)  # it broke the protocol: no grace
                    return
                if line.strip():
                    await self._message(line)
        finally:
            self.exited.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(error)
            self.pending.clear()

    async def _message(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("mcp server %s: a line that is not JSON on stdout (ignored)", self.upstream.name)
            return
        if not isinstance(message, dict):
            return
        method = message.get("method")
        if method is None:  # a reply
            # Only an integer names a request of the gateway's; any other id (an array, an
            # object: not hashable) is a stray line, ignored rather than ending the reader.
            rid = message.get("id")
            future = self.pending.pop(rid, None) if type(rid) is int else None
            if future is not None and not future.done():
                limit = self.upstream.config.max_result_bytes
                if len(line.rstrip(b"\r\n")) > limit:  # bounded as an HTTP server's reply is
                    future.set_exception(too_large(self.upstream.name, limit))
                else:
                    future.set_result(message)
            return
        if "id" in message:  # a request from the server: ping answered, the rest refused
            with contextlib.suppress(Exception):
                await self.send(server_request_reply(message))
            return
        params = message.get("params")
        if method == "notifications/progress" and isinstance(params, dict):
            token = params.get("progressToken")
            notify = self.progress.get(token) if isinstance(token, str | int) else None
            if notify is not None:
                await notify(message)
        # Other notifications (logging, list changes): not relayed.

    async def close(self) -> None:
        await stop_process(self.process)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _as_token(notify: Notify, token: str | int) -> Notify:
    """``notify`` given each progress message with the caller's own ``token`` back in it."""

    async def relayed(message: dict[str, Any]) -> None:
        params = message.get("params")
        if isinstance(params, dict):
            await notify({**message, "params": {**params, "progressToken": token}})

    return relayed


class StdioUpstream(Upstream):
    """A stdio server as an upstream of the registry: a supervised child process and its session."""

    def __init__(self, server: McpServerConfig, config: McpConfig, credentials: Credentials) -> None:
        super().__init__(server, config, credentials)
        self.max_bytes = max_message_bytes(config)
        self.stderr = _Stderr(server.name)
        self.state = "stopped"  # starting | up | down | stopped
        self.last_error: str | None = None
        self.restarts = 0
        self._child: _Child | None = None
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._rpc_ids = itertools.count(1)

    @property
    def pid(self) -> int | None:
        return self._child.process.pid if self._child is not None else None

    @property
    def down(self) -> bool:
        return self.state != "up"

    def start(self) -> None:
        if self._supervisor is None:
            self._closing = False
            self.state = "starting"
            self._supervisor = asyncio.create_task(self._supervise(), name=f"mcp-stdio-{self.name}")

    async def close(self) -> None:
        self._closing = True
        task, self._supervisor = self._supervisor, None
        await stop_task(task)
        self.state = "stopped"

    async def wait_up(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for the process to be up (tests, the CLI's health)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), seconds)
        return self.state == "up"

    def health(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "restarts": self.restarts,
                "last_error": self.last_error, "stderr": list(self.stderr.last)}

    # -- requests --------------------------------------------------------------------------------

    async def request(self, method: str, params: Mapping[str, Any] | None, principal: Principal | None,
                      *, wait: float | None = None, notify: Notify | None = None) -> dict[str, Any]:
        child = self._child
        if child is None or self.state != "up":
            reason = f" ({self.last_error})" if self.last_error else ""
            raise ServerDown(f"the MCP server '{self.name}' is unavailable{reason}; try again later")
        if self._semaphore.locked():
            raise ServerBusy(f"the MCP server '{self.name}' is busy ({self.server.max_concurrency} calls "
                             "under way); try again shortly")
        bound = wait if wait is not None else self.server.timeout_seconds
        # The server's credentials are its environment: what it answers and reports (progress)
        # is scrubbed of them, as an HTTP server's is of its headers (upstream.py).
        async with self._semaphore:
            try:
                result = await self._call(child, method, params, bound,
                                          _scrubbing(notify, self.server.env))
            except RpcError as exc:
                raise _scrubbed(exc, self.server.env) from None
        if tool_failed(self.name, result):
            return _scrubbed_result(result, self.server.env)
        return result

    async def _call(self, child: _Child, method: str, params: Mapping[str, Any] | None,
                    wait: float, notify: Notify | None = None) -> dict[str, Any]:
        rid = next(self._rpc_ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        meta = params.get("_meta") if params is not None else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if isinstance(meta, dict) and isinstance(token, str | int) and not isinstance(token, bool):
            # Every caller shares the process and chooses its own token (the SDK's is its request
            # id, the same in every session): the server is given one of the gateway's, unique
            # here, and the caller's is put back on what is relayed, so no caller's progress
            # reaches another.
            assert params is not None
            params = {**params, "_meta": {**meta, "progressToken": rid}}
            if notify is not None:
                child.progress[rid] = _as_token(notify, token)
        else:
            token = None
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        child.pending[rid] = future
        try:
            # Writing is bounded too: a process that stops reading its stdin (hung) would hold a
            # large message's write, and every later call waiting for the write lock, unbounded.
            async with asyncio.timeout(wait):
                await child.send(message)
                reply = await future
        except TimeoutError:
            child.cancel(rid, "timed out")  # tell the server to stop working on it
            raise UpstreamTimeout(f"the MCP server '{self.name}' did not answer within {wait:g} s") from None
        except asyncio.CancelledError:
            child.cancel(rid, "cancelled by the gateway's client")
            raise
        finally:
            child.pending.pop(rid, None)
            if token is not None:
                child.progress.pop(rid, None)
        return _result(self.name, reply, rid)

    # -- the process -----------------------------------------------------------------------------

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
                self._ready.clear()
                if self._child is not None:
                    await self._child.close()
                    self._child = None
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
        assert self.server.command, "a stdio server has a command"
        process = await asyncio.create_subprocess_exec(
            *self.server.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=child_environment(self.server.env),
            start_new_session=True, limit=self.max_bytes,
        )
        child = self._child = _Child(self, process)
        child.start()
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        try:
            await self._call(child, "initialize", params, self.server.connect_timeout_seconds)
        except RpcError as exc:  # its message becomes last_error: logged, and told to callers
            raise _scrubbed(exc, self.server.env) from None
        await child.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.state = "up"
        self.last_error = None
        self._ready.set()
        log.info("mcp server %s: up (pid %d)", self.name, process.pid)
        await child.exited.wait()
