"""Anthropic Messages in, Anthropic Messages out: the same-dialect pass-through's pure half.

When a ``/v1/messages`` request is served by an ``anthropic`` deployment, nothing is translated
(pipeline/native.py): the client's body goes upstream as it was sent, with only ``model``
rewritten to the deployment's upstream id and the gateway's own fields removed, and the
upstream's reply comes back as it came. This module builds that request, checks the reply, and
splits a stream into its events, reading only what accounting needs (usage, in the canonical
shape providers/anthropic/response.py gives it) and what the stages note (id, model, finish).
The events carrying output are marked, unparsed, so the output of a stream cut before its usage
came can be estimated (``output_text``, read then only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from switchboard.errors import GatewayError, InvalidRequest, UpstreamBadGateway
from switchboard.jsonio import BOM  # what a stream may start with, to be ignored (NativeStream._first)
from switchboard.providers.anthropic.request import MESSAGES_PATH, options_of, request_headers
from switchboard.providers.anthropic.response import finish_reason, stream_error, usage
from switchboard.providers.anthropic.thinking import dropped_while_thinking
from switchboard.providers.base import JSON, OUTPUT, PARTIAL, WIRE, DeferredError
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.params import GATEWAY_PARAMS, drops
from switchboard.providers.sse import SSEBlocks, empty_data
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest, header_text

VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"


# -- the request --------------------------------------------------------------------------------


def forwarded_headers(caller: Mapping[str, str], target: Target) -> dict[str, str]:
    """The caller's ``anthropic-version`` (the provider's when it sent none) and its
    ``anthropic-beta``, after the betas the provider entry always asks for."""
    options = options_of(target)
    # The caller's values as text whose UTF-8 (what the upstream client writes) is their bytes.
    headers = {VERSION_HEADER: header_text(caller.get(VERSION_HEADER) or "") or options.anthropic_version}
    betas = merged_betas(options.anthropic_beta, caller)
    if betas:
        headers[BETA_HEADER] = betas
    return headers


def merged_betas(configured: Sequence[str], caller: Mapping[str, str]) -> str:
    """The ``anthropic-beta`` value to send: the provider entry's betas the caller did not name,
    then the caller's header as written ("" when neither has any)."""
    sent = header_text(caller.get(BETA_HEADER, ""))
    named = {b.strip() for b in sent.split(",")}
    betas = [b for b in configured if b not in named]
    if sent.strip():
        betas.append(sent)  # as the caller wrote it
    return ",".join(betas)


def native_request(raw: bytes, caller: Mapping[str, str], target: Target) -> UpstreamRequest:
    """The client's Messages body for ``target``: ``model`` rewritten, gateway fields removed."""
    body = loads_object(raw)
    if body is None:  # the inbound API validated it already; never sent on if it was not
        raise InvalidRequest("the request body must be a JSON object")
    if drops(body, target):
        body = dropped_while_thinking(body)
    body = {k: v for k, v in body.items() if k not in GATEWAY_PARAMS}
    body["model"] = target.model
    stream = body.get("stream") is True
    headers = {**request_headers(options_of(target), stream), **forwarded_headers(caller, target)}
    return UpstreamRequest("POST", target.api_base + MESSAGES_PATH, orjson.dumps(body), headers, stream)


# -- the reply ----------------------------------------------------------------------------------


def native_message(raw: bytes, target: Target) -> tuple[JSON, JSON]:
    """The upstream's Message as it came, and its usage in the canonical shape."""
    message = loads_object(raw)
    if message is None or not isinstance(message.get("content"), list):
        raise invalid_body(target)
    return message, usage(message.get("usage"))


# -- the stream ---------------------------------------------------------------------------------


def _event_name(block: bytes) -> str | None:
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip().decode("utf-8", "replace")
    return None


def _data(block: bytes) -> bytes:
    return b"\n".join(line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:"))


def _event_data(block: bytes) -> JSON | None:
    return loads_object(_data(block))


def _is_comment(block: bytes) -> bool:
    return all(not line or line.startswith(b":") for line in block.split(b"\n"))


# Events whose data the stages need; every other event is relayed without being parsed.
_READ = frozenset({"message_start", "message_delta", "message_stop", "error"})
# Events carrying output (text, thinking, tool name and input): marked with OUTPUT, not parsed.
_OUTPUT = frozenset({"content_block_start", "content_block_delta"})


class NativeStream(DeferredError):
    """Anthropic SSE, relayed event by event: each chunk holds one whole event's bytes under
    ``WIRE``. message_start adds the id, model and usage so far (marked ``PARTIAL``: the call's
    usage is message_delta's); message_delta the cumulative usage and the finish reason (canonical
    names, for the stages); the content block events their bytes again under ``OUTPUT``, for an
    estimate should the stream be cut before message_delta. An ``error`` event raises the
    adapter's stream error (after the events before it were returned), which the inbound API
    writes as its own error event; a stream that ends before the message did is an error too.
    Implements the StreamDecoder protocol (providers/base.py)."""

    __slots__ = ("_blocks", "_done", "_finished", "_target", "_usage")

    def __init__(self, target: Target) -> None:
        self._target = target
        self._blocks = SSEBlocks(target.provider, target.max_event_bytes)
        self._usage: JSON = {}
        self._finished = False  # message_delta seen
        self._done = False  # message_stop seen
        self._deferred: GatewayError | None = None

    def feed(self, data: bytes) -> list[JSON]:
        return self._run(self._blocks.blocks(data))

    def close(self) -> list[JSON]:
        rest = self._blocks.rest().strip(b"\n")
        out = self._run([rest] if rest else [])
        if self._deferred is not None:
            raise self._taken()
        if not self._done and not self._finished:
            raise UpstreamBadGateway(f"provider '{self._target.provider}' ended the stream before the "
                                     "message was complete")
        return out

    def _run(self, blocks: list[bytes]) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        out: list[JSON] = []
        try:
            for block in blocks:
                if (block and not self._done and not _is_comment(block)
                        and (chunk := self._chunk(block)) is not None):
                    out.append(chunk)
        except GatewayError as exc:
            if not out:
                raise
            self._defer(exc)  # raised on the next call: what came before it is delivered first
        return out

    @staticmethod
    def says_nothing(chunk: JSON) -> bool:
        """Whether ``chunk`` only opens the stream: message_start, a ping, an empty block's start
        (the terminal holds these until an event with content, pipeline/invoke.py). Read only
        until an event says something, so a stream pays it once or twice."""
        output = chunk.get(OUTPUT)
        return "choices" not in chunk and (output is None or not output_text(output))

    def _chunk(self, block: bytes) -> JSON | None:
        """The chunk of one event's ``block``; None for a block that carries nothing and is not
        relayed (no data line, or data that holds nothing: see providers/sse.py)."""
        name = _event_name(block)
        if name is None and block[:3] == BOM:
            return self._first(block[3:])
        wire = block + b"\n\n"
        chunk: JSON = {WIRE: wire}
        if name is not None and name not in _READ:
            if name in _OUTPUT:
                chunk[OUTPUT] = wire
            return chunk
        obj = _event_data(block)
        if obj is None:
            if empty_data(_data(block)):
                return None
            raise invalid_body(self._target, "stream event")
        kind = obj.get("type")
        if kind.__class__ is not str or not kind:  # absent, or of the wrong JSON type: the name's
            kind = name
        if kind in _OUTPUT:  # an event without its ``event:`` line
            chunk[OUTPUT] = wire
        elif kind == "message_start":
            self._message_start(obj, chunk)
        elif kind == "message_delta":
            self._message_delta(obj, chunk)
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise stream_error(obj, self._target)
        return chunk

    def _first(self, block: bytes) -> JSON | None:
        """The stream's first event after the UTF-8 byte order mark it started with: the mark is
        ignored (WHATWG), and not relayed, since clients' parsers (the Anthropic SDK's) would
        take it for part of the first field's name and lose that event. Only a block with no
        ``event:`` line is looked at for it, so the usual events cost nothing more."""
        if _is_comment(block):
            return {WIRE: block + b"\n\n"}
        return self._chunk(block)

    def _merge_usage(self, raw: Any) -> None:
        # message_delta usage is cumulative: later values replace earlier ones.
        if isinstance(raw, dict):
            self._usage.update({k: v for k, v in raw.items() if v is not None})

    def _message_start(self, obj: JSON, chunk: JSON) -> None:
        message = obj.get("message")
        message = message if isinstance(message, dict) else {}
        self._merge_usage(message.get("usage"))
        for key in ("id", "model"):
            if isinstance(message.get(key), str):
                chunk[key] = message[key]
        chunk["usage"] = usage(self._usage)
        chunk[PARTIAL] = True  # the prompt and the first output token only

    def _message_delta(self, obj: JSON, chunk: JSON) -> None:
        self._merge_usage(obj.get("usage"))
        delta = obj.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        self._finished = True
        chunk["choices"] = [{"index": 0, "delta": {}, "finish_reason": finish_reason(stop)}]
        chunk["usage"] = usage(self._usage)


def output_text(event: bytes) -> str:
    """The output a content block event (marked ``OUTPUT`` by :class:`NativeStream`) carries: a
    delta's text, thinking or tool input, a block start's text or tool name and input; what a
    translated stream relays as content, reasoning and tool calls. Read only to estimate a cut
    stream's output, so the relay never parses these events."""
    obj = _event_data(event.rstrip(b"\n"))
    part = (obj.get("delta") or obj.get("content_block")) if obj is not None else None
    if not isinstance(part, dict):
        return ""
    pieces = [part.get(key) for key in ("text", "thinking", "partial_json", "name")]
    text = "".join(p for p in pieces if isinstance(p, str))
    given = part.get("input")  # a tool_use block's input, when it came whole
    return text + orjson.dumps(given).decode() if isinstance(given, dict) and given else text
