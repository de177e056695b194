"""The tool loop: MCP tools through the LLM endpoints (docs/mcp.md, "Tools through the LLM
endpoints").

A chat or Responses request naming MCP servers in ``tools`` (OpenAI's Responses ``mcp`` tool
type, also accepted by ``/v1/chat/completions`` as an extension)::

    {"type": "mcp", "server_label": "<registered server>", "allowed_tools": [...],
     "require_approval": "never"}

is served by :class:`McpLoopStage`, placed right after decoding. It lists the tools the caller
may use on those servers (the :class:`~switchboard.mcp.interfaces.Toolbox`: the caller's
permissions decide), offers them to the model as function tools named ``<server>__<tool>``,
runs the model's calls to them through the toolbox (so each call has its permissions, limits,
budgets and request-log record), feeds the results back and asks again, at most
``mcp.max_tool_steps`` model calls. Each model call runs the rest of the chain (access, routing,
limits, budgets, usage) in a context of its own, so each is its own usage-ledger record, with
the request id ``<request id>.<step>``.

The answer is the last model call's, with the loop's items under ``mcp_output`` (canonical, read
by the Responses encoder as ``mcp_list_tools`` and ``mcp_call`` output items; sent as is by the
chat endpoint, an extension). Model calls are made unstreamed; a streamed request gets the
loop's items and the final answer as a stream once the loop is done.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard.config.mcp import SEPARATOR, McpConfig, McpServerConfig
from switchboard.context import Principal, Reply, RequestContext, Result, Spent, StreamReply
from switchboard.errors import GatewayError, InternalError, InvalidRequest
from switchboard.mcp.interfaces import Listing, Toolbox
from switchboard.pipeline.chain import Handler
from switchboard.spend.cost import format_nano_usd

JSON = dict[str, Any]

# The keys of an ``mcp`` tool; the ones in _REFUSED are OpenAI's but not the gateway's (the
# gateway holds the servers' URLs and credentials: nothing a caller sends reaches an upstream).
_KEYS = frozenset(
    {
        "type",
        "server_label",
        "server_url",
        "allowed_tools",
        "require_approval",
        "server_description",
        "headers",
        "authorization",
        "connector_id",
        "tunnel_id",
        "defer_loading",
        "allowed_callers",
    }
)
_REFUSED = {
    "headers": "headers for an MCP server (the gateway holds the servers' credentials)",
    "authorization": "an authorization for an MCP server (the gateway holds the servers' credentials)",
    "connector_id": "connectors",
    "tunnel_id": "MCP tunnels",
}
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
MAX_LABEL = 64
MAX_ALLOWED = 1000
# What of a tool's result is fed back to the model and shown in ``mcp_call.output``.
MAX_OUTPUT_CHARS = 1_000_000


class ToolStepsExceeded(InvalidRequest):
    code = "mcp_max_tool_steps"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def _fail(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


# -- the request's mcp tools ---------------------------------------------------------------------


@dataclass(slots=True)
class ServerTool:
    """One ``mcp`` entry of ``tools``."""

    label: str
    param: str  # "tools[i]"
    allowed: frozenset[str] | None = None  # tool names as the server gives them; None: all
    read_only: bool | None = None  # only tools annotated readOnlyHint (true) or not (false)
    url: str | None = None


def _names(value: Any, param: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_ALLOWED or not all(isinstance(v, str) for v in value):
        raise _fail(
            param,
            f"Invalid '{param}': expected an array of at most {MAX_ALLOWED} tool names.",
            "invalid_type",
        )
    return frozenset(value)


def _server_tool(tool: JSON, param: str) -> ServerTool:
    for key in tool:
        if key not in _KEYS:
            raise _fail(
                f"{param}.{str(key)[:40]}",
                f"Unknown parameter: '{param}.{str(key)[:40]}'.",
                "unknown_parameter",
            )
    for key, feature in _REFUSED.items():
        if tool.get(key) is not None:
            raise _fail(
                f"{param}.{key}",
                f"{feature[0].upper()}{feature[1:]} are not supported by this "
                "gateway: name a server registered with it by its server_label.",
                "unsupported_parameter",
            )
    if tool.get("defer_loading"):
        raise _fail(
            f"{param}.defer_loading",
            "defer_loading is not supported by this gateway.",
            "unsupported_parameter",
        )
    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise _fail(
            f"{param}.server_label",
            "Missing required parameter: 'server_label'.",
            "missing_required_parameter",
        )
    if len(label) > MAX_LABEL:
        raise _fail(
            f"{param}.server_label", f"Invalid '{param}.server_label': at most {MAX_LABEL} characters."
        )
    approval = tool.get("require_approval", "never")
    if approval != "never":
        raise _fail(
            f"{param}.require_approval",
            "require_approval must be 'never': this gateway runs MCP tools without approvals "
            "(which tools a caller may use is decided by its permissions).",
            "unsupported_parameter",
        )
    url = tool.get("server_url")
    if url is not None and not isinstance(url, str):
        raise _fail(
            f"{param}.server_url",
            f"Invalid type for '{param}.server_url': expected a string.",
            "invalid_type",
        )
    description = tool.get("server_description")
    if description is not None and not isinstance(description, str):
        raise _fail(
            f"{param}.server_description",
            f"Invalid type for '{param}.server_description': expected a string.",
            "invalid_type",
        )
    callers = tool.get("allowed_callers")
    if callers is not None and callers != ["direct"]:
        raise _fail(
            f"{param}.allowed_callers",
            "allowed_callers must be ['direct'] on this gateway.",
            "unsupported_parameter",
        )
    spec = ServerTool(label, param, url=url)
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        for key in allowed:
            if key not in ("tool_names", "read_only"):
                raise _fail(
                    f"{param}.allowed_tools.{str(key)[:40]}",
                    f"Unknown parameter: '{param}.allowed_tools.{str(key)[:40]}'.",
                    "unknown_parameter",
                )
        if allowed.get("tool_names") is not None:
            spec.allowed = _names(allowed["tool_names"], f"{param}.allowed_tools.tool_names")
        read_only = allowed.get("read_only")
        if read_only is not None and not isinstance(read_only, bool):
            raise _fail(
                f"{param}.allowed_tools.read_only",
                f"Invalid type for '{param}.allowed_tools.read_only': expected a boolean.",
                "invalid_type",
            )
        spec.read_only = read_only
    elif allowed is not None:
        spec.allowed = _names(allowed, f"{param}.allowed_tools")
    return spec


def split_tools(tools: Sequence[Any]) -> tuple[list[ServerTool], list[Any]]:
    """(the ``mcp`` entries, validated; every other tool, as given)."""
    servers: list[ServerTool] = []
    others: list[Any] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            spec = _server_tool(tool, f"tools[{i}]")
            if spec.label in seen:
                raise _fail(
                    f"tools[{i}].server_label", f"The MCP server '{spec.label}' is named twice in 'tools'."
                )
            seen.add(spec.label)
            servers.append(spec)
        else:
            others.append(tool)
    return servers, others


def has_mcp_tools(request: Mapping[str, Any]) -> bool:
    tools = request.get("tools")
    return (
        bool(tools)
        and isinstance(tools, list)
        and any(isinstance(t, dict) and t.get("type") == "mcp" for t in tools)
    )


# -- the offered tools ---------------------------------------------------------------------------


@dataclass(slots=True)
class Offered:
    """A server's tool offered to the model as a function."""

    function: str  # the function name the model sees
    name: str  # the toolbox's name: <server>__<tool>
    label: str
    tool: str  # the server's own name of the tool


def _read_only(item: Mapping[str, Any]) -> bool:
    annotations = item.get("annotations")
    return isinstance(annotations, dict) and annotations.get("readOnlyHint") is True


def _function_name(name: str, taken: set[str]) -> str:
    """A function name every provider accepts for the toolbox name ``name``."""
    candidate = name if _FUNCTION_NAME.match(name) else (_UNSAFE.sub("_", name)[:120] or "tool")
    out, n = candidate, 1
    while out in taken:
        n += 1
        out = f"{candidate[:120]}_{n}"
    taken.add(out)
    return out


def _notice_for(label: str, notices: Sequence[str]) -> str | None:
    for notice in notices:
        if notice.startswith(label + ":") or f"'{label}'" in notice:
            return notice[:1000]
    return None


def offer(
    specs: Sequence[ServerTool], listing: Listing, taken: set[str]
) -> tuple[list[JSON], list[JSON], dict[str, Offered]]:
    """(the ``mcp_list_tools`` items, the function tools offered, function name -> its tool)."""
    items: list[JSON] = []
    functions: list[JSON] = []
    offered: dict[str, Offered] = {}
    for spec in specs:
        prefix = spec.label + SEPARATOR
        tools: list[JSON] = []
        for item in listing.items:
            name = item.get("name")
            if not isinstance(name, str) or not name.startswith(prefix):
                continue
            tool = name[len(prefix) :]
            if spec.allowed is not None and tool not in spec.allowed:
                continue
            if spec.read_only is not None and _read_only(item) != spec.read_only:
                continue
            schema = item.get("inputSchema")
            schema = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
            description = item.get("description")
            entry: JSON = {
                "name": tool,
                "input_schema": schema,
                "description": description if isinstance(description, str) else None,
                "annotations": item.get("annotations") if isinstance(item.get("annotations"), dict) else None,
            }
            tools.append(entry)
            function = _function_name(name, taken)
            offered[function] = Offered(function, name, spec.label, tool)
            declared: JSON = {"name": function, "parameters": schema}
            if entry["description"]:
                declared["description"] = entry["description"]
            functions.append({"type": "function", "function": declared})
        items.append(
            {
                "id": new_id("mcpl_"),
                "type": "mcp_list_tools",
                "server_label": spec.label,
                "tools": tools,
                "error": None if tools else _notice_for(spec.label, listing.notices),
            }
        )
    return items, functions, offered


# -- calling -------------------------------------------------------------------------------------


def result_text(result: Mapping[str, Any]) -> str:
    """A ``CallToolResult`` as the text fed back to the model: its text blocks, other blocks as
    JSON, the structured content when there is no content."""
    parts: list[str] = []
    content = result.get("content")
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        else:
            parts.append(orjson.dumps(block).decode())
    if not parts and result.get("structuredContent") is not None:
        parts.append(orjson.dumps(result["structuredContent"]).decode())
    text = "\n".join(parts)
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " [cut]"


def _error_of(exc: BaseException) -> JSON:
    """An ``mcp_call`` error of a call that did not produce a result."""
    rpc_code = getattr(exc, "rpc_code", None)
    if isinstance(exc, GatewayError) and isinstance(rpc_code, int):  # the server's JSON-RPC error
        return {"type": "mcp_protocol_error", "code": rpc_code, "message": exc.message[:2000]}
    if isinstance(exc, GatewayError):
        return {"type": "http_error", "code": exc.status, "message": exc.message[:2000]}
    data = getattr(exc, "error", None)
    code = getattr(data, "code", None)
    return {
        "type": "mcp_protocol_error",
        "code": code if isinstance(code, int) else -32603,
        "message": (str(exc) or type(exc).__name__)[:2000],
    }


CallTool = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]


async def call_tool(run: CallTool, offered: Offered, call: JSON) -> tuple[JSON, str]:
    """Run one of the model's tool calls: (its ``mcp_call`` item, the text fed back)."""
    function = call.get("function") or {}
    arguments = function.get("arguments")
    arguments = arguments if isinstance(arguments, str) and arguments.strip() else "{}"
    item: JSON = {
        "id": new_id("mcp_"),
        "type": "mcp_call",
        "server_label": offered.label,
        "name": offered.tool,
        "arguments": arguments,
        "output": None,
        "error": None,
        "status": "completed",
        "approval_request_id": None,
    }
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        message = "the arguments are not a JSON object"
        item.update(status="failed", error={"type": "mcp_protocol_error", "code": -32602, "message": message})
        return item, f"Error: {message}"
    try:
        result = await run(offered.name, parsed)
    except Exception as exc:
        item.update(status="failed", error=_error_of(exc))
        return item, f"Error: {item['error']['message']}"
    text = result_text(result)
    item["output"] = text
    if result.get("isError"):
        content = result.get("content")
        item.update(
            status="failed",
            error={
                "type": "mcp_tool_execution_error",
                "content": content if isinstance(content, list) else [],
            },
        )
        return item, f"Error: {text}"
    return item, text


# -- the stage -----------------------------------------------------------------------------------


class _Canonical:
    """The step calls' inbound API: the canonical (OpenAI chat) request, never a pass-through of
    the client's own body."""

    operation = "chat"
    dialect = "openai"


_STEP_INBOUND: Any = _Canonical()


class _ToolCall:
    """The loop's tool calls' inbound API: a tools/call message."""

    operation = "mcp"
    dialect = "mcp"


_TOOL_INBOUND: Any = _ToolCall()

Servers = Callable[[Principal | None], Mapping[str, McpServerConfig]]


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _add_usage(total: JSON, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


@dataclass(slots=True)
class _Steps:
    """The model calls and the tool calls of one loop."""

    subs: list[RequestContext] = field(default_factory=list)
    tools: list[RequestContext] = field(default_factory=list)
    usage: JSON = field(default_factory=dict)


class McpLoopStage:
    """Runs the tool loop for requests whose ``tools`` name MCP servers; other requests pass."""

    name = "mcp_loop"

    def __init__(
        self,
        toolbox: Callable[[], Toolbox | None],
        servers: Servers,
        config: McpConfig,
        tool_chain: Callable[[], Handler | None] | None = None,
    ) -> None:
        self._toolbox = toolbox
        self._servers = servers
        self._config = config
        # The chain of one tools/call (gateway.py mcp_stages()): each call of the loop runs it in
        # a context of its own (its record, request-log body, limits, budgets); None: the
        # toolbox's own call_tool.
        self._tool_chain = tool_chain or (lambda: None)

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        if not has_mcp_tools(ctx.request):
            return await call_next(ctx)
        return await self.run(ctx, call_next)

    def _check_servers(self, ctx: RequestContext, specs: Sequence[ServerTool]) -> None:
        visible = self._servers(ctx.principal)
        for spec in specs:
            server = visible.get(spec.label)
            if server is None:
                raise InvalidRequest(
                    f"Unknown MCP server '{spec.label}': name a server registered with this "
                    "gateway by its server_label.",
                    param=f"{spec.param}.server_label",
                    code="mcp_server_not_found",
                )
            if spec.url is not None and (server.url is None or not _same_url(spec.url, server.url)):
                raise InvalidRequest(
                    f"'{spec.param}.server_url' must be the registered URL of '{spec.label}' "
                    "(or be left out): the gateway calls only the servers registered with it.",
                    param=f"{spec.param}.server_url",
                    code="invalid_value",
                )

    async def run(self, ctx: RequestContext, call_next: Handler) -> Result:
        specs, others = split_tools(ctx.request["tools"])
        toolbox = self._toolbox()
        if toolbox is None:
            raise InvalidRequest(
                "MCP tools are not available: this gateway has no MCP servers.",
                param=f"{specs[0].param}.type",
                code="mcp_unavailable",
            )
        self._check_servers(ctx, specs)
        taken = {
            t["function"]["name"]
            for t in others
            if isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
        }
        listing = await toolbox.list_tools(ctx.principal)
        output, functions, offered = offer(specs, listing, set(taken))
        request = {k: v for k, v in ctx.request.items() if k not in ("stream", "stream_options")}
        tools = [*others, *functions]
        if tools:
            request["tools"] = tools
        else:  # nothing to offer: the model answers without tools
            request.pop("tools", None)
            request.pop("tool_choice", None)
            request.pop("parallel_tool_calls", None)
        messages = list(request["messages"])
        steps = _Steps()
        runner = self._runner(ctx, toolbox, steps)
        ctx.after(lambda _: self._finish(steps))
        limit = self._config.max_tool_steps
        body: JSON = {}
        for step in range(1, limit + 1):
            request["messages"] = list(messages)
            body = await self._step(ctx, call_next, request, step, steps)
            message = _message(body)
            calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
            ours = [c for c in calls if (c.get("function") or {}).get("name") in offered]
            if not calls or len(ours) != len(calls):
                break  # the answer, or calls to the caller's own functions: the client's turn
            if step == limit:
                raise ToolStepsExceeded(
                    f"The model still asked for MCP tools after {limit} model calls (mcp.max_tool_steps); "
                    "the tool loop stopped.",
                    param="tools",
                )
            messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})
            for call in calls:
                item, text = await call_tool(runner, offered[call["function"]["name"]], call)
                output.append(item)
                messages.append({"role": "tool", "tool_call_id": call.get("id") or "", "content": text})
            if request.get("tool_choice") not in (None, "auto", "none"):
                request["tool_choice"] = "auto"  # asked for a call: made; now the model may answer
        self._settle(ctx, steps)
        body = {**body, "mcp_output": output}
        if steps.usage:
            body["usage"] = {**(body.get("usage") or {}), **steps.usage}
        if ctx.stream:
            return StreamReply(_as_stream(body))
        return Reply(body)

    def _runner(self, ctx: RequestContext, toolbox: Toolbox, steps: _Steps) -> CallTool:
        """How the loop calls a tool: through the tools/call chain in a context of its own
        (request id ``<request id>.t<n>``), else through the toolbox."""
        chain = self._tool_chain()
        if chain is None:
            return lambda name, arguments: toolbox.call_tool(ctx.principal, name, arguments)
        counter = iter(range(1, 1_000_000))

        async def run(name: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
            n = next(counter)
            message = {
                "jsonrpc": "2.0",
                "id": f"{ctx.request_id[:120]}.t{n}",
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }
            sub = RequestContext(
                f"{ctx.request_id[:120]}.t{n}",
                "mcp",
                _TOOL_INBOUND,
                ctx.headers,
                orjson.dumps(message),
                time.perf_counter(),
                method=ctx.method,
                path=ctx.path,
                client=ctx.client,
                deadline=ctx.deadline,
                request=message,
                principal=ctx.principal,
                trace=ctx.trace,
            )
            steps.tools.append(sub)
            try:
                result = await chain(sub)
            except GatewayError as err:
                sub.outcome.failed(err)
                raise
            except BaseException:
                sub.outcome.failed(InternalError("the tool loop's tool call failed"))
                raise
            sub.outcome.status = 200
            sub.outcome.finished_at = time.perf_counter()
            body = result.body if isinstance(result, Reply) else {}
            answer = body.get("result")
            if not isinstance(answer, dict):
                raise InternalError(f"internal error (request id {ctx.request_id}): a tool call, no result")
            return answer

        return run

    async def _step(
        self, ctx: RequestContext, call_next: Handler, request: JSON, step: int, steps: _Steps
    ) -> JSON:
        """One model call, through the rest of the chain in its own context."""
        sub = RequestContext(
            f"{ctx.request_id[:120]}.{step}",
            ctx.operation,
            _STEP_INBOUND,
            ctx.headers,
            orjson.dumps(request),
            time.perf_counter(),
            method=ctx.method,
            path=ctx.path,
            query=ctx.query,
            client=ctx.client,
            deadline=ctx.deadline,
            request=dict(request),
            principal=ctx.principal,
            trace=ctx.trace,
        )
        steps.subs.append(sub)
        try:
            result = await call_next(sub)
        except GatewayError as err:
            sub.outcome.failed(err)
            raise
        except BaseException:
            sub.outcome.failed(InternalError("the tool loop's model call failed"))
            raise
        if not isinstance(result, Reply):
            if isinstance(result, StreamReply):
                await result.aclose()
            wrong = InternalError(f"internal error (request id {ctx.request_id}): a step streamed")
            sub.outcome.failed(wrong)
            raise wrong
        sub.outcome.status = result.status
        sub.outcome.bytes_sent = 0
        sub.outcome.finished_at = time.perf_counter()
        _add_usage(steps.usage, result.body.get("usage"))
        return result.body

    def _settle(self, ctx: RequestContext, steps: _Steps) -> None:
        """The request as a whole: the last step's route and headers, every step's cost, tokens and
        upstream time."""
        last = steps.subs[-1]
        ctx.route = last.route
        ctx.group = last.group
        ctx.attempts = [a for sub in steps.subs for a in sub.attempts or ()] or None
        ctx.upstream_seconds += sum(sub.upstream_seconds for sub in steps.subs)
        ctx.response_headers.update(last.response_headers)
        spent = [sub.spent for sub in [*steps.subs, *steps.tools] if sub.spent is not None]
        if spent:
            ctx.spent = Spent(
                sum(s.nano_usd for s in spent),
                sum(s.tokens for s in spent),
                sum(s.prompt for s in spent),
                sum(s.completion for s in spent),
            )
            if "x-switchboard-cost-usd" in ctx.response_headers:
                ctx.response_headers["x-switchboard-cost-usd"] = format_nano_usd(ctx.spent.nano_usd)
        if steps.usage:
            ctx.usage = dict(steps.usage)
        ctx.response_headers["x-switchboard-mcp-steps"] = str(len(steps.subs))

    async def _finish(self, steps: _Steps) -> None:
        """After the response: each step's own post-response work (its ledger record when not yet
        written, its request-log record, its budget settlement)."""
        for sub in [*steps.subs, *steps.tools]:
            if sub.outcome.status == 0:
                sub.outcome.status = 499  # the loop was cut short (client gone)
                sub.outcome.client_disconnected = True
            if sub.outcome.finished_at is None:
                sub.outcome.finished_at = time.perf_counter()
            if sub.post_response is not None:
                await sub.run_after_response()


def _message(body: Mapping[str, Any]) -> JSON:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message
    return {}


async def _as_stream(body: JSON) -> AsyncGenerator[list[JSON], None]:
    """A complete answer as canonical chunks: the loop's items (one chunk, ``mcp_output``), the
    message, the finish reason, the usage."""
    base = {
        "id": body.get("id") or new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": body.get("created") or int(time.time()),
        "model": body.get("model"),
    }
    message = _message(body)
    choices = body.get("choices") or [{}]
    finish = choices[0].get("finish_reason") if isinstance(choices[0], dict) else "stop"
    batch: list[JSON] = [{**base, "choices": [], "mcp_output": body.get("mcp_output") or []}]
    delta: JSON = {"role": "assistant"}
    for key in ("content", "reasoning_content", "refusal"):
        if isinstance(message.get(key), str) and message[key]:
            delta[key] = message[key]
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls) if isinstance(c, dict)]
    batch.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    batch.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish or "stop"}]})
    if body.get("usage"):
        batch.append({**base, "choices": [], "usage": body["usage"]})
    yield batch
