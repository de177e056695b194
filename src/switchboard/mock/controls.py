"""How a caller steers the mock: process-wide defaults, per-request headers, or directives in
the prompt text (``mock:status=429``), so tests can inject faults through a gateway that does
not forward arbitrary headers. ``capture`` and ``bom`` are also read from the query string
(capture.py), for a request whose body the caller does not write (a Vertex token request), and so
is ``status`` by the Vertex token endpoint (gemini.py).

Directives (header ``x-mock-<name>`` or text ``mock:<name>=<value>``):

    latency_ms=N         wait before answering (non-stream) or before the headers (stream)
    ttft_ms=N            wait before the first stream chunk
    chunk_delay_ms=N     wait between stream chunks
    status=N             answer with this HTTP error status and the provider's error body
    retry_after=N        Retry-After header on an error answer (underscores become spaces, so
                         an HTTP date fits in the text: Wed,_21_Oct_2015_07:28:00_GMT)
    retry_after_ms=N     OpenAI: retry-after-ms header on an error answer
    retry_header=X       Gemini: a Retry-After header with X as given (underscores become
                         spaces) beside the 429's RetryInfo (whose delay retry_after sets), as
                         a proxy in front of Google may add one
    error_code=CODE      the error body's code (e.g. context_length_exceeded); Responses API
                         streams: also the code of the fail_after error event
    error_shape=SHAPE    Gemini: the error body's shape, list ([{"error": {...}}]) or bare (the
                         google.rpc.Status with its gRPC code number, no error member)
    error_param=NAME     OpenAI chat: the error body's param, percent-decoded: a text directive
                         writes brackets as %5B and %5D (messages.%5B3%5D.content), a header
                         (x-mock-error-param) may write them as they are
    error_message=TEXT   OpenAI chat: the error body's message, percent-decoded (%20 a space,
                         %27 a quote), in place of "mock: injected error N"
    fail_after=N         in a stream, after N chunks send the provider's error event and end
    failed_event=1       Responses API streams: the fail_after failure is a response.failed event
                         (the response, status failed, with its error), as OpenAI ends a stream
                         whose response failed, instead of an error event; non-stream: the
                         answer is that response (HTTP 200). Its error's code is error_code's,
                         else server_error
    disconnect_after=N   in a stream, after N chunks drop the connection
    reply=WORD_WORD      the reply text (underscores become spaces)
    tool_call=NAME       answer with a call to this tool
    parallel_calls=N     Gemini, Cohere, OpenAI chat streams: answer with N tool calls at once
                         (the chosen tool first, then the other declared tools in turn), as
                         models without a parallel control may
    same_tool_index=1    OpenAI chat streams: every tool call delta carries index 0, as Ollama's
                         OpenAI-compatible API streams parallel calls
    interleaved_calls=1  OpenAI chat streams: the parallel calls' argument deltas interleaved (every
                         call's first chunk, then one piece of each in turn), as some OpenAI-
                         compatible servers stream them
    late_call_id=1       OpenAI chat streams: a tool call's first chunk carries its name only, its
                         id comes with the next chunk
    redacted_thinking=1  Anthropic messages with thinking on: a redacted_thinking block before the
                         thinking block, as Claude answers when part of its reasoning was redacted
    hang=1               never answer (for timeout tests); ends when the caller leaves
    capture=MARKER       record the request under MARKER (see capture.py)
    stream_json=1        OpenAI chat, Anthropic messages: answer a stream request with status 200
                         and a JSON body instead of events: the error body of status=N when
                         given (as some servers and proxies do), else the whole non-stream answer
                         (an upstream that ignores stream: true)
    bom=1                start the response body with a UTF-8 byte order mark, as servers that
                         write text through a BOM-emitting encoder do (text formats: JSON, SSE)
    filtered=N           Imagen: the last N images are filtered out by the safety filters, each
                         answered as a {"raiFilteredReason"} entry of predictions
    filtered_silently=1  Imagen: filtered images are left out of predictions instead (and the
                         answer is {} when every image was), as Imagen also answers
    web_searches=N       Anthropic messages: usage reports N web searches made by the server tool
                         (usage.server_tool_use.web_search_requests), as Claude reports them
    results_gone=1       Anthropic message batches (in a request of the batch): its results
                         answer 404 once it has ended, as Anthropic's do once they have expired
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import unquote

_DIRECTIVE = re.compile(r"mock:([a-z_]+)=([^\s\]\"'<>]+)")


@dataclass(frozen=True, slots=True)
class Controls:
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    status: int = 0
    retry_after: str = ""
    retry_after_ms: str = ""
    retry_header: str = ""
    error_code: str = ""
    error_shape: str = ""
    error_param: str = ""
    error_message: str = ""
    fail_after: int = -1
    failed_event: int = 0
    disconnect_after: int = -1
    reply: str = ""
    tool_call: str = ""
    parallel_calls: int = 1
    same_tool_index: int = 0
    interleaved_calls: int = 0
    late_call_id: int = 0
    redacted_thinking: int = 0
    hang: int = 0
    capture: str = ""
    stream_json: int = 0
    bom: int = 0
    filtered: int = 0
    filtered_silently: int = 0
    results_gone: int = 0
    web_searches: int = 0

    def merged(self, values: dict[str, str]) -> Controls:
        changes: dict[str, Any] = {}
        for f in fields(self):
            if f.name in values:
                raw = values[f.name]
                try:
                    kind = type(getattr(self, f.name))
                    changes[f.name] = kind(raw)
                except ValueError:
                    continue
        for spaced in ("reply", "retry_after", "retry_header"):
            if spaced in changes:
                changes[spaced] = changes[spaced].replace("_", " ")
        for encoded in ("error_param", "error_message"):  # the text form takes no brackets, quotes or spaces
            if encoded in changes:
                changes[encoded] = unquote(changes[encoded])
        return replace(self, **changes) if changes else self

    async def sleep(self, ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)


def text_of(value: Any) -> str:
    """All text in a JSON value, for directive scanning."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(text_of(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(text_of(v) for v in value)
    return ""


def controls_for(defaults: Controls, headers: dict[str, str], body: Any) -> Controls:
    values = {k[7:].replace("-", "_"): v for k, v in headers.items() if k.startswith("x-mock-")}
    values.update(dict(_DIRECTIVE.findall(text_of(body))))
    return defaults.merged(values)
