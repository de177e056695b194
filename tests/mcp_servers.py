"""Upstream MCP servers for the tests, written with the official SDK (``MCPServer``), run as
subprocesses: ``python -m tests.mcp_servers <kind> <port> [transport]``.

Kinds: ``notes`` (tools, a resource, a resource template, a prompt; a tool that hangs, one that
answers a large result, one that fails), ``math`` (tools), ``malformed`` (an HTTP server that
answers every POST with JSON that is not JSON-RPC).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from tests.servers import Process, free_port


def notes_server(name: str) -> object:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name)
    notes: dict[str, str] = {"welcome": "hello from " + name}

    @server.tool(description="Add a note. " + "x" * 10_000)
    def add_note(title: str, text: str) -> str:
        notes[title] = text
        return f"saved {title}"

    @server.tool(description="Read a note")
    def read_note(title: str) -> str:
        return notes.get(title, "no such note")

    @server.tool(description="Delete a note")
    def delete_note(title: str) -> str:
        notes.pop(title, None)
        return f"deleted {title}"

    @server.tool(description="Never answers")
    async def hang(seconds: float = 3600) -> str:
        await asyncio.sleep(seconds)
        return "late"

    @server.tool(description="Answers a large result")
    def big(size: int) -> str:
        return "b" * size

    @server.tool(description="Fails")
    def broken() -> str:
        raise ValueError("this tool is broken")

    @server.resource("note://welcome", name="welcome", description="The welcome note", mime_type="text/plain")
    def welcome() -> str:
        return notes["welcome"]

    @server.resource("note://by-title/{title}", name="by_title", description="A note by title")
    def by_title(title: str) -> str:
        return notes.get(title, "no such note")

    @server.prompt(description="Summarize a note")
    def summarize(title: str) -> str:
        return f"Summarize the note {title!r} of {name}."

    return server


def math_server(name: str) -> object:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name)

    @server.tool(description="Add two integers")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Multiply two integers")
    def multiply(a: int, b: int) -> int:
        return a * b

    return server


def malformed_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def handle(request: object) -> Response:
        return JSONResponse({"not": "json-rpc"}, headers={"mcp-session-id": "x"})

    return Starlette(routes=[Route("/mcp", handle, methods=["POST", "GET", "DELETE"])])


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    transport = sys.argv[3] if len(sys.argv) > 3 else "streamable-http"
    if kind == "malformed":
        import uvicorn

        uvicorn.run(malformed_app(), host="127.0.0.1", port=port, log_level="info")  # type: ignore[arg-type]
        return
    server = notes_server(kind) if kind.startswith("notes") else math_server(kind)
    server.run(transport, host="127.0.0.1", port=port)  # type: ignore[attr-defined]


@dataclass
class McpUpstream:
    port: int
    process: Process
    transport: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + ("/sse" if self.transport == "sse" else "/mcp")


def start_mcp_server(kind: str, transport: str = "streamable-http") -> McpUpstream:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_servers", kind, str(port), transport],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    process = Process(proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=1) as client:
                client.get(f"http://127.0.0.1:{port}/")
            return McpUpstream(port, process, transport)
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"MCP server {kind} exited:\n{process.output}") from None
            time.sleep(0.1)
    raise TimeoutError(f"MCP server {kind} did not start:\n{process.output}")


if __name__ == "__main__":
    main()
