"""OpenTelemetry traces: the gateway's own tracer provider, exporter and the span attributes.

One SERVER span per model call and one CLIENT child span per attempt (retries and fallbacks each
get their own), named and attributed after the OpenTelemetry GenAI semantic conventions
(``gen_ai.*``), plus ``switchboard.*`` attributes of our own. The stages that open and close them
are in ``pipeline/trace.py``; this module holds what does not depend on the pipeline: the
provider (never the global one, so an embedding application's own tracing is left alone), the
W3C trace-context propagator, and the functions that turn a request, a response and an error
into attributes. Prompts and completions are never recorded.

Only imported when ``tracing.enabled`` is true: a gateway without tracing loads none of
OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, format_trace_id
from opentelemetry.trace.propagation import set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from switchboard.config.schema import TracingConfig
from switchboard.errors import GatewayError
from switchboard.observability import otel_redact

log = logging.getLogger("switchboard.tracing")

# Our operations -> gen_ai.operation.name (well-known values of the GenAI conventions): an MCP
# tool call (a tools/call on /mcp, or one the tool loop makes) is a tool's execution.
MCP = "mcp"
EXECUTE_TOOL = "execute_tool"
OPERATION_NAMES: dict[str, str] = {
    "chat": "chat",
    "embeddings": "embeddings",
    "completions": "text_completion",
    MCP: EXECUTE_TOOL,
}
# The MCP conventions name a tools/call by its method (the SERVER span of /mcp's own); the GenAI
# conventions a tool the gateway runs for a model (the tool loop's, INTERNAL) by its operation.
TOOLS_CALL = "tools/call"

# Our provider types -> gen_ai.provider.name where the conventions have a well-known value;
# any other type (openai-compatible servers) is reported as our type.
PROVIDER_NAMES: dict[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "cohere": "cohere",
    "mistral": "mistral_ai",
}

# Request parameters copied to gen_ai.request.* when the client set them (canonical names).
_REQUEST_PARAMS: tuple[tuple[str, str], ...] = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
)

_PROPAGATOR = TraceContextTextMapPropagator()

# The longest string attribute a span keeps (cut beyond): some carry what a caller wrote (the
# URL's path, which holds the Gemini API's model name, is bounded only by the 64 KiB header
# limit), and up to ``max_queue_size`` spans wait in memory for export.
MAX_ATTRIBUTE_CHARS = 1024


class Tracing:
    """The tracer of one gateway process and its export pipeline (a bounded queue drained by a
    background thread in batches over OTLP/HTTP). :meth:`shutdown` flushes what is queued."""

    def __init__(self, config: TracingConfig, exporter: SpanExporter | None = None) -> None:
        self.config = config
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
            shutdown_on_exit=False,  # the gateway shuts it down (flushes) when it closes
            span_limits=SpanLimits(max_attribute_length=MAX_ATTRIBUTE_CHARS),
        )
        if exporter is None:
            otel_redact.install(config.endpoint)  # its query string never in an export warning
            exporter = OTLPSpanExporter(
                endpoint=config.endpoint, headers=dict(config.headers), timeout=config.timeout_seconds,
            )
        self.provider.add_span_processor(BatchSpanProcessor(
            exporter,
            max_queue_size=config.max_queue_size,
            schedule_delay_millis=config.export_interval_seconds * 1000,
            max_export_batch_size=config.max_export_batch_size,
            export_timeout_millis=config.timeout_seconds * 1000,
        ))
        self.tracer: Tracer = self.provider.get_tracer("switchboard")
        self._shut = False

    def shutdown(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop; once. Blocking: call
        it off the event loop."""
        if self._shut:
            return
        self._shut = True
        # The SDK's shutdown exports every queued batch, each up to the export timeout (a collector
        # that never answers: timeout_seconds per batch, up to 30 s in all): waited for
        # timeout_seconds in all, the rest dropped with the daemon thread at exit.
        worker = threading.Thread(target=self._shutdown, name="tracing-shutdown", daemon=True)
        worker.start()
        worker.join(self.config.timeout_seconds)
        if worker.is_alive():
            log.warning("tracing: spans still queued at shutdown could not be exported within "
                        "tracing.timeout_seconds")

    def _shutdown(self) -> None:
        try:
            self.provider.shutdown()
        except Exception:  # a collector that is down must not stop the gateway from closing
            log.warning("tracing: spans still queued at shutdown could not be exported")


def incoming_context(headers: Mapping[str, str]) -> Context | None:
    """The caller's W3C trace context (``traceparent``, ``tracestate``) or None: no header, or
    one that does not parse (then a new trace starts)."""
    if "traceparent" not in headers:
        return None
    return _PROPAGATOR.extract(headers)


def outgoing_headers(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span`` as the parent, for an upstream call."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
    return carrier


def trace_id_of(span: Span) -> str | None:
    context = span.get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def operation_name(operation: str) -> str:
    return OPERATION_NAMES.get(operation, operation)


def provider_name(provider_type: str) -> str:
    return PROVIDER_NAMES.get(provider_type, provider_type)


@lru_cache(maxsize=1024)
def server_address(api_base: str) -> tuple[str | None, int | None]:
    """(host, port) of an upstream base URL; parsed once per distinct URL."""
    try:
        parts = urlsplit(api_base)
        port = parts.port
    except ValueError:
        return None, None
    if port is None:
        port = 443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None
    return parts.hostname, port


def request_attributes(request: Mapping[str, Any]) -> dict[str, Any]:
    """gen_ai.request.* parameters the client set (never the prompt)."""
    found: dict[str, Any] = {}
    for key, name in _REQUEST_PARAMS:
        value = request.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = value
    return found


def tool_attributes(request: Mapping[str, Any], step: bool = False) -> dict[str, Any]:
    """A tool call's attributes (the canonical request of mcp/stages.py): the tool's name as
    exposed, ``<server>__<tool>`` (never its arguments), the MCP method and the JSON-RPC id;
    ``step`` (a tool loop's call): the id of the model's tool call it runs."""
    found: dict[str, Any] = {"mcp.method.name": TOOLS_CALL}
    tool = request.get("model")
    if isinstance(tool, str):
        found["gen_ai.tool.name"] = tool
    ident = request.get("id")
    if isinstance(ident, str) or (isinstance(ident, int) and not isinstance(ident, bool)):
        found["jsonrpc.request.id"] = str(ident)
    if step and isinstance(call := request.get("tool_call_id"), str) and call:
        found["gen_ai.tool.call.id"] = call  # as the model wrote it (cut by the span limits)
    return found


def usage_attributes(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    if not usage:
        return {}
    found: dict[str, Any] = {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if _span_int(prompt):
        found["gen_ai.usage.input_tokens"] = prompt
    if _span_int(completion):
        found["gen_ai.usage.output_tokens"] = completion
    return found


def _span_int(value: Any) -> bool:
    """A count a span can carry: a passed-through usage is as the upstream wrote it, and an
    attribute is a signed 64-bit integer (the exporter refuses a larger one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


class ResponseNotes:
    """What a response says about itself, gathered from a complete body or from a stream's
    chunks: the model that answered, the response id, the finish reasons."""

    __slots__ = ("finish_reasons", "id", "model")

    def __init__(self) -> None:
        self.model: str | None = None
        self.id: str | None = None
        self.finish_reasons: list[str] | None = None

    def note(self, body: Mapping[str, Any]) -> None:
        if self.model is None and isinstance(model := body.get("model"), str) and model:
            self.model = model
        if self.id is None and isinstance(ident := body.get("id"), str) and ident:
            self.id = ident
        choices = body.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                reason = choice.get("finish_reason") if isinstance(choice, dict) else None
                if isinstance(reason, str) and reason:
                    if self.finish_reasons is None:
                        self.finish_reasons = [reason]
                    elif len(self.finish_reasons) < 128:
                        self.finish_reasons.append(reason)

    def note_batch(self, batch: Sequence[Mapping[str, Any]]) -> None:
        for chunk in batch:
            self.note(chunk)

    def attributes(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.model is not None:
            found["gen_ai.response.model"] = self.model[:256]
        if self.id is not None:
            found["gen_ai.response.id"] = self.id[:256]
        if self.finish_reasons is not None:
            found["gen_ai.response.finish_reasons"] = tuple(self.finish_reasons)
        return found


def error_type(error: BaseException) -> str:
    """A low-cardinality name for what went wrong: the gateway's error code, else (an upstream
    4xx passed on without one) its status, as the server span names it; else the class."""
    if isinstance(error, GatewayError):
        return error.code or str(error.status)
    if isinstance(error, (GeneratorExit, asyncio.CancelledError, ConnectionAbortedError)):
        return "closed"  # cut before its end: a stream closed, the client gone (the task cancelled)
    return type(error).__name__


def fail(span: Span, error: BaseException) -> None:
    """Mark ``span`` failed: ``error.type``, the status sent, status ERROR (no message: it may
    quote the request)."""
    kind = error_type(error)
    attributes: dict[str, Any] = {"error.type": kind}
    if isinstance(error, GatewayError):
        attributes["http.response.status_code"] = error.status
    span.set_attributes(attributes)
    span.set_status(Status(StatusCode.ERROR, kind))


__all__ = [
    "EXECUTE_TOOL",
    "MCP",
    "OPERATION_NAMES",
    "PROVIDER_NAMES",
    "TOOLS_CALL",
    "Context",
    "ResponseNotes",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "Tracing",
    "error_type",
    "fail",
    "incoming_context",
    "operation_name",
    "outgoing_headers",
    "provider_name",
    "request_attributes",
    "server_address",
    "set_span_in_context",
    "tool_attributes",
    "trace_id_of",
    "usage_attributes",
]
