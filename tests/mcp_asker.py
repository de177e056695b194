"""A test MCP server whose tools ask the client (elicitation, sampling, roots), run through
tests/mcp_servers.py (``asker``). No ``from __future__ import annotations``: the SDK reads the
tools' annotations (``Context``) at definition time."""

from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.message import ServerMessageMetadata
from mcp.types import ListRootsRequest, ListRootsResult, SamplingMessage, TextContent
from pydantic import BaseModel


class Person(BaseModel):
    name: str


def asker_server(name: str) -> MCPServer:
    server = MCPServer(name)

    @server.tool(description="Asks the user for a name")
    async def greet(ctx: Context) -> str:
        answer = await ctx.elicit("What is your name?", schema=Person)
        if answer.action == "accept":
            return f"hello {answer.data.name}"
        return f"no name ({answer.action})"

    @server.tool(description="Asks the user for a name, quoting the credential it was sent")
    async def greet_leaky(ctx: Context) -> str:
        request = ctx.request_context.request
        sent = request.headers.get("authorization", "") if request is not None else ""
        answer = await ctx.elicit(f"What is your name? (sent: {sent})", schema=Person)
        return f"hello {answer.data.name}" if answer.action == "accept" else f"no name ({answer.action})"

    @server.tool(description="Asks the client's model")
    async def think(ctx: Context, question: str) -> str:
        message = SamplingMessage(role="user", content=TextContent(type="text", text=question))
        # Related to the tool call: sent on its stream (what the gateway relays).
        result = await ctx.session.create_message([message], max_tokens=20, related_request_id=ctx.request_id)
        return f"the model said: {getattr(result.content, 'text', '')}"

    @server.tool(description="Lists the client's roots")
    async def roots(ctx: Context) -> str:
        related = ServerMessageMetadata(related_request_id=ctx.request_id)
        listed = await ctx.session.send_request(ListRootsRequest(), ListRootsResult, metadata=related)
        return ",".join(str(root.uri) for root in listed.roots)

    return server
