"""A misbehaving OpenAI-shaped upstream on raw sockets, for e2e tests of the gateway's upstream
client: it writes exact bytes, including ones no HTTP server library would (an answer nobody
asked for, a head that never ends, a stream event that never ends).

It runs its own event loop in a thread. The request's ``model`` picks the behaviour:

- ``echo``: answers ``echo:<the last message's text>`` (keep-alive);
- ``stray``: answers like ``echo``, then writes a second whole 200 answer nobody asked for;
- ``408``: answers like ``echo``, then writes a ``408 Request Timeout`` (what some servers send
  on an idle keep-alive connection before closing it), and keeps the connection open;
- ``headhang``: sends the status line, then one header line every 0.1 s, never ending the head;
- ``endless``: a stream whose one event starts and never ends (64 KiB pieces without a blank
  line), until the gateway closes the connection;
- ``trailers``: a chunked answer whose body is whole and whose trailer lines never end (1 KiB
  lines, until the gateway closes the connection);
- ``trailer-with-end``: a chunked answer whose last body bytes, last chunk and 80 KiB of trailer
  lines (past the client's 64 KiB bound) go out in one write, the trailer section then left
  open until the gateway closes the connection;
- ``bighead``, ``bighead-chunked``: a 70 KiB head (past the client's 64 KiB bound) and the
  whole body, delimited by its length or chunked, in one write (keep-alive);
- ``bighead-under``, ``bighead-under-chunked``: the same with a head 16 bytes short of the bound
  (head and body together past it);
- ``te-gzip``: an answer in the transfer coding gzip (not chunked), delimited by the connection's
  end;
- ``interleaved``: a stream of two parallel tool calls whose argument deltas alternate between
  the calls (as some servers stream them), with correct indices (keep-alive);
- ``named-keepalive``: a stream answering ``echo:<text>`` in two content chunks with events that
  carry no data line between them (``event: ping``, ``id:``/``retry:`` alone), as some servers
  keep a connection alive (keep-alive);
- ``empty-data``: like ``named-keepalive``, with events whose data holds nothing (``data: `` and
  ``data:`` then a blank line) instead (keep-alive);
- ``toolong-llamacpp``: llama.cpp's server refusing a request longer than its context: HTTP 500
  (as before ggml-org/llama.cpp#16486), type ``exceed_context_size_error``, a numeric code;
- ``toolong-azure``: Azure OpenAI's refusal of an over-long GPT-5 prompt: HTTP 400 with no code,
  only the message saying so;
- ``flagged-prompt``, ``flagged-cyber``: OpenAI's usage-policy refusals that name no content
  policy in their code (400 ``invalid_prompt``, 400 ``cyber_policy``).

A Gemini request (``/v1beta/models/<model>:<method>``, no ``model`` in its body) is dispatched
on the model in its path:

- ``gemini-wrongtypes``: a stream whose first event's ``candidates`` and ``promptFeedback`` are
  not a list and an object, then one text event ``echo:<text>`` finished by STOP.

After ``stray`` and ``408`` the connection is read until the gateway closes it, which sets
``dropped`` (the number of such connections the gateway closed is ``dropped_count``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from typing import Any

from tests.threaded_server import ThreadedServer

_PIECE = b"A" * 65536
_MAX_ENDLESS = 1024  # pieces (64 MiB): the gateway should have closed long before
_HEAD_BOUND = 64 * 1024  # the gateway's bound on an answer's head (upstream/http1.py MAX_HEAD_BYTES)


def _answer(text: str, status: str = "200 OK") -> bytes:
    body = json.dumps({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": "raw",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# The error bodies of the ``toolong-*`` and ``flagged-*`` models, as those servers write them.
_TOO_LONG = {
    "toolong-llamacpp": ("500 Internal Server Error", {"error": {
        "code": 500, "type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 4096,
        "message": "the request exceeds the available context size. try increasing the context "
                   "size or enable context shift"}}),
    "toolong-azure": ("400 Bad Request", {"error": {
        "code": None, "param": None, "type": "invalid_request_error",
        "message": "Input tokens exceed the configured limit of 272000 tokens. Your messages "
                   "resulted in 509178 tokens. Please reduce the length of the messages."}}),
    "flagged-prompt": ("400 Bad Request", {"error": {
        "code": "invalid_prompt", "param": None, "type": "invalid_request_error",
        "message": "Invalid prompt: your prompt was flagged as potentially violating our usage "
                   "policy. Please try again with a different prompt."}}),
    "flagged-cyber": ("400 Bad Request", {"error": {
        "code": "cyber_policy", "param": None, "type": "invalid_request",
        "message": "This content was flagged for possible cybersecurity risk. If this seems wrong, "
                   "try rephrasing your request."}}),
}


def _error(status: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _interleaved_calls() -> list[bytes]:
    """The events of ``interleaved``: weather(city=Paris) and time(zone=CET), started one after
    the other, then their arguments in alternating pieces."""
    def event(choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> bytes:
        data = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw",
                "choices": [choice] if choice else []}
        if usage:
            data["usage"] = usage
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def calls(*deltas: dict[str, Any], role: bool = False) -> bytes:
        delta: dict[str, Any] = {"role": "assistant", "content": None} if role else {}
        return event({"index": 0, "delta": {**delta, "tool_calls": list(deltas)}, "finish_reason": None})

    def start(index: int, call_id: str, name: str) -> dict[str, Any]:
        function = {"name": name, "arguments": ""}
        return {"index": index, "id": call_id, "type": "function", "function": function}

    def piece(index: int, arguments: str) -> dict[str, Any]:
        return {"index": index, "function": {"arguments": arguments}}

    return [
        calls(start(0, "call_weather", "weather"), role=True),
        calls(start(1, "call_time", "time")),
        calls(piece(0, '{"city": ')), calls(piece(1, '{"zone": ')),
        calls(piece(0, '"Paris"}')), calls(piece(1, '"CET"}')),
        event({"index": 0, "delta": {}, "finish_reason": "tool_calls"}),
        event(None, {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}),
        b"data: [DONE]\n\n",
    ]


def _named_keepalive(text: str) -> list[bytes]:
    """The events of ``named-keepalive``."""
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    return [
        b"event: ping\n\n", event({"role": "assistant", "content": "echo:"}), b"event: ping\n\n",
        b"id: 1\nretry: 3000\n\n", event({"content": text}), event({}, "stop"), b"data: [DONE]\n\n",
    ]


def _empty_data(text: str) -> list[bytes]:
    """The events of ``empty-data``: ``named-keepalive``'s with its data-less events replaced by
    events of empty data."""
    empty = iter([b"data: \n\n", b"data:\n\n", b"data:\ndata:\n\n"])
    return [next(empty) if not event.startswith(b"data: ") else event for event in _named_keepalive(text)]


def _gemini_wrong_types(text: str) -> list[bytes]:
    """The events of ``gemini-wrongtypes``."""
    events: list[dict[str, Any]] = [
        {"candidates": 5, "promptFeedback": "none", "responseId": "r1", "modelVersion": "raw"},
        {"candidates": [{"index": 0, "finishReason": "STOP",
                         "content": {"role": "model", "parts": [{"text": f"echo:{text}"}]}}],
         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}},
    ]
    return [b"data: " + json.dumps(event).encode() + b"\r\n\r\n" for event in events]


class RawUpstream(ThreadedServer):
    def __init__(self) -> None:
        self.requests: list[str] = []  # the model and text of each request read, in order
        self.dropped = threading.Event()
        self.dropped_count = 0
        super().__init__(self._serve, name="raw upstream")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await self._read(reader)) is not None:
                if not await self._behave(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        request: dict[str, Any] = json.loads(await reader.readexactly(length)) if length else {}
        path = head.split(b" ", 2)[1].decode()
        if "/models/" in path and "model" not in request:  # Gemini: the model is in the path
            request["model"] = path.partition("/models/")[2].partition(":")[0]
        return request

    async def _behave(self, request: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Answer ``request``; False: the connection is done."""
        model = str(request.get("model"))
        text = str(request["messages"][-1]["content"]) if request.get("messages") else ""
        if request.get("contents"):  # Gemini
            text = str(request["contents"][-1]["parts"][0].get("text"))
        self.requests.append(f"{model}:{text}")
        if model in ("echo", "stray", "408"):
            writer.write(_answer(f"echo:{text}"))
            await writer.drain()
            if model == "echo":
                return True
            # The answer asked for is out; what follows was asked for by no request.
            stray = _answer("STRAY ANSWER") if model == "stray" else _answer("idle", "408 Request Timeout")
            writer.write(stray)
            await writer.drain()
            while await reader.read(65536):  # whatever the gateway sends, until it closes
                pass
            self.dropped_count += 1
            self.dropped.set()
            return False
        if model == "headhang":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            for _ in range(600):  # the trickle is the behaviour: a line every 0.1 s, for at most 60 s
                await writer.drain()
                await asyncio.sleep(0.1)
                writer.write(b"X-Slow: 1\r\n")
            return False
        if model == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            writer.write(_chunk(b'data: {"id":"chatcmpl-raw","object":"chat.completion.chunk","choices":'
                                b'[{"index":0,"delta":{"content":"'))
            for _ in range(_MAX_ENDLESS):
                writer.write(_chunk(_PIECE))
                await writer.drain()
            return False
        if model == "trailers":
            whole = _answer(f"echo:{text}")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(whole.partition(b"\r\n\r\n")[2])
                         + b"0\r\n")
            for _ in range(_MAX_ENDLESS):
                writer.write(b"X-Trailer: " + b"t" * 1024 + b"\r\n")
                await writer.drain()
            return False
        if model == "trailer-with-end":
            whole = _answer(f"echo:{text}").partition(b"\r\n\r\n")[2]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(whole[:10]))
            await writer.drain()
            # One write: the body's end, the last chunk and a trailer section over the bound.
            writer.write(_chunk(whole[10:]) + b"0\r\n" + (b"X-Trailer: " + b"t" * 1024 + b"\r\n") * 80)
            await writer.drain()
            while await reader.read(65536):  # the section never ends: until the gateway closes
                pass
            return False
        if model.startswith("bighead"):
            body = _answer(f"echo:{text}").partition(b"\r\n\r\n")[2]
            chunked = model.endswith("-chunked")
            start = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            end = (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
                   else b"Content-Length: %d\r\n\r\n" % len(body))
            if model.startswith("bighead-under"):  # the head 16 bytes short of the bound
                filler = b"X-Filler: " + b"f" * (_HEAD_BOUND - 16 - len(start) - len(end) - 12) + b"\r\n"
            else:
                filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000) for i in range(70))
            writer.write(start + filler + end + (_chunk(body) + b"0\r\n\r\n" if chunked else body))
            await writer.drain()
            return True
        if model == "te-gzip":
            body = gzip.compress(_answer(f"echo:{text}").partition(b"\r\n\r\n")[2])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            return False
        events = {"interleaved": _interleaved_calls, "gemini-wrongtypes": lambda: _gemini_wrong_types(text),
                  "named-keepalive": lambda: _named_keepalive(text),
                  "empty-data": lambda: _empty_data(text)}.get(model)
        if events is not None:  # a whole stream of these events
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for event in events():
                writer.write(_chunk(event))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if model in _TOO_LONG:
            writer.write(_error(*_TOO_LONG[model]))
            await writer.drain()
            return True
        writer.write(_answer(f"unknown model {model}", "404 Not Found"))
        await writer.drain()
        return True
