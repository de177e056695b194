"""A stand-in for an OpenTelemetry collector: an OTLP/HTTP receiver on a free port of 127.0.0.1
(the webhook receiver's server) that decodes every export (``ExportTraceServiceRequest``,
protobuf) into plain span records.

    with OtlpReceiver() as otlp:
        ... configure tracing.endpoint = otlp.url ...
        spans = otlp.trace(trace_id, count=3)   # waits (with a deadline) until 3 spans arrived
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.proto.trace.v1.trace_pb2 import Status as StatusProto

from tests.webhook_receiver import WebhookReceiver

KINDS = {
    SpanProto.SPAN_KIND_SERVER: "server",
    SpanProto.SPAN_KIND_CLIENT: "client",
    SpanProto.SPAN_KIND_INTERNAL: "internal",
    SpanProto.SPAN_KIND_PRODUCER: "producer",
    SpanProto.SPAN_KIND_CONSUMER: "consumer",
}
STATUSES = {
    StatusProto.STATUS_CODE_UNSET: "unset",
    StatusProto.STATUS_CODE_OK: "ok",
    StatusProto.STATUS_CODE_ERROR: "error",
}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str  # hex, as in traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status: str
    resource: dict[str, Any]
    start_ns: int
    end_ns: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if which is None:
        return None
    return getattr(value, which)


def decode(body: bytes) -> list[ReceivedSpan]:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in message.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    name=span.name,
                    kind=KINDS.get(span.kind, str(span.kind)),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    status=STATUSES.get(span.status.code, str(span.status.code)),
                    resource=resource,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                ))
    return spans


class OtlpReceiver(WebhookReceiver):
    def __init__(self) -> None:
        super().__init__(path="/v1/traces")

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        found: list[ReceivedSpan] = []
        for request in self.requests:
            assert request.method == "POST" and request.path == self.path, request
            assert request.headers.get("content-type") == "application/x-protobuf", request.headers
            found += decode(request.body)
        return found

    def trace(self, trace_id: str, count: int, timeout: float = 20.0) -> list[ReceivedSpan]:
        """The spans of ``trace_id`` once at least ``count`` of them arrived."""
        return self.wait(lambda s: s.trace_id == trace_id, count, timeout)

    def of_request(self, request_id: str, count: int, timeout: float = 20.0) -> list[ReceivedSpan]:
        """The spans of one request (by ``switchboard.request_id``) once ``count`` arrived."""
        return self.wait(lambda s: s.attributes.get("switchboard.request_id") == request_id, count, timeout)

    def wait(self, select: Callable[[ReceivedSpan], bool], count: int, timeout: float = 20.0,
             ) -> list[ReceivedSpan]:
        """The spans ``select`` accepts once at least ``count`` of them arrived (waiting for new
        exports up to ``timeout`` seconds); AssertionError with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            seen = len(self.requests)
            spans = [s for s in self.spans() if select(s)]
            if len(spans) >= count:
                return spans
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(spans)} matching span(s) within {timeout} s, expected "
                                     f"{count}: {spans}")
            try:  # block until the next export arrives (or the deadline)
                self.wait_for(seen + 1, timeout=remaining)
            except AssertionError:
                continue
