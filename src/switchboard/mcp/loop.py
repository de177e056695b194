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

The request's ``mcp`` entries are read in ``tool_spec.py``; the tools offered and the calls run
in ``offer.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard.config.mcp import McpConfig, McpServerConfig
from switchboard.context import Principal, Reply, RequestContext, Result, Spent, StreamReply
from switchboard.errors import GatewayError, InternalError, InvalidRequest
from switchboard.mcp.interfaces import Toolbox
from switchboard.mcp.offer import CallTool, call_tool, new_id, offer
from switchboard.mcp.tool_spec import ServerTool, has_mcp_tools, split_tools
from switchboard.pipeline.chain import Handler
from switchboard.spend.cost import format_nano_usd

JSON = dict[str, Any]


class ToolStepsExceeded(InvalidRequest):
    code = "mcp_max_tool_steps"


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
    """``usage`` of one model call added to the loop's ``total``: the counts and their details
    (cached, reasoning, audio tokens...), so the answer's usage is the whole loop's."""
    if not isinstance(usage, dict):
        return
    _add_counts(total, usage, ("prompt_tokens", "completion_tokens", "total_tokens"))
    for key in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(key)
        if isinstance(details, dict):
            _add_counts(total.setdefault(key, {}), details, details)


def _add_counts(total: JSON, usage: JSON, keys: Any) -> None:
    for key in keys:
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
        ctx.after(lambda done: self._finish(done, steps))  # not closing over ctx: a cycle
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
                self._attempted(ctx, steps)
                raise ToolStepsExceeded(
                    f"The model still asked for MCP tools after {limit} model calls (mcp.max_tool_steps); "
                    "the tool loop stopped.",
                    param="tools",
                )
            messages.append(_assistant_turn(message, calls))
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
        (request id ``<request id>.t<n>``; its span names the model's tool call), else through
        the toolbox."""
        chain = self._tool_chain()
        if chain is None:
            return lambda name, arguments, call_id: toolbox.call_tool(ctx.principal, name, arguments)
        counter = iter(range(1, 1_000_000))

        async def run(name: str, arguments: dict[str, Any], call_id: str | None) -> Mapping[str, Any]:
            n = next(counter)
            message: dict[str, Any] = {
                "jsonrpc": "2.0",
                "id": f"{ctx.request_id[:120]}.t{n}",
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }
            sent = orjson.dumps(message)  # the request log's body: the JSON-RPC message alone
            if call_id:
                message["tool_call_id"] = call_id  # the span's gen_ai.tool.call.id (mcp/stages.py)
            sub = RequestContext(
                f"{ctx.request_id[:120]}.t{n}",
                "mcp",
                _TOOL_INBOUND,
                ctx.headers,
                sent,
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
            dict(ctx.headers),  # each step's own: the stages take headers out (a caller credential)
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
            self._attempted(ctx, steps)  # a failed loop: its calls' attempts are still the request's
            raise
        except BaseException:
            sub.outcome.failed(InternalError("the tool loop's model call failed"))
            self._attempted(ctx, steps)
            raise
        if not isinstance(result, Reply):
            if isinstance(result, StreamReply):
                await result.aclose()
            wrong = InternalError(f"internal error (request id {ctx.request_id}): a step streamed")
            sub.outcome.failed(wrong)
            try:
                raise wrong
            finally:
                del wrong  # its traceback holds this frame: a reference cycle otherwise
        sub.outcome.status = result.status
        sub.outcome.bytes_sent = 0
        sub.outcome.finished_at = time.perf_counter()
        _add_usage(steps.usage, result.body.get("usage"))
        return result.body

    def _settle(self, ctx: RequestContext, steps: _Steps) -> None:
        """The request as a whole: the last step's route and headers, every step's cost, tokens and
        upstream time."""
        last = steps.subs[-1]
        self._attempted(ctx, steps)
        ctx.upstream_seconds += sum(sub.upstream_seconds for sub in steps.subs)
        ctx.response_headers.update(last.response_headers)
        self._spend(ctx, steps)
        # The cost header tells the whole loop's, its tool calls' too.
        if "x-switchboard-cost-usd" in ctx.response_headers:
            nano = sum(sub.spent.nano_usd for sub in [*steps.subs, *steps.tools] if sub.spent is not None)
            ctx.response_headers["x-switchboard-cost-usd"] = format_nano_usd(nano)
        if steps.usage:
            ctx.usage = dict(steps.usage)
        ctx.response_headers["x-switchboard-mcp-steps"] = str(len(steps.subs))

    @staticmethod
    def _attempted(ctx: RequestContext, steps: _Steps) -> None:
        """The request's route and attempts as its model calls made them (what the metrics and
        alerts read), the last call's route; each call's attempts apart too (``ctx.calls``)."""
        if not steps.subs:
            return
        last = steps.subs[-1]
        ctx.route = last.route
        ctx.group = last.group
        ctx.attempts = [a for sub in steps.subs for a in sub.attempts or ()] or None
        ctx.calls = tuple(sub.attempts for sub in steps.subs if sub.attempts)

    @staticmethod
    def _spend(ctx: RequestContext, steps: _Steps) -> None:
        """The request's own spend: its model calls'. The tool calls are requests of their own
        (their cost is counted, and traced, with them)."""
        spent = [sub.spent for sub in steps.subs if sub.spent is not None]
        if spent:
            ctx.spent = Spent(
                sum(s.nano_usd for s in spent),
                sum(s.tokens for s in spent),
                sum(s.prompt for s in spent),
                sum(s.completion for s in spent),
            )

    async def _finish(self, ctx: RequestContext, steps: _Steps) -> None:
        """After the response: each step's own post-response work (its ledger record when not yet
        written, its request-log record, its budget settlement); then the request's spend, its
        model calls' as recorded, however the loop ended (the observers, run next, count it)."""
        for sub in [*steps.subs, *steps.tools]:
            if sub.outcome.status == 0:
                sub.outcome.status = 499  # the loop was cut short (client gone)
                sub.outcome.client_disconnected = True
            if sub.outcome.finished_at is None:
                sub.outcome.finished_at = time.perf_counter()
            if sub.post_response is not None and (waits := sub.run_after_response()) is not None:
                await waits
        self._spend(ctx, steps)


# What of the model's tool-calling turn is sent back with it besides its content and calls: its
# reasoning, signed (Anthropic refuses thinking on the next call without the turn's signed blocks,
# so the provider adapter would turn thinking off for every later step).
_KEPT = ("reasoning_content", "thinking_blocks")


def _assistant_turn(message: Mapping[str, Any], calls: list[JSON]) -> JSON:
    turn: JSON = {"role": "assistant", "content": message.get("content"), "tool_calls": calls}
    for key in _KEPT:
        if message.get(key):
            turn[key] = message[key]
    return turn


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
