"""The tool loop (mcp/loop.py) against a fake toolbox and a scripted model."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal, Reply, RequestContext, Result, StreamReply
from switchboard.errors import InvalidRequest, RateLimited
from switchboard.http import openai_api
from switchboard.http.responses.response import from_chat
from switchboard.http.responses.stream import StreamEncoder
from switchboard.mcp.interfaces import Listing
from switchboard.mcp.loop import McpLoopStage, ToolStepsExceeded
from switchboard.mcp.tool_spec import split_tools

SERVERS = [
    McpServerConfig(name="files", url="http://127.0.0.1:1/mcp"),
    McpServerConfig(name="other", url="http://127.0.0.1:2/mcp", tenant="t2"),
]


def configured_servers(servers: list[McpServerConfig]) -> Any:
    def visible(principal: Principal | None) -> dict[str, McpServerConfig]:
        tenant = principal.tenant_id if principal is not None else None
        return {s.name: s for s in servers if s.tenant is None or s.tenant == tenant}

    return visible


class FakeToolbox:
    def __init__(self, denied: set[str] = frozenset(), fail: dict[str, Exception] | None = None) -> None:
        self.denied = denied
        self.fail = fail or {}
        self.calls: list[tuple[str, Mapping[str, Any]]] = []

    async def list_tools(self, principal: Principal | None) -> Listing:
        tools = [
            {
                "name": "files__read",
                "description": "Read a file",
                "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                "annotations": {"readOnlyHint": True},
            },
            {"name": "files__write", "description": "Write a file", "inputSchema": {"type": "object"}},
            {"name": "files__odd name!", "inputSchema": {"type": "object"}},
        ]
        return Listing([t for t in tools if t["name"] not in self.denied], ())

    async def call_tool(
        self, principal: Principal | None, name: str, arguments: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        self.calls.append((name, dict(arguments)))
        if name in self.fail:
            raise self.fail[name]
        if name == "files__write":
            return {"content": [{"type": "text", "text": "read-only disk"}], "isError": True}
        return {"content": [{"type": "text", "text": f"contents of {arguments.get('path')}"}]}


class Model:
    """A scripted model: each step's answer in turn; records what each step was sent."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.sent: list[RequestContext] = []

    async def __call__(self, ctx: RequestContext) -> Result:
        self.sent.append(ctx)
        message = self.answers.pop(0) if self.answers else {"role": "assistant", "content": "done"}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        ctx.response_headers["x-switchboard-cost-usd"] = "0.000001"
        return Reply(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
        )


def call(name: str, arguments: str, cid: str = "c1") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}],
    }


def context(
    tools: list[Any], *, stream: bool = False, principal: Principal | None = None, **extra: Any
) -> RequestContext:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, **extra}
    ctx = RequestContext(
        "rid",
        "chat",
        openai_api.CHAT,
        {},
        b"",
        time.perf_counter(),
        request=request,
        principal=principal or Principal(id="k", role="member", tenant_id="t1"),
    )
    ctx.stream = stream
    return ctx


def stage(toolbox: FakeToolbox | None, steps: int = 8) -> McpLoopStage:
    return McpLoopStage(lambda: toolbox, configured_servers(SERVERS), McpConfig(max_tool_steps=steps))


MCP = {"type": "mcp", "server_label": "files", "require_approval": "never"}


async def test_the_loop_calls_the_tools_and_returns_the_items() -> None:
    toolbox = FakeToolbox()
    model = Model(
        call("files__read", '{"path": "a.txt"}'), {"role": "assistant", "content": "It says hello."}
    )
    ctx = context([MCP])
    result = await stage(toolbox)(ctx, model)
    assert isinstance(result, Reply)
    assert toolbox.calls == [("files__read", {"path": "a.txt"})]
    # Two model calls, each its own context (its own usage record), offered the server's tools.
    assert [s.request_id for s in model.sent] == ["rid.1", "rid.2"]
    offered = [t["function"]["name"] for t in model.sent[0].request["tools"]]
    assert offered == ["files__read", "files__write", "files__odd_name_"]
    assert model.sent[0].request.get("stream") is None
    assert model.sent[1].request["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "contents of a.txt",
    }
    out = result.body["mcp_output"]
    assert [i["type"] for i in out] == ["mcp_list_tools", "mcp_call"]
    assert [t["name"] for t in out[0]["tools"]] == ["read", "write", "odd name!"]
    assert out[1] | {"id": None} == {
        "id": None,
        "type": "mcp_call",
        "server_label": "files",
        "name": "read",
        "arguments": '{"path": "a.txt"}',
        "output": "contents of a.txt",
        "error": None,
        "status": "completed",
        "approval_request_id": None,
    }
    assert result.body["usage"] == {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}
    assert ctx.response_headers["x-switchboard-mcp-steps"] == "2"
    # As a Response object: the loop's items first, then the answer.
    response = from_chat(result.body, {"id": "resp_1"})
    assert [i["type"] for i in response["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    # Each step's post-response work runs after the response.
    ran: list[str] = []
    model.sent[0].after(lambda c: _append(ran, c.request_id))
    if (waits := ctx.run_after_response()) is not None:  # None: no callback waited
        await waits
    assert ran == ["rid.1"] and model.sent[0].outcome.status == 200


async def _append(into: list[str], value: str) -> None:
    into.append(value)


async def test_allowed_tools_and_denied_tools_are_not_offered() -> None:
    toolbox = FakeToolbox(denied={"files__write"})
    model = Model()
    await stage(toolbox)(context([{**MCP, "allowed_tools": ["read", "write"]}]), model)
    assert [t["function"]["name"] for t in model.sent[0].request["tools"]] == ["files__read"]
    model = Model()
    await stage(FakeToolbox())(context([{**MCP, "allowed_tools": {"read_only": True}}]), model)
    assert [t["function"]["name"] for t in model.sent[0].request["tools"]] == ["files__read"]


async def test_a_call_to_a_tool_not_offered_is_the_clients_turn() -> None:
    toolbox = FakeToolbox(denied={"files__write"})
    model = Model(call("files__write", "{}"))
    result = await stage(toolbox)(context([MCP]), model)
    assert toolbox.calls == []  # never called: not offered, so not the loop's
    assert isinstance(result, Reply) and len(model.sent) == 1


async def test_the_step_bound() -> None:
    toolbox = FakeToolbox()
    model = Model(*[call("files__read", "{}", f"c{i}") for i in range(5)])
    with pytest.raises(ToolStepsExceeded) as info:
        await stage(toolbox, steps=3)(context([MCP]), model)
    assert info.value.status == 400 and info.value.code == "mcp_max_tool_steps"
    assert len(model.sent) == 3 and len(toolbox.calls) == 2


async def test_tool_errors_are_fed_back_and_recorded() -> None:
    toolbox = FakeToolbox(fail={"files__read": RateLimited("tool rate limit")})
    model = Model(call("files__read", "{}"), call("files__write", '{"x": 1}'), call("files__read", "[1]"))
    result = await stage(toolbox)(context([MCP]), model)
    assert isinstance(result, Reply)
    calls = [i for i in result.body["mcp_output"] if i["type"] == "mcp_call"]
    assert [c["status"] for c in calls] == ["failed"] * 3
    assert calls[0]["error"] == {"type": "http_error", "code": 429, "message": "tool rate limit"}
    assert calls[1]["error"]["type"] == "mcp_tool_execution_error"
    assert calls[2]["error"]["code"] == -32602  # arguments not an object: never sent
    assert model.sent[1].request["messages"][-1]["content"] == "Error: tool rate limit"


async def test_streamed_requests_get_the_answer_as_a_stream() -> None:
    model = Model(call("files__read", "{}"), {"role": "assistant", "content": "It says hello."})
    ctx = context([MCP], stream=True)
    result = await stage(FakeToolbox())(ctx, model)
    assert isinstance(result, StreamReply)
    chunks = [c async for batch in result.chunks for c in batch]
    assert chunks[0]["mcp_output"][1]["type"] == "mcp_call"
    assert chunks[1]["choices"][0]["delta"]["content"] == "It says hello."
    encoder = StreamEncoder({"id": "resp_1", "output": []})
    events = [
        orjson.loads(line[6:])
        for c in chunks
        for line in (encoder.start() + encoder.feed(c) + encoder.end()).decode().splitlines()
        if line.startswith("data: ")
    ]
    kinds = [e["type"] for e in events]
    assert "response.mcp_list_tools.completed" in kinds and "response.mcp_call.completed" in kinds
    final = [e for e in events if e["type"] == "response.completed"][-1]["response"]
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]


async def test_requests_without_mcp_tools_pass() -> None:
    model = Model()
    ctx = context([{"type": "function", "function": {"name": "f"}}])
    await stage(None)(ctx, model)
    assert model.sent == [ctx]


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"server_label": "nope"}, "tools[0].server_label", "mcp_server_not_found"),
    ({"server_label": "other"}, "tools[0].server_label", "mcp_server_not_found"),  # another tenant's
    ({"server_label": None}, "tools[0].server_label", "missing_required_parameter"),
    ({"server_label": "x" * 65}, "tools[0].server_label", "invalid_value"),
    ({"require_approval": "always"}, "tools[0].require_approval", "unsupported_parameter"),
    (
        {"require_approval": {"never": {"tool_names": ["read"]}}},
        "tools[0].require_approval",
        "unsupported_parameter",
    ),
    ({"server_url": "http://evil.example/mcp"}, "tools[0].server_url", "invalid_value"),
    ({"server_url": 3}, "tools[0].server_url", "invalid_type"),
    ({"headers": {"Authorization": "Bearer x"}}, "tools[0].headers", "unsupported_parameter"),
    ({"authorization": "tok"}, "tools[0].authorization", "unsupported_parameter"),
    ({"connector_id": "connector_gmail"}, "tools[0].connector_id", "unsupported_parameter"),
    ({"allowed_tools": "read"}, "tools[0].allowed_tools", "invalid_type"),
    ({"allowed_tools": [1]}, "tools[0].allowed_tools", "invalid_type"),
    ({"allowed_tools": {"bogus": 1}}, "tools[0].allowed_tools.bogus", "unknown_parameter"),
    ({"allowed_tools": {"read_only": "yes"}}, "tools[0].allowed_tools.read_only", "invalid_type"),
    ({"nonsense": 1}, "tools[0].nonsense", "unknown_parameter"),
]


@pytest.mark.parametrize(("extra", "param", "code"), BAD)
async def test_bad_mcp_tools_are_refused(extra: dict[str, Any], param: str, code: str) -> None:
    model = Model()
    with pytest.raises(InvalidRequest) as info:
        await stage(FakeToolbox())(context([{**MCP, **extra}]), model)
    assert (info.value.status, info.value.param, info.value.code) == (400, param, code)
    assert model.sent == []


async def test_the_registered_url_and_twice_named_servers() -> None:
    model = Model()
    await stage(FakeToolbox())(context([{**MCP, "server_url": "http://127.0.0.1:1/mcp/"}]), model)
    assert len(model.sent) == 1
    with pytest.raises(InvalidRequest, match="named twice"):
        split_tools([MCP, MCP])
    with pytest.raises(InvalidRequest) as info:
        await stage(None)(context([MCP]), Model())
    assert info.value.code == "mcp_unavailable"
