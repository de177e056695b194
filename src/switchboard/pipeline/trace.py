"""The trace stages (when ``tracing.enabled``): a SERVER span per model call, a CLIENT span per
attempt, and the attempt's ``traceparent`` on its upstream request.

``TraceStage`` opens the model call's own stages, right after authentication (a caller that
cannot authenticate creates no spans, so it cannot fill the export queue). It continues the
caller's W3C trace context when the request carries ``traceparent`` (and ``tracestate``), else
starts a trace (sampled per ``tracing.sample_ratio``; a continued trace follows its parent's
decision). The span is named ``"{gen_ai.operation.name} {requested model}"`` and ends after the
response is written (a stream: after its last byte), with the status sent and the
``switchboard.*`` attributes: request id, group, deployment, tenant, attempts, cost. An MCP
tool call's span (mcp/stages.py runs this stage too) is named and attributed as a tool's:
``"tools/call {tool}"`` for /mcp's own, ``"execute_tool {tool}"`` for a tool loop's step; a
tool's error result makes it ``error.type`` ``tool_error``, status ERROR (``RequestTrace.error``).

``AttemptSpanStage`` sits right after the attempts stage, so it runs once per attempt: each
retry and fallback gets its own CLIENT child span with the GenAI attributes of that call
(provider, upstream model, server address, usage, response model and id, finish reasons; an
error's ``error.type`` and status ERROR), and the attempt's upstream request carries a
``traceparent`` naming that span (``ctx.upstream_headers``, applied by the terminal). A stream's
attempt span ends when the stream does.

Neither stage records a prompt or a completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from switchboard.context import CLIENT_CLOSED, Chunk, Reply, RequestContext, Result, StreamReply
from switchboard.observability import logs
from switchboard.observability.tracing import (
    EXECUTE_TOOL,
    MCP,
    TOOLS_CALL,
    Context,
    ResponseNotes,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracing,
    fail,
    incoming_context,
    operation_name,
    outgoing_headers,
    provider_name,
    request_attributes,
    server_address,
    set_span_in_context,
    tool_attributes,
    trace_id_of,
    usage_attributes,
)
from switchboard.pipeline.chain import Handler, map_result


class RequestTrace:
    """A request's span, the context its attempt spans are children of, and the attempt spans
    not yet ended (a stream closed unread ends them with the request). ``step``: the span is a
    step of another request's trace (a tool loop's tool call), not a request of its own.
    ``error``: a failure the answer carries inside a success, set by the stage that reads the
    answer (a tool's error result, ``tool_error``: mcp/stages.py); None: none."""

    __slots__ = ("context", "error", "open", "span", "step")

    def __init__(self, span: Span, step: bool = False) -> None:
        self.span = span
        self.context: Context = set_span_in_context(span)
        self.open: set[Span] = set()
        self.step = step
        self.error: str | None = None


def _start_ns(ctx: RequestContext) -> int:
    """Wall-clock nanoseconds of the moment the edge took the request."""
    return time.time_ns() - int((time.perf_counter() - ctx.started) * 1e9)


class TraceStage:
    name = "trace"

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        outer: RequestTrace | None = ctx.trace
        parent: Context | None
        if outer is not None:  # a tool loop's tool call (mcp/loop.py): a step of the traced request
            parent, kind = outer.context, SpanKind.INTERNAL
        else:
            parent, kind = incoming_context(ctx.headers), SpanKind.SERVER
        span = self._tracer.start_span(
            operation_name(ctx.operation), context=parent, kind=kind, start_time=_start_ns(ctx),
        )
        ctx.trace = RequestTrace(span, step=outer is not None)
        # The trace id on this request's log lines; a tool call runs in its request's task, whose
        # later lines must keep the request's own ids (the same trace).
        if outer is None and span.get_span_context().trace_flags.sampled:
            logs.CURRENT.set((ctx.request_id, trace_id_of(span)))
        try:
            return await call_next(ctx)
        finally:
            # Registered last, so it runs after the usage stage has settled the cost.
            ctx.after(_end_request)


async def _end_request(ctx: RequestContext) -> None:
    state: RequestTrace = ctx.trace
    for attempt in list(state.open):  # a stream closed before it was read
        attempt.set_status(Status(StatusCode.ERROR, "closed"))
        attempt.set_attribute("error.type", "closed")
        attempt.end()
    state.open.clear()
    span = state.span
    if span.is_recording():
        span.set_attributes(_request_attributes(ctx))
        name = _span_name(ctx, state)
        if name is not None:
            span.update_name(name)
        outcome = ctx.outcome
        status = outcome.recorded_status()
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, outcome.error_code or str(status)))
        elif state.error is not None:
            # Answered 200, yet the operation failed: the MCP conventions' error.type and ERROR.
            span.set_attribute("error.type", state.error)
            span.set_status(Status(StatusCode.ERROR, state.error))
    span.end()


def _span_name(ctx: RequestContext, state: RequestTrace) -> str | None:
    """``"{operation} {requested model}"``; a tool call: ``"execute_tool {tool}"`` run by the tool
    loop, ``"tools/call {tool}"`` sent to /mcp (the GenAI and MCP conventions). None: the name
    it started with (no model read)."""
    model = ctx.requested_model or (ctx.request.get("model") if ctx.request else None)
    if not isinstance(model, str) or not model:
        return None
    if ctx.operation == MCP:
        return f"{EXECUTE_TOOL if state.step else TOOLS_CALL} {model[:256]}"
    return f"{operation_name(ctx.operation)} {model[:256]}"


def _request_attributes(ctx: RequestContext) -> dict[str, Any]:
    outcome = ctx.outcome
    found: dict[str, Any] = {
        "gen_ai.operation.name": operation_name(ctx.operation),
        "switchboard.request_id": ctx.request_id,
        "http.request.method": ctx.method,
        "url.path": ctx.path,
    }
    status = outcome.recorded_status()  # 499 for a client that left, as the ledger and the metrics
    found["http.response.status_code"] = status
    if status == CLIENT_CLOSED:
        found["error.type"] = "closed"
    elif status >= 400:
        found["error.type"] = outcome.error_code or str(status)
    if outcome.client_disconnected:
        found["switchboard.client_disconnected"] = True
    request = ctx.request
    if request and ctx.operation == MCP:  # a tool, not a model
        # The model's call id only on a tool loop's step: on /mcp the request is the caller's.
        found.update(tool_attributes(request, ctx.trace.step))
    elif request:
        model = ctx.requested_model or request.get("model")
        if isinstance(model, str):
            found["gen_ai.request.model"] = model[:256]
        found.update(request_attributes(request))
        found["switchboard.stream"] = ctx.stream
    principal = ctx.principal
    if principal is not None and principal.tenant_id is not None:
        found["switchboard.tenant"] = principal.tenant_id
    attempts = ctx.attempts
    if attempts:
        found["switchboard.attempts"] = len(attempts)
        found["switchboard.group"] = attempts[-1].group
        found["switchboard.deployment"] = attempts[-1].deployment
        route = ctx.route  # the last attempt's
        if route is not None:
            found["gen_ai.provider.name"] = provider_name(route.target.provider_type)
    elif ctx.group is not None:
        # Routed, then refused before any attempt (a limit, a budget): no provider was called.
        found["switchboard.group"] = ctx.group.name
    if ctx.spent is not None:
        found["switchboard.cost_usd"] = ctx.spent.nano_usd / 1e9
    return found


class AttemptSpanStage:
    name = "attempt_trace"

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        state: RequestTrace | None = ctx.trace
        route = ctx.route
        if state is None or route is None:
            return await call_next(ctx)
        target = route.target
        operation = operation_name(ctx.operation)
        span = self._tracer.start_span(f"{operation} {target.model}", context=state.context,
                                       kind=SpanKind.CLIENT)
        state.open.add(span)
        if span.is_recording():
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider_name(target.provider_type),
                "gen_ai.request.model": target.model,
                "switchboard.request_id": ctx.request_id,
                "switchboard.provider": target.provider,
                "switchboard.group": target.name,
                "switchboard.attempt": len(ctx.attempts) + 1 if ctx.attempts else 1,
                **request_attributes(ctx.request),
            }
            if route.deployment:
                attributes["switchboard.deployment"] = route.deployment
            host, port = server_address(target.api_base)
            if host:
                attributes["server.address"] = host
                if port is not None:
                    attributes["server.port"] = port
            span.set_attributes(attributes)
        ctx.upstream_headers = outgoing_headers(span)
        try:
            result = await call_next(ctx)
        except BaseException as error:
            _end_attempt(ctx, state, span, None, error)
            raise
        finally:
            ctx.upstream_headers = None
        notes = ResponseNotes()
        if isinstance(result, StreamReply):
            return map_result(result, batch=_noting(notes), done=lambda error: _end_attempt(
                ctx, state, span, notes, error))
        if isinstance(result, Reply):
            notes.note(result.body)
        _end_attempt(ctx, state, span, notes, None)
        return result


def _noting(notes: ResponseNotes) -> Callable[[list[Chunk]], list[Chunk]]:
    def batch(chunks: list[Chunk]) -> list[Chunk]:
        notes.note_batch(chunks)
        return chunks
    return batch


def _end_attempt(ctx: RequestContext, state: RequestTrace, span: Span, notes: ResponseNotes | None,
                 error: BaseException | None) -> None:
    if span not in state.open:
        return
    state.open.discard(span)
    if span.is_recording():
        if notes is not None:
            span.set_attributes(notes.attributes())
        if error is None:
            span.set_attributes(usage_attributes(ctx.usage))
        else:
            fail(span, error)
    span.end()
