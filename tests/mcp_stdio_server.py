"""A small MCP server written with the official SDK, run by the gateway over stdio (or, with
``http PORT``, over streamable HTTP; with ``sse PORT``, over the older HTTP+SSE transport):
``echo``, ``add``, ``big`` (a result of N bytes), ``stray`` (writes a reply to no request, its id
an array, on stdout before it answers), ``crash``
(exits the process), ``slow`` (reports progress), ``wait`` and ``cancellations`` (how many calls
of ``wait`` were cancelled), ``leaky`` (fails quoting the ``STDIO_TEST_TOKEN`` its environment
holds), ``leaky_progress`` (reports progress quoting that token, or over HTTP the Authorization
it was sent), ``freeze`` (stops the whole process for N seconds: it reads and answers nothing, as
a hung server)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent

server = MCPServer("stdio-test")
cancelled: list[float] = []


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
def stray() -> str:
    """Write a JSON-RPC reply whose id is an array (no request's) on stdout, then answer."""
    from mcp.server import stdio

    # The SDK serves the wire from a private duplicate of fd 1 (fd 1 itself goes to stderr).
    claim = stdio._claims.get(1)
    wire = claim.private_fd if claim is not None and claim.private_fd is not None else 1
    os.write(wire, b'{"jsonrpc": "2.0", "id": [1], "result": {}}\n{"jsonrpc": "2.0", "id": {"a": 1}, '
                   b'"error": {"code": 1, "message": "m"}}\n')
    return "answered"


@server.tool()
def crash() -> str:
    """End the server's process."""
    os._exit(3)


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Report progress ``steps`` times."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(0.05)
    return "done"


@server.tool()
async def wait(seconds: float) -> str:
    """Wait (the test cancels it)."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.append(seconds)
        raise
    return "waited"


@server.tool()
def leaky() -> CallToolResult:
    """Fail, quoting the credential in the environment (as "invalid token ..." answers do)."""
    text = f"the API refused the token {os.environ.get('STDIO_TEST_TOKEN', '')}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


@server.tool()
async def leaky_progress(ctx: Context) -> str:
    """Report progress quoting the credential it was given (its environment's, or over HTTP the
    Authorization header of the request)."""
    request = ctx.request_context.request
    sent = (request.headers.get("authorization", "") if request is not None
            else os.environ.get("STDIO_TEST_TOKEN", ""))
    await ctx.report_progress(1, 1, f"working with {sent}")
    return "done"


@server.tool()
def freeze(seconds: float) -> str:
    """Stop the process for ``seconds`` (a helper wakes it up): stdin is not read meanwhile."""
    subprocess.Popen(["sh", "-c", f"sleep {seconds}; kill -CONT {os.getpid()}"])
    os.kill(os.getpid(), signal.SIGSTOP)
    return "thawed"


@server.tool()
def cancellations() -> int:
    """How many calls of ``wait`` were cancelled."""
    return len(cancelled)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))  # type: ignore[call-overload]
    elif len(sys.argv) > 2 and sys.argv[1] == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))  # type: ignore[call-overload]
    else:
        server.run("stdio")
