"""An upstream reporting whatever token counts a test asks for, in the OpenAI, Anthropic and
Gemini shapes, streamed and not: for e2e tests of what the gateway records from an upstream's
usage it cannot trust (a count near 2**64, negative, a float, a string, null).

The request's last message text is a JSON value (``18446744073709551615``, ``-5``, ``12.5``,
``"12"``, ``null``): every count of the usage it answers with is that value; the text
``no-usage`` (NO_USAGE) has an OpenAI answer carry no usage at all, and its stream no usage
chunk (as some OpenAI-compatible hosts answer). It runs an HTTP server in a thread of the test
process and answers:

- ``POST /v1/chat/completions`` (OpenAI; a stream ends with a usage chunk of its own);
- ``POST /v1/messages`` (Anthropic; a stream's message_start and message_delta carry usage);
- ``POST /v1beta/models/<model>:generateContent`` and ``:streamGenerateContent`` (Gemini).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port

ANSWER = "counted"
NO_USAGE = "no-usage"


def _last_text(body: dict[str, Any]) -> str:
    """The text of the request's last message, in any of the three shapes."""
    if "contents" in body:  # Gemini
        return str(body["contents"][-1]["parts"][0]["text"])
    content = body["messages"][-1]["content"]
    if isinstance(content, list):  # blocks (Anthropic) or parts (OpenAI)
        return str(content[-1]["text"])
    return str(content)


def _openai(v: Any, model: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    usage = {"prompt_tokens": v, "completion_tokens": v, "total_tokens": v,
             "prompt_tokens_details": {"cached_tokens": v, "audio_tokens": v},
             "completion_tokens_details": {"reasoning_tokens": v, "audio_tokens": v}}
    head = {"id": "chatcmpl-usage", "created": 1, "model": model}
    reply = {**head, "object": "chat.completion", "usage": usage, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}]}
    chunk = {**head, "object": "chat.completion.chunk"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": usage},
    ]
    return reply, events


def _anthropic(v: Any, model: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    usage = {"input_tokens": v, "output_tokens": v, "cache_read_input_tokens": v,
             "cache_creation_input_tokens": v}
    message = {"id": "msg_usage", "type": "message", "role": "assistant", "model": model,
               "stop_reason": "end_turn", "stop_sequence": None}
    reply = {**message, "content": [{"type": "text", "text": ANSWER}], "usage": usage}
    events = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": v}},
        {"type": "message_stop"},
    ]
    return reply, events


def _gemini(v: Any, model: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    usage = {"promptTokenCount": v, "candidatesTokenCount": v, "totalTokenCount": v,
             "cachedContentTokenCount": v, "thoughtsTokenCount": v,
             "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": v}]}
    candidate = {"content": {"role": "model", "parts": [{"text": ANSWER}]}, "finishReason": "STOP",
                 "index": 0}
    reply = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}
    return reply, [reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        if self.path.split("?")[0].endswith("/embeddings"):
            self._embeddings(body)
            return
        text = _last_text(body)
        value = None if text == NO_USAGE else json.loads(text)
        path = self.path.split("?")[0]
        if path.endswith("/chat/completions"):
            reply, events = _openai(value, body.get("model", "m"))
            if text == NO_USAGE:
                del reply["usage"]
                events = events[:-1]
            stream, named = bool(body.get("stream")), False
        elif path.endswith("/messages"):
            reply, events = _anthropic(value, body.get("model", "m"))
            stream, named = bool(body.get("stream")), True
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            reply, events = _gemini(value, path.rsplit("/", 1)[-1].split(":")[0])
            stream, named = ":streamGenerateContent" in path, False
        else:
            self.send_error(404)
            return
        if not stream:
            self._send(json.dumps(reply).encode(), "application/json")
            return
        parts = []
        for event in events:
            name = f"event: {event['type']}\n" if named else ""
            parts.append(f"{name}data: {json.dumps(event)}\n\n")
        if not named and path.endswith("/chat/completions"):
            parts.append("data: [DONE]\n\n")
        self._send("".join(parts).encode(), "text/event-stream")

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _embeddings(self, body: dict[str, Any]) -> None:
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        reply: dict[str, Any] = {"object": "list", "model": body.get("model", "m"), "data": [
            {"object": "embedding", "index": i, "embedding": [0.5, -0.5]} for i in range(len(texts))]}
        if texts[0] != NO_USAGE:
            reply["usage"] = json.loads(texts[0])
        self._send(json.dumps(reply).encode(), "application/json")


class UsageUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
