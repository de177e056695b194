"""stdio MCP servers (mcp/stdio.py): a managed child process running a server written with the
official SDK (tests/mcp_stdio_server.py), used through the upstream interface."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.config.schema import Settings
from switchboard.errors import GatewayError
from switchboard.mcp import stdio
from switchboard.mcp.registry import Registry
from switchboard.mcp.stdio import StdioUpstream
from switchboard.mcp.upstream import ConfigCredentials, RpcError, ServerDown

SCRIPT = str(Path(__file__).parents[1] / "mcp_stdio_server.py")
SERVER = McpServerConfig(name="local", transport="stdio", command=[sys.executable, SCRIPT],
                         env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")}, connect_timeout_seconds=60)
ALLOWED = McpConfig(allow_stdio=True, max_result_bytes=1024 * 1024)


async def until(check: Callable[[], object], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def upstream(config: McpConfig = ALLOWED, server: McpServerConfig = SERVER) -> StdioUpstream:
    return StdioUpstream(server, config, ConfigCredentials())


async def test_a_stdio_server_is_listed_called_restarted_and_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "INITIAL_BACKOFF", 0.05)
    server = upstream()
    server.start()
    try:
        assert await server.wait_up(60)
        tools = await server.request("tools/list", None, None)
        assert {t["name"] for t in tools["tools"]} >= {"echo", "add", "crash"}
        result = await server.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, None)
        assert result["content"][0]["text"] == "echo: hi"
        with pytest.raises(RpcError):  # the server's own JSON-RPC error, relayed
            await server.request("no/such/method", None, None)
        # Its stderr is read (logged, the last lines kept).
        await until(lambda: any("echo called" in line for line in server.health()["stderr"]))
        first = server.pid
        assert first is not None and server.health()["state"] == "up" and not server.down
        # The process exits: the call under way fails at once, the server is started again.
        with pytest.raises(GatewayError) as info:
            await server.request("tools/call", {"name": "crash", "arguments": {}}, None)
        assert info.value.code == "mcp_server_unavailable"
        await until(lambda: server.restarts >= 1 and server.state == "up")
        assert server.pid != first and not alive(first)
        result = await server.request("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}, None)
        assert result["content"][0]["text"] == "5"
        pid = server.pid
    finally:
        await server.close()
    assert pid is not None and not alive(pid)  # stopped with the gateway
    with pytest.raises(ServerDown):
        await server.request("tools/list", None, None)


async def test_output_over_the_bound_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "INITIAL_BACKOFF", 0.05)
    server = upstream(McpConfig(allow_stdio=True, max_result_bytes=1024, max_argument_bytes=1024))
    server.start()
    try:
        assert await server.wait_up(60)
        first = server.pid
        with pytest.raises(GatewayError) as info:
            await server.request("tools/call", {"name": "big", "arguments": {"size": 200_000}}, None)
        assert info.value.code == "mcp_result_too_large"
        await until(lambda: server.restarts >= 1 and server.state == "up")
        assert server.pid != first
        result = await server.request("tools/call", {"name": "big", "arguments": {"size": 10}}, None)
        assert result["content"][0]["text"] == "x" * 10
    finally:
        await server.close()


async def test_a_command_that_fails_is_down_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "INITIAL_BACKOFF", 0.05)
    broken = SERVER.model_copy(update={"command": [sys.executable, "-c", "import sys; sys.exit(1)"]})
    registry = Registry([broken], ALLOWED)
    server = registry.get("local", None)
    assert isinstance(server, StdioUpstream)
    registry.start()
    try:
        await until(lambda: server.restarts >= 2)
        assert server.down
        with pytest.raises(ServerDown, match="'local' is unavailable"):
            await server.request("tools/list", None, None)
    finally:
        await registry.close()


async def test_a_tool_error_quoting_the_servers_credential_has_it_redacted() -> None:
    """A stdio server's credentials are its ``env``: a tool failing with one in its message (a
    result with ``isError``) has it replaced by [redacted], as an HTTP server's headers are."""
    secret = "stdio-token-0123456789abcdef"
    env = {**SERVER.env, "STDIO_TEST_TOKEN": secret}
    server = upstream(server=SERVER.model_copy(update={"env": env}))
    server.start()
    try:
        assert await server.wait_up(60)
        result = await server.request("tools/call", {"name": "leaky", "arguments": {}}, None)
        assert result["isError"] is True
        text = result["content"][0]["text"]
        assert "the API refused the token [redacted]" in text and secret[-12:] not in text
    finally:
        await server.close()


def test_stdio_servers_are_refused_unless_allowed() -> None:
    entry = {"name": "local", "transport": "stdio", "command": ["mcp-server"]}
    with pytest.raises(ValidationError, match=r"mcp_servers\[0\] \('local'\).*mcp.allow_stdio"):
        Settings.model_validate({"auth": {"master_key": "sk-test-master-key"}, "mcp_servers": [entry]})
    settings = Settings.model_validate({"auth": {"master_key": "sk-test-master-key"}, "mcp_servers": [entry],
                                        "mcp": {"allow_stdio": True}})
    assert settings.mcp_servers[0].command == ["mcp-server"]
    with pytest.raises(ValidationError, match="transport stdio needs one"):
        McpServerConfig.model_validate({"name": "x", "transport": "stdio"})
    # Never through the admin API: a command to run comes from the YAML only.
    with pytest.raises(ValueError, match="YAML only"):
        Registry([], ALLOWED).put(settings.mcp_servers[0])
