"""Upstream MCP servers for the tests, written with the official SDK (``MCPServer``), run as
subprocesses: ``python -m tests.mcp_servers <kind> <port> [transport]``.

Kinds: ``notes`` (tools, a resource, a resource template, a prompt; a tool that hangs, one that
answers a large result, one that fails, one that links and embeds a resource), ``math`` (tools),
``malformed`` (an HTTP server that answers every POST with JSON that is not JSON-RPC),
``cutting`` (a tool whose reply breaks off mid-stream, another that answers, one that refuses
with the Authorization it was sent),
``stray`` (``math`` over HTTP+SSE, its event stream carrying replies to no request, their ids
an array and an object), ``asker`` (tools that ask the client: elicitation, sampling, roots),
``sse-errors`` / ``sse-cr`` (a hand-written HTTP+SSE server sending errors of id null on its
event stream; its lines ending in LF / a bare CR), ``truthy`` (a streamable-HTTP server sending
a stray reply of id ``true`` to initialize),
``bom`` (``math``, every JSON reply and event stream starting with a UTF-8 byte order mark;
transport ``json``: the streamable-HTTP transport answering JSON rather than a stream).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.servers import PORT_ATTEMPTS, Process, free_port, port_taken


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

    # Text that looks like Rich markup: the CLI prints it as written.
    @server.tool(description="Fails [/always] [bold]loudly[/bold]")
    def broken() -> str:
        raise ValueError("this tool is broken")

    @server.tool(description="Links the welcome note, and embeds it")
    def link() -> list[object]:
        from mcp.types import EmbeddedResource, ResourceLink, TextResourceContents

        return [ResourceLink(type="resource_link", uri="note://welcome", name="welcome"),
                EmbeddedResource(type="resource", resource=TextResourceContents(
                    uri="note://welcome", text=notes["welcome"], mime_type="text/plain"))]

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


def cutting_app() -> object:
    """A streamable-HTTP server whose tool ``midclose`` breaks its reply off: half an SSE event is
    sent, then the connection closes. Its tool ``echo`` answers; ``leaky`` refuses with the
    credential it was sent in a JSON-RPC error, ``leaky_result`` in a tool error result;
    ``protocol`` answers the MCP-Protocol-Version header it was sent; ``null_error`` refuses with a
    JSON-RPC error of id null in an SSE answer, ``bool_code`` with an error whose code is
    ``true``; ``odd_error`` answers a result whose ``isError`` is ``1``, not a boolean. It
    answers initialize with the older revision 2025-03-26, whatever the client asked."""
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    tools = [{"name": name, "description": name, "inputSchema": {"type": "object"}}
             for name in ("midclose", "echo", "leaky", "leaky_result", "protocol", "null_error", "bool_code",
                                  "odd_error")]

    async def cut() -> AsyncIterator[bytes]:
        yield b'event: message\ndata: {"jsonrpc": "2.0", "id": '
        raise RuntimeError("the reply breaks off here")

    async def handle(request: Request) -> Response:
        message = await request.json()
        rid, method = message.get("id"), message.get("method")
        if rid is None:
            return Response(status_code=202)
        result: dict[str, object] = {}
        if method == "initialize":
            result = {"protocolVersion": "2025-03-26", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "cutting", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": tools}
        elif method == "tools/call" and message["params"]["name"] == "midclose":
            return StreamingResponse(cut(), media_type="text/event-stream")
        elif method == "tools/call" and message["params"]["name"] == "leaky":
            # Refuses with what it was sent, as "Incorrect API key provided: ..." answers do.
            sent = request.headers.get("authorization", "")
            error = {"code": -32001, "message": f"Incorrect credentials provided: {sent}",
                     "data": {"received": sent, "tail": sent[-14:]}}
            return JSONResponse({"jsonrpc": "2.0", "id": rid, "error": error}, status_code=401)
        elif method == "tools/call" and message["params"]["name"] == "null_error":
            # The error of a request the server could not tie to an id (JSON-RPC: id null).
            error = {"jsonrpc": "2.0", "id": None,
                     "error": {"code": -32003, "message": "refused on the stream"}}
            return Response(f"event: message\ndata: {json.dumps(error)}\n\n", media_type="text/event-stream")
        elif method == "tools/call" and message["params"]["name"] == "bool_code":
            return JSONResponse({"jsonrpc": "2.0", "id": rid, "error": {"code": True, "message": "odd"}})
        elif method == "tools/call" and message["params"]["name"] == "leaky_result":
            # A tool execution error (MCP reports those in the result) quoting what was sent.
            sent = request.headers.get("authorization", "")
            result = {"content": [{"type": "text", "text": f"the API refused {sent}"}],
                      "structuredContent": {"received": sent, "tail": sent[-14:]}, "isError": True}
        elif method == "tools/call" and message["params"]["name"] == "odd_error":
            result = {"content": [{"type": "text", "text": "failed, or not"}], "isError": 1}
        elif method == "tools/call" and message["params"]["name"] == "protocol":
            sent = request.headers.get("mcp-protocol-version", "(none)")
            result = {"content": [{"type": "text", "text": sent}], "isError": False}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "echoed"}], "isError": False}
        return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": result})

    return Starlette(routes=[Route("/mcp", handle, methods=["POST"])])


def bom_app(transport: str) -> object:
    """``math`` whose every JSON or event-stream body starts with a UTF-8 byte order mark, as
    servers writing through a BOM-emitting encoder send: the Content-Length counts it."""
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    server = math_server("bom")
    inner: ASGIApp = (server.sse_app() if transport == "sse"  # type: ignore[attr-defined]
                      else server.streamable_http_app(json_response=transport == "json"))  # type: ignore[attr-defined]
    bom = b"\xef\xbb\xbf"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        marked: list[bool] = []  # one entry once the body's start is known: whether it gets a BOM

        async def with_bom(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                kind = headers.get(b"content-type", b"").split(b";")[0].strip()
                marked.append(kind in (b"application/json", b"text/event-stream"))
                if marked[0] and b"content-length" in headers:
                    headers[b"content-length"] = str(int(headers[b"content-length"]) + len(bom)).encode()
                message = {**message, "headers": list(headers.items())}
            elif message["type"] == "http.response.body" and marked and marked[0]:
                marked[0] = False
                message = {**message, "body": bom + message.get("body", b"")}
            await send(message)

        await inner(scope, receive, with_bom)

    return app


def stray_app() -> object:
    """``math`` over HTTP+SSE whose event stream carries, right after the endpoint event, two
    replies to no request of the client's: their ids an array and an object."""
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    inner: ASGIApp = math_server("stray").sse_app()  # type: ignore[attr-defined]
    stray = (b'event: message\r\ndata: {"jsonrpc": "2.0", "id": [1], "result": {}}\r\n\r\n'
             b'event: message\r\ndata: {"jsonrpc": "2.0", "id": {"a": 1}, '
             b'"error": {"code": 1, "message": "m"}}\r\n\r\n')

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def with_stray(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and b"event: endpoint" in message.get("body", b""):
                await send({"type": "http.response.body", "body": stray, "more_body": True})

        await inner(scope, receive, with_stray)

    return app


def legacy_app(end: bytes) -> object:
    """An HTTP+SSE server written by hand, its event stream's lines ending in ``end`` (LF, or a
    bare CR as the event-stream format allows). Tools: ``echo`` answers; ``wait`` is never
    answered; ``null_error`` answers with a JSON-RPC error of id null on the event stream (one it
    could not tie to a request), ``null_error_all`` does so once a ``wait`` call has arrived. Its
event stream at ``/silent`` never names an endpoint."""
    import uuid
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    tools = [{"name": name, "description": name, "inputSchema": {"type": "object"}}
             for name in ("echo", "wait", "null_error", "null_error_all")]
    streams: dict[str, asyncio.Queue[dict[str, object]]] = {}
    waiting = asyncio.Event()

    def event(kind: str, data: str) -> bytes:
        return f"event: {kind}".encode() + end + f"data: {data}".encode() + end + end

    async def stream(request: Request) -> Response:
        sid = uuid.uuid4().hex
        queue = streams[sid] = asyncio.Queue()

        async def events() -> AsyncIterator[bytes]:
            yield event("endpoint", f"/messages?session_id={sid}")
            while True:
                yield event("message", json.dumps(await queue.get()))

        return StreamingResponse(events(), media_type="text/event-stream")

    async def message(request: Request) -> Response:
        queue = streams[request.query_params["session_id"]]
        body = await request.json()
        rid, method = body.get("id"), body.get("method")
        if rid is None or "method" not in body:
            return Response(status_code=202)
        name = body.get("params", {}).get("name") if method == "tools/call" else None
        result: dict[str, object] = {}
        if method == "initialize":
            result = {"protocolVersion": "2025-03-26", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "legacy", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": tools}
        elif name == "wait":
            waiting.set()
            return Response(status_code=202)
        elif name in ("null_error", "null_error_all"):
            if name == "null_error_all":
                await waiting.wait()
                waiting.clear()  # the next such call waits for a call of its own
            await queue.put({"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32003, "message": "refused on the event stream"}})
            return Response(status_code=202)
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "echoed"}], "isError": False}
        await queue.put({"jsonrpc": "2.0", "id": rid, "result": result})
        return Response(status_code=202)

    async def silent(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b":" + end + end  # a comment, then never the endpoint
            await asyncio.Event().wait()

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/sse", stream, methods=["GET"]),
                             Route("/silent", silent, methods=["GET"]),
                             Route("/messages", message, methods=["POST"])])


def truthy_app(transport: str) -> object:
    """A streamable-HTTP server answering ``initialize`` (the gateway's request 1) first with a
    stray reply of id ``true`` naming revision 2024-11-05, then (in an SSE answer; transport
    ``json``: only the stray one, as JSON) its reply of id 1 naming 2025-03-26. Its tool
    ``protocol`` answers the MCP-Protocol-Version header it was sent."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def initialized(rid: object, version: str) -> dict[str, object]:
        return {"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": version, "capabilities": {"tools": {}},
            "serverInfo": {"name": "truthy", "version": "1"}}}

    async def handle(request: Request) -> Response:
        message = await request.json()
        rid, method = message.get("id"), message.get("method")
        if rid is None:
            return Response(status_code=202)
        if method == "initialize":
            stray = initialized(True, "2024-11-05")
            if transport == "json":
                return JSONResponse(stray)
            body = "".join(f"event: message\ndata: {json.dumps(m)}\n\n"
                           for m in (stray, initialized(rid, "2025-03-26")))
            return Response(body, media_type="text/event-stream")
        result: dict[str, object] = {}
        if method == "tools/list":
            result = {"tools": [{"name": "protocol", "description": "p", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            sent = request.headers.get("mcp-protocol-version", "(none)")
            result = {"content": [{"type": "text", "text": sent}], "isError": False}
        return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": result})

    return Starlette(routes=[Route("/mcp", handle, methods=["POST"])])


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    transport = sys.argv[3] if len(sys.argv) > 3 else "streamable-http"
    apps = {"malformed": malformed_app, "cutting": cutting_app, "stray": stray_app,
            "bom": lambda: bom_app(transport), "sse-errors": lambda: legacy_app(b"\n"),
            "sse-cr": lambda: legacy_app(b"\r"), "truthy": lambda: truthy_app(transport)}
    if kind in apps:
        import uvicorn

        uvicorn.run(apps[kind](), host="127.0.0.1", port=port, log_level="info")  # type: ignore[arg-type]
        return
    if kind == "asker":
        from tests.mcp_asker import asker_server

        asker_server(kind).run(transport, host="127.0.0.1", port=port)  # type: ignore[attr-defined]
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


def _spawn(kind: str, transport: str, port: int) -> McpUpstream:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_servers", kind, str(port), transport],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    return McpUpstream(port, Process(proc), transport)


def _wait(server: McpUpstream, deadline: float) -> None:
    """Until the server says it listens (uvicorn's line, after its bind): an answer on its port
    alone could come from another process that took the port first."""
    try:
        server.process.wait_for("Uvicorn running on", timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise TimeoutError(f"MCP server did not start:\n{server.process.output}") from None
    except RuntimeError:
        raise RuntimeError(f"MCP server exited:\n{server.process.output}") from None


def _wait_or_move(server: McpUpstream, kind: str, deadline: float) -> McpUpstream:
    """``server`` once it answers; started again on a new port while another process took its
    port before it listened (tests/servers.py free_port)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            _wait(server, deadline)
            return server
        except RuntimeError:
            if attempt == PORT_ATTEMPTS or not port_taken(server.process):
                raise
            server = _spawn(kind, server.transport, free_port())
    raise AssertionError("unreachable")


def start_mcp_server(kind: str, transport: str = "streamable-http", port: int | None = None) -> McpUpstream:
    server = _spawn(kind, transport, port or free_port())
    if port is not None:  # a port the test chose (already in a configuration): that one or none
        _wait(server, time.monotonic() + 60)
        return server
    return _wait_or_move(server, kind, time.monotonic() + 60)


def start_mcp_servers(wanted: dict[str, tuple[str, str]]) -> dict[str, McpUpstream]:
    """Several servers started at once: {name: (kind, transport)}."""
    servers = {name: _spawn(kind, transport, free_port()) for name, (kind, transport) in wanted.items()}
    deadline = time.monotonic() + 60
    return {name: _wait_or_move(server, wanted[name][0], deadline) for name, server in servers.items()}


if __name__ == "__main__":
    main()
