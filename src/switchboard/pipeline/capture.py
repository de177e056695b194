"""The capture stage: the request and response bodies the request log's policy selects.

Added to the model calls only when ``request_log.bodies`` lists a policy (nothing to pay
otherwise), after the route stage: the caller and the requested model are known. For a request a
policy selects it keeps, as the policy says:

- the request: the body as the client sent it (parsed JSON; text if it is not JSON);
- the response: a complete reply's body (an embeddings reply with each vector replaced by its
  size); for a stream, one message assembled from what was
  relayed (the text, reasoning and tool calls of each choice, the finish reason and the usage,
  shaped as a non-stream reply with ``"object": "chat.completion"`` or ``"text_completion"``),
  collected up to ``max_body_bytes``, and for a stream that failed after it started, beside what
  was relayed, the error its client got as the last event (``"error"``); for an error, the
  error (type, code, message);
- the request's headers;
- the media endpoints' (docs/api-media.md): a multipart request as its fields, each uploaded file
  shown as its name, type and size; an answer relayed as bytes (speech audio, a transcription's
  text or subtitles, the event stream of a streamed transcription or image) as its text, or, for
  audio and other binary types, as its type and size.

Everything is redacted (observability/redact.py) and cut to ``max_body_bytes`` at a UTF-8
boundary (``truncated``) after the response was written, before it is queued: the writer's queue
and the database only ever hold redacted text. A large body is handled in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from switchboard import jsonio
from switchboard.context import LARGE_BODY_BYTES, Chunk, RawReply, Reply, RequestContext, Result, StreamReply
from switchboard.errors import GatewayError
from switchboard.observability.redact import REDACTED, Redactor
from switchboard.observability.request_log import BodyWriter, Keep, Policies
from switchboard.pipeline.chain import Handler, map_result
from switchboard.providers.media import OPERATION_NAMES as MEDIA_OPERATIONS
from switchboard.providers.media import FilePart
from switchboard.stores.protocols import RequestBody

DEFAULT_TENANT = "default"  # as the usage record's (pipeline/usage.py)


def storable_text(raw: bytes) -> str:
    """A body that is not JSON as text every store holds: bytes that are not UTF-8, and NUL
    characters (a binary answer's; PostgreSQL's text refuses them, SQLite's LIKE stops at them),
    become U+FFFD, which the log search's full text takes for a word break, so the words around
    them are still found."""
    text = raw.decode(errors="replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within ``limit`` UTF-8 bytes, cut at a character boundary; whether it was cut."""
    if len(text) <= limit // 4:  # fast path: even four bytes a character fit
        return text, False
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode(errors="ignore"), True


class Assembled:
    """A stream's chunks folded into one reply, bounded by ``limit`` bytes of text."""

    __slots__ = ("choices", "created", "id", "kind", "limit", "model", "size", "truncated", "usage")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.truncated = False
        self.id: Any = None
        self.model: Any = None
        self.created: Any = None
        self.usage: Any = None
        self.kind = "chat.completion"
        self.choices: dict[int, dict[str, Any]] = {}

    def _add(self, into: dict[str, Any], key: str, value: Any) -> None:
        if not isinstance(value, str) or not value or self.truncated:
            return
        if self.size + len(value) > self.limit:  # the text stops here: no later piece is added
            self.truncated = True
            return
        self.size += len(value)
        into[key] = into.get(key, "") + value

    def batch(self, batch: list[Chunk]) -> list[Chunk]:
        for chunk in batch:
            self.id = chunk.get("id", self.id)
            self.model = chunk.get("model", self.model)
            self.created = chunk.get("created", self.created)
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                index = choice.get("index", 0)
                state = self.choices.setdefault(index, {"message": {}, "tool_calls": {}})
                if choice.get("finish_reason"):
                    state["finish_reason"] = choice["finish_reason"]
                if "text" in choice:  # completions
                    self.kind = "text_completion"
                    self._add(state, "text", choice["text"])
                delta = choice.get("delta") or {}
                message = state["message"]
                if delta.get("role"):
                    message["role"] = delta["role"]
                for key in ("content", "reasoning_content", "refusal"):
                    self._add(message, key, delta.get(key))
                for call in delta.get("tool_calls") or ():
                    slot = state["tool_calls"].setdefault(call.get("index", 0), {"function": {}})
                    for key in ("id", "type"):
                        if call.get(key):
                            slot[key] = call[key]
                    fn = call.get("function") or {}
                    for key in ("name", "arguments"):
                        self._add(slot["function"], key, fn.get(key))
        return batch

    def reply(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            out: dict[str, Any] = {"index": index}
            if self.kind == "text_completion":
                out["text"] = state.get("text", "")
            else:
                message = {"role": "assistant", **state["message"]}
                message.setdefault("content", None)
                if state["tool_calls"]:
                    message["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
                out["message"] = message
            out["finish_reason"] = state.get("finish_reason")
            choices.append(out)
        reply: dict[str, Any] = {"id": self.id, "object": self.kind, "created": self.created,
                                 "model": self.model, "choices": choices}
        if self.usage is not None:
            reply["usage"] = self.usage
        return reply


def without_vectors(body: dict[str, Any]) -> dict[str, Any]:
    """An embeddings reply with each vector replaced by its size: megabytes of floats say nothing
    in a log, and would cost the event loop to redact and encode."""
    data = body.get("data")
    if not isinstance(data, list):
        return body
    items = []
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            item = {**item, "embedding": f"[{len(vector)} dimensions]"}
        elif isinstance(vector, str):
            item = {**item, "embedding": f"[base64, {len(vector)} characters]"}
        items.append(item)
    return {**body, "data": items}


class Collected:
    """Bytes kept up to a limit; past it, only that there was more."""

    __slots__ = ("data", "limit", "truncated")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.truncated = False

    def add(self, piece: bytes) -> None:
        room = self.limit - len(self.data)
        if len(piece) > room:
            self.truncated = True
            piece = piece[:max(0, room)]
        self.data += piece


# Media answers whose bytes no log can show as text: their type and size are kept instead.
_BINARY = ("audio/", "image/", "video/", "application/octet-stream")


class Relayed(Collected):
    """A media answer relayed as bytes (``{"raw": bytes}`` chunks, or a whole raw reply): its
    text up to the limit, or only its size when it is audio or another binary type."""

    __slots__ = ("binary", "content_type", "size")

    def __init__(self, limit: int, content_type: str) -> None:
        self.content_type = content_type
        self.binary = content_type.lower().startswith(_BINARY)
        self.size = 0
        super().__init__(0 if self.binary else limit)

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if not self.truncated:
            super().add(piece)

    def batch(self, batch: list[Chunk]) -> list[Chunk]:
        for chunk in batch:
            self.add(chunk["raw"])
        return batch


def form_fields(request: dict[str, Any]) -> dict[str, Any] | None:
    """A multipart request's fields (``ctx.body`` holds none: the form is read as it arrives),
    each uploaded file shown as its name, type and size; None for a request with no upload."""
    out: dict[str, Any] = {}
    uploads = False
    for key, value in request.items():
        if key.startswith("_"):  # the gateway's own notes (an upload's measured seconds)
            continue
        files = value if isinstance(value, list) else [value]
        if files and all(isinstance(f, FilePart) for f in files):
            uploads = True
            shown = [f"[file {f.filename!r}, {f.content_type}, {f.size} bytes]" for f in files]
            value = shown if isinstance(value, list) else shown[0]
        out[key] = value
    return out if uploads else None


class _Capture:
    __slots__ = ("created_at", "error", "keep", "raw", "reply", "stream", "tenant")

    def __init__(self, keep: Keep, tenant: str, created_at: datetime) -> None:
        self.keep = keep
        self.tenant = tenant
        self.created_at = created_at
        self.reply: dict[str, Any] | None = None
        self.stream: Assembled | None = None
        self.raw: Relayed | None = None  # a media answer relayed as bytes
        # The error as it passed, not the exception: its traceback holds the frames that hold
        # this object (a reference cycle per failed request). The log shows the one sent.
        self.error: dict[str, Any] | None = None


class BodyCapture:
    """What the capture stages of model calls and of services (services/capture.py) share: the
    policy's decision for a caller and a subject, and the redacted text of a body or an error."""

    name = "capture"

    def __init__(self, policies: Policies, redactor: Redactor, max_body_bytes: int,
                 writer: Callable[[], BodyWriter | None]) -> None:
        self._policies = policies
        self._redactor = redactor
        self._limit = max_body_bytes
        self._writer = writer

    def decide(self, ctx: RequestContext, subject: str) -> tuple[Keep, str, datetime] | None:
        """What to keep of this call (None: nothing), its tenant and when it started."""
        p = ctx.principal
        tenant = (p.tenant_id if p is not None else None) or DEFAULT_TENANT
        keep = self._policies.decide(tenant, p.team_id if p else None, p.key_id if p else None, subject)
        if keep is None:
            return None
        ctx.log_id()  # made here, on the loop: body() may run in a thread, beside the usage record
        return keep, tenant, datetime.now(UTC) - timedelta(seconds=time.perf_counter() - ctx.started)

    def json_text(self, raw: bytes) -> str:
        """JSON as JSON (redacted field by field; a NUL in a string stays the escape ``\\u0000``;
        a byte order mark before it read past); anything else as text (redacted), its bytes that
        are not text shown as U+FFFD. Text that begins as JSON but cannot be read whole (a
        service's body, collected only up to ``max_body_bytes``, cut inside it) is ``[REDACTED]``
        whole when fields are redacted: they cannot be found in it, and must never be stored."""
        try:
            parsed = jsonio.loads(raw)
        except orjson.JSONDecodeError:
            text = storable_text(raw)
            if self._redactor.fields and text.lstrip(" \t\r\n\ufeff")[:1] in ("{", "["):
                return REDACTED
            return self._redactor.text(text)
        return orjson.dumps(self._redactor.json(parsed)).decode()

    @staticmethod
    def shown_error(error: GatewayError) -> dict[str, Any]:
        return {"error": {"type": error.type, "code": error.code, "message": error.message,
                          "param": error.param}}

    @staticmethod
    def outcome_error(ctx: RequestContext) -> dict[str, Any]:
        """The error the edge sent (ctx.outcome), in the form of :meth:`shown_error`'s."""
        o = ctx.outcome
        return {"type": o.error_type, "code": o.error_code, "message": o.error_message,
                "param": o.error_param}

    @classmethod
    def sent_error(cls, ctx: RequestContext, raised: dict[str, Any]) -> dict[str, Any]:
        """The error of a request that failed through this stage (``raised``: as it passed) as its
        client was told it: the edge names it as the caller's API spells it (``name_error``)
        after the stages, and records that; ``raised`` when nothing was sent."""
        return {"error": cls.outcome_error(ctx)} if ctx.outcome.error_type is not None else raised


class CaptureStage(BodyCapture):
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        model = ctx.requested_model or ctx.request.get("model")  # asked for, before any rule
        decided = self.decide(ctx, model if isinstance(model, str) else "")
        if decided is None:
            return await call_next(ctx)
        keep = decided[0]
        capture = _Capture(*decided)
        ctx.after(lambda c: self._after(c, capture))
        try:
            result = await call_next(ctx)
        except GatewayError as exc:
            capture.error = self.shown_error(exc)
            raise
        if not keep.response:
            return result
        if isinstance(result, Reply):
            capture.reply = without_vectors(result.body) if ctx.operation == "embeddings" else result.body
        elif isinstance(result, RawReply):  # a transcription's text or subtitles
            kind = dict(result.headers).get(b"content-type", b"").decode("latin-1")
            capture.raw = Relayed(self._limit, kind)
            capture.raw.add(result.body)
        elif isinstance(result, StreamReply) and ctx.operation in MEDIA_OPERATIONS:
            # Relayed as the upstream sent it (pipeline/media.py), under the type it named.
            capture.raw = Relayed(self._limit, ctx.response_headers.get("content-type", ""))
            return map_result(result, batch=capture.raw.batch)
        elif isinstance(result, StreamReply):
            capture.stream = Assembled(self._limit)
            return map_result(result, batch=capture.stream.batch)
        return result

    async def _after(self, ctx: RequestContext, capture: _Capture) -> None:
        writer = self._writer()
        if writer is None:
            return
        if len(ctx.body) > LARGE_BODY_BYTES:  # parsing and redacting it would stall the loop
            body = await asyncio.to_thread(self.body, ctx, capture)
        else:
            body = self.body(ctx, capture)
        writer.put(body)

    def body(self, ctx: RequestContext, capture: _Capture) -> RequestBody:
        """The redacted, bounded record of one request's bodies."""
        keep, redact, truncated = capture.keep, self._redactor, False
        request = response = None
        if keep.request:
            form = form_fields(ctx.request) if not ctx.body else None
            text = self.json_text(ctx.body) if form is None else orjson.dumps(redact.json(form)).decode()
            request, cut_request = cut(text, self._limit)
            truncated |= cut_request
        if keep.response:
            shown: Any = None
            if capture.error is not None:
                shown = self.sent_error(ctx, capture.error)
            elif capture.stream is not None:
                shown = capture.stream.reply()
                truncated |= capture.stream.truncated
                if ctx.outcome.error_type is not None:  # it broke off: why, as its client was told
                    shown["error"] = self.outcome_error(ctx)
            elif capture.reply is not None:
                shown = capture.reply
            elif capture.raw is not None:
                response, truncated = self._relayed(capture.raw, truncated)
            if shown is not None:
                response, cut_response = cut(orjson.dumps(redact.json(shown)).decode(), self._limit)
                truncated |= cut_response
        headers = redact.headers(ctx.headers) if keep.headers else None
        return RequestBody(request_id=ctx.request_id, tenant_id=capture.tenant, created_at=capture.created_at,
                           request=request, response=response, request_headers=headers, truncated=truncated,
                           log_id=ctx.log_id())

    def _relayed(self, raw: Relayed, truncated: bool) -> tuple[str, bool]:
        """A media answer relayed as bytes, as the log keeps it, and whether anything was cut."""
        if raw.binary:
            return f"[{raw.content_type or 'bytes'}, {raw.size} bytes]", truncated
        text, cut_text = cut(self.json_text(bytes(raw.data)), self._limit)
        return text, truncated or cut_text or raw.truncated
