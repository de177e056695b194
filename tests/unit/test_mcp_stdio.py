"""stdio MCP servers (mcp/stdio.py): a managed child process running a server written with the
official SDK (tests/mcp_stdio_server.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.config.schema import Settings
from switchboard.mcp import stdio
from switchboard.mcp.stdio import ServerDown, StdioServer, StdioServers

SCRIPT = str(Path(__file__).parents[1] / "mcp_stdio_server.py")
SERVER = McpServerConfig(
    name="local",
    transport="stdio",
    command=[sys.executable, SCRIPT],
    env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    connect_timeout_seconds=30,
)
ALLOWED = McpConfig(allow_stdio=True, max_result_bytes=1024 * 1024)


async def until(check, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_stdio_server_is_listed_called_restarted_and_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "INITIAL_BACKOFF", 0.05)
    server = StdioServer(SERVER, ALLOWED)
    server.start()
    try:
        session = await server.session(wait=30)
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} >= {"echo", "add", "crash"}
        result = await session.call_tool("echo", {"text": "hi"})
        assert result.content[0].text == "echo: hi"  # type: ignore[union-attr]
        # Its stderr is read (logged, the last lines kept).
        await until(lambda: any("echo called" in line for line in server.health()["stderr"]))
        first = server.pid
        assert first is not None and server.health()["state"] == "up"
        # The process exits: the call fails, the server is restarted with a new process.
        with pytest.raises(Exception):  # noqa: B017 - the connection closes under the call
            await session.call_tool("crash", {})
        await until(lambda: server.restarts >= 1 and server.state == "up")
        assert server.pid != first and not alive(first)
        session = await server.session(wait=30)
        result = await session.call_tool("add", {"a": 2, "b": 3})
        assert result.content[0].text == "5"  # type: ignore[union-attr]
        pid = server.pid
    finally:
        await server.close()
    assert pid is not None and not alive(pid)  # stopped with the gateway
    with pytest.raises(ServerDown):
        await server.session()


async def test_output_over_the_bound_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "INITIAL_BACKOFF", 0.05)
    server = StdioServer(SERVER, McpConfig(allow_stdio=True, max_result_bytes=1024, max_argument_bytes=1024))
    server.start()
    try:
        session = await server.session(wait=30)
        first = server.pid
        with pytest.raises(Exception):  # noqa: B017 - the process is stopped under the call
            await session.call_tool("big", {"size": 200_000})
        await until(lambda: server.restarts >= 1 and server.state == "up")
        assert server.pid != first
        session = await server.session(wait=30)
        assert (await session.call_tool("big", {"size": 10})).content[0].text == "x" * 10  # type: ignore[union-attr]
    finally:
        await server.close()


async def test_a_command_that_fails_is_down_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "INITIAL_BACKOFF", 0.05)
    broken = SERVER.model_copy(update={"command": [sys.executable, "-c", "import sys; sys.exit(1)"]})
    servers = StdioServers([broken], ALLOWED)
    servers.start()
    server = servers.get("local")
    assert server is not None
    try:
        await until(lambda: server.restarts >= 2)
        with pytest.raises(ServerDown, match="'local' is not available"):
            await server.session()
    finally:
        await servers.close()


def test_stdio_servers_are_refused_unless_allowed() -> None:
    entry = {"name": "local", "transport": "stdio", "command": ["mcp-server"]}
    with pytest.raises(ValidationError, match=r"mcp_servers\[0\] \('local'\).*mcp.allow_stdio"):
        Settings.model_validate({"auth": {"master_key": "sk-test-master-key"}, "mcp_servers": [entry]})
    settings = Settings.model_validate(
        {"auth": {"master_key": "sk-test-master-key"}, "mcp_servers": [entry], "mcp": {"allow_stdio": True}}
    )
    assert settings.mcp_servers[0].command == ["mcp-server"]
    with pytest.raises(ValueError, match="allow_stdio"):
        StdioServers(settings.mcp_servers, McpConfig())
    with pytest.raises(ValidationError, match="needs a command"):
        McpServerConfig.model_validate({"name": "x", "transport": "stdio"})
