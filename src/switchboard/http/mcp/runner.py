"""Tool calls made by the gateway itself (the tool loop of chat and Responses requests), through
the same stages as a ``tools/call`` on ``/mcp``: :meth:`McpToolbox.call_tool` uses this.

Each call is a request of its own: its own request id, record, limits, budget charge, bodies and
metrics; the post-response work (settlements, the request log) runs when the call is done.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.context import Principal, Reply, RequestContext
from switchboard.errors import GatewayError
from switchboard.http.endpoint import request_id
from switchboard.http.mcp.api import MCP
from switchboard.pipeline.chain import Handler


class ToolRunner:
    def __init__(self, chain: Handler, deadline_seconds: float) -> None:
        self._chain = chain
        self._deadline = deadline_seconds

    async def __call__(self, principal: Principal | None, name: str,
                       arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The tool's ``CallToolResult``; a GatewayError when the call is refused or fails."""
        started = time.perf_counter()
        params = {"name": name, "arguments": dict(arguments)}
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
        ctx = RequestContext(request_id({}), "mcp", MCP, {}, body, started, path="/mcp",
                             deadline=started + self._deadline)
        ctx.principal = principal
        ctx.request = {"id": 1, "method": "tools/call", "params": params, "notification": False}
        try:
            result = await self._chain(ctx)
        except GatewayError as error:
            ctx.outcome.failed(error)
            raise
        finally:
            ctx.outcome.finished_at = time.perf_counter()
            if ctx.outcome.status == 0:
                ctx.outcome.status = 200
            if ctx.post_response is not None and (waits := ctx.run_after_response()) is not None:
                await waits
        assert isinstance(result, Reply)
        answer: Mapping[str, Any] = result.body["result"]
        return answer
