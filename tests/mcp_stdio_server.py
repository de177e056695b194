"""A small MCP server over stdio (the official SDK), for the stdio tests: ``echo``, ``add``,
``big`` (a result of N bytes), ``crash`` (exits the process) and ``slow`` (reports progress)."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("stdio-test")


@server.tool()
def echo(text: str) -> str:
    """Say it back."""
    print(f"echo called with {len(text)} characters", file=sys.stderr, flush=True)
    return f"echo: {text}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def big(size: int) -> str:
    """A result of ``size`` characters."""
    return "x" * size


@server.tool()
def crash() -> str:
    """End the server's process."""
    os._exit(3)


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Report progress ``steps`` times."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps)
    return "done"


if __name__ == "__main__":
    server.run("stdio")
