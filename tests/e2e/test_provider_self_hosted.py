"""Self-hosted servers (vLLM, TGI, Ollama, any OpenAI-compatible one) through the gateway, from a
server answering as they do where they stray from OpenAI's wire format.

- Errors in plain text: TGI's request validation (axum's "Failed to deserialize the JSON body
  ..." 422), Ollama's "404 page not found" (Go's mux), an nginx page in front of a server. The
  client gets the server's text as the error message (one line, bounded, credentials never
  echoed), at the status the server gave, not a bare "returned HTTP 422".
- vLLM's finish reasons "abort" and "error" (vllm/v1/engine FinishReason: the engine aborted the
  request, e.g. paused for a weight update or a failed KV transfer; a request-level internal
  error): the answer was cut by the server, so a 502 (a stream: its error event after the text
  sent), never a finish reason no OpenAI client knows.
  With ``n`` > 1, a choice aborted after another one finished is caught the same way, and so is a
  reason the server wrote with JSON escapes (``"\u0061bort"``).
- vLLM's finish reason "repetition" (the request's ``repetition_detection`` found the output
  repeating a pattern, and the server stopped there): OpenAI's "stop", with vLLM's
  ``stop_reason: "repetition_detected"`` kept on the choice.
- A stream that ends without a chunk (``data: [DONE]`` alone, or nothing at all): no answer, not
  an empty one; a 502 before anything was sent, retried and fallen back from, on the
  ``openai``, ``azure`` and ``openai-compatible`` types alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fake_http import QuietHandler, serving
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, start_gateway

# What the last user message asks the server for.
ABORT = "abort"
ERROR = "error"  # vLLM's FinishReason.ERROR, a request-level internal error
REPETITION = "repetition"  # vLLM's FinishReason.REPETITION (stop_reason "repetition_detected")
SECOND_ABORTED = "second-aborted"  # n=2: the first choice stops, the second is aborted later
# The finish reason written with a JSON escape for its first letter (as a server escaping more
# than it must may write it): "\u0061bort", "\u0065rror", "\u0073top".
ESCAPED = {"escaped-abort": "abort", "escaped-error": "error", "escaped-stop": "stop"}
DONE_ONLY = "done-only"  # a stream of ``data: [DONE]`` alone
NOTHING = "nothing"  # a stream of a keep-alive comment alone
# TGI (axum) refusing a body it cannot read: 422, text/plain, the serde error (which quotes the
# request: here the key the gateway sent, which must not reach the client).
TGI_422 = "tgi-422"
TGI_422_TEXT = ("Failed to deserialize the JSON body into the target type: messages[0]: missing field "
                "`content`\n at line 1 column 20")
OLLAMA_404 = "ollama-404"
NGINX_413 = "nginx-413"
NGINX_413_PAGE = ("<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
                  "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
                  "</body>\r\n</html>\r\n")
LONG_400 = "long-400"
SAID = "Hello from the Switchboard mock. You said: "


class _Server(QuietHandler):
    """An OpenAI-compatible server answering ``one two``, or what the last message names."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        ask = str(body["messages"][-1]["content"])
        key = self.headers.get("authorization", "")
        if ask == TGI_422:
            self._send(422, "text/plain; charset=utf-8", f"{TGI_422_TEXT} ({key})".encode())
        elif ask == OLLAMA_404:
            self._send(404, "text/plain; charset=utf-8", b"404 page not found")
        elif ask == NGINX_413:
            self._send(413, "text/html", NGINX_413_PAGE.encode())
        elif ask == LONG_400:
            self._send(400, "text/plain", ("bad request " * 1000).encode())
        elif ask == DONE_ONLY:
            self._send(200, "text/event-stream", b"data: [DONE]\n\n")
        elif ask == NOTHING:
            self._send(200, "text/event-stream", b": keep-alive\n\n")
        elif ask in (ABORT, ERROR, REPETITION):
            self._finishing(bool(body.get("stream")), ask)
        elif ask in ESCAPED:
            self._finishing(False, ask)
        elif ask == SECOND_ABORTED:
            self._second_aborted()
        else:
            self._send(500, "text/plain", b"unexpected request")

    def _finishing(self, stream: bool, reason: str) -> None:
        """vLLM's answer ending with finish ``reason`` (a request its engine aborted, one it
        stopped at a repetition): what was generated, then the reason."""
        stop_reason = "repetition_detected" if reason == REPETITION else None
        head = {"id": "chatcmpl-1", "created": 1, "model": "m"}
        if not stream:
            text = json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "one"}, "logprobs": None,
                 "finish_reason": ESCAPED.get(reason, reason), "stop_reason": stop_reason}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
            if reason in ESCAPED:
                plain = ESCAPED[reason]
                text = text.replace(f'"{plain}"', f'"\\u{ord(plain[0]):04x}{plain[1:]}"')
                assert f'"{plain}"' not in text
            self._send(200, "application/json", text.encode())
            return
        chunk = {**head, "object": "chat.completion.chunk"}
        events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": word},
                                         "logprobs": None, "finish_reason": None}]}
                  for word in ("one", " two")]
        events.append({**chunk, "choices": [{"index": 0, "delta": {"content": ""}, "logprobs": None,
                                             "finish_reason": reason, "stop_reason": stop_reason}]})
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
        self._send(200, "text/event-stream", data)

    def _second_aborted(self) -> None:
        """vLLM's stream for n=2 whose second choice its engine aborted after the first stopped."""
        chunk = {"id": "chatcmpl-1", "created": 1, "model": "m", "object": "chat.completion.chunk"}
        steps = [(0, "one", None), (1, "one", None), (0, "", "stop"), (1, " two", None), (1, "", ABORT)]
        events = [{**chunk, "choices": [{"index": index, "delta": {"content": text}, "logprobs": None,
                                         "finish_reason": reason}]} for index, text, reason in steps]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
        self._send(200, "text/event-stream", data)

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


PRESETS = ("vllm", "tgi", "ollama", "custom")


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serving(_Server) as root:
        yield from _gateway(f"{root}/v1", mock_upstream, tmp_path_factory)


def _gateway(base: str, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [
            *({"name": preset, "type": "openai-compatible", "preset": preset, "api_base": base,
               "api_key": "${UPSTREAM_KEY}"} for preset in PRESETS),
            {"name": "backup", "type": "openai-compatible", "preset": "vllm",
             "api_base": f"{mock_upstream.url}/v1", "api_key": "${UPSTREAM_KEY}"},
            # OpenAI and Azure OpenAI types in front of the same server (a proxy answering for them).
            {"name": "openai", "type": "openai", "api_base": base, "api_key": "${UPSTREAM_KEY}"},
            {"name": "azure", "type": "azure", "api_base": base.removesuffix("/v1"),
             "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [*({"name": preset, "provider": preset, "model": "m"} for preset in PRESETS),
                   {"name": "vllm-or-backup", "provider": "vllm", "model": "m"},
                   {"name": "backup", "provider": "backup", "model": "mock-gpt"},
                   {"name": "openai", "provider": "openai", "model": "m"},
                   {"name": "azure", "provider": "azure", "model": "m"}],
        "router": {"num_retries": 0, "fallbacks": {"vllm-or-backup": ["backup"]}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("self-hosted"))
    yield gw
    gw.process.stop()


@pytest.fixture
def oc(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _message(error: openai.APIStatusError) -> str:
    """The error's own message (the SDK's ``message`` prefixes the status)."""
    assert isinstance(error.body, dict)
    return str(error.body["message"])


def _ask(oc: openai.OpenAI, model: str, text: str, stream: bool) -> Any:
    messages: Any = [{"role": "user", "content": text}]
    reply = oc.chat.completions.create(model=model, messages=messages, stream=stream)
    return list(reply) if stream else reply


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("preset", PRESETS)
def test_a_plain_text_error_reaches_the_client_as_its_message(
    oc: openai.OpenAI, preset: str, stream: bool
) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        _ask(oc, preset, TGI_422, stream)
    assert info.value.status_code == 422
    assert info.value.type == "invalid_request_error"
    message = _message(info.value)
    assert message.startswith(" ".join(TGI_422_TEXT.split())), message
    assert "\n" not in message and UPSTREAM_KEY not in message and "[redacted]" in message


@pytest.mark.parametrize("stream", [False, True])
def test_a_plain_text_not_found_keeps_its_status(oc: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        _ask(oc, "ollama", OLLAMA_404, stream)
    assert _message(info.value) == "404 page not found"


def test_an_html_error_page_is_read_as_its_text(oc: openai.OpenAI) -> None:
    """A proxy's error page (nginx in front of the server) gives its words, not its markup."""
    with pytest.raises(openai.APIStatusError) as info:
        _ask(oc, "vllm", NGINX_413, False)
    assert info.value.status_code == 413
    assert info.value.code == "request_too_large"
    message = _message(info.value)
    assert message.startswith("413 Request Entity Too Large"), message
    assert "<" not in message and "\n" not in message


def test_a_long_plain_text_error_is_cut(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _ask(oc, "custom", LONG_400, False)
    message = _message(info.value)
    assert message.startswith("bad request bad request")
    assert len(message) <= 501 and message.endswith("…")


@pytest.mark.parametrize("reason", [ABORT, ERROR])
@pytest.mark.parametrize("model", ["vllm", "azure", "openai"])
def test_an_aborted_answer_is_the_servers_failure(oc: openai.OpenAI, model: str, reason: str) -> None:
    """On ``azure`` and ``openai`` too: neither OpenAI sends these reasons, but a resource may
    serve other makers' models through the same API (docs/providers/azure.md), and an ``openai``
    provider's api_base may be a vLLM server."""
    with pytest.raises(openai.InternalServerError) as info:
        _ask(oc, model, reason, False)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"
    assert f"finish_reason '{reason}'" in _message(info.value)
    # The server's failure, not the caller's: fallen back from.
    answer = _ask(oc, "vllm-or-backup", ABORT, False)
    assert answer.choices[0].message.content == SAID + ABORT


@pytest.mark.parametrize("model", ["vllm", "azure", "openai"])
def test_an_aborted_answer_is_caught_when_its_reason_is_escaped(oc: openai.OpenAI, model: str) -> None:
    """JSON may spell the reason with escapes ("\u0061bort"): still the server's failure, not a
    success with a finish reason no client knows; an escaped "stop" is still a whole answer."""
    for escaped in ("escaped-abort", "escaped-error"):
        with pytest.raises(openai.InternalServerError) as info:
            _ask(oc, model, escaped, False)
        assert info.value.code == "upstream_error"
        assert f"finish_reason '{ESCAPED[escaped]}'" in _message(info.value)
    answer = _ask(oc, model, "escaped-stop", False)
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content == "one"


@pytest.mark.parametrize("reason", [ABORT, ERROR])
@pytest.mark.parametrize("model", ["vllm", "azure", "openai"])
def test_an_aborted_stream_ends_with_an_error_event(oc: openai.OpenAI, model: str, reason: str) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in oc.chat.completions.create(model=model, messages=[{"role": "user", "content": reason}],
                                                stream=True):
            for choice in chunk.choices:
                assert choice.finish_reason is None
                received.append(choice.delta.content or "")
    assert f"finish_reason '{reason}'" in str(info.value)
    assert "".join(received) == "one two"


@pytest.mark.parametrize("model", ["vllm", "azure", "openai"])
def test_a_choice_aborted_after_another_finished_ends_the_stream_with_an_error(
        oc: openai.OpenAI, model: str) -> None:
    """Before, on ``openai``: the stream ended as if whole, the second choice's text cut short."""
    received: dict[int, str] = {0: "", 1: ""}
    with pytest.raises(openai.APIError) as info:
        for chunk in oc.chat.completions.create(model=model, n=2, stream=True,
                                                messages=[{"role": "user", "content": SECOND_ABORTED}]):
            for choice in chunk.choices:
                assert choice.finish_reason in (None, "stop")
                received[choice.index] += choice.delta.content or ""
    assert f"finish_reason '{ABORT}'" in str(info.value)
    assert received == {0: "one", 1: "one two"}


def test_a_repetition_stop_is_openais_stop(oc: openai.OpenAI) -> None:
    reply = _ask(oc, "vllm", REPETITION, False)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == "one"
    assert (choice.model_extra or {}).get("stop_reason") == "repetition_detected"


def test_a_repetition_stop_ends_a_stream_with_openais_stop(oc: openai.OpenAI) -> None:
    chunks = _ask(oc, "vllm", REPETITION, True)
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == ["stop"]
    assert "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices) == "one two"


@pytest.mark.parametrize("ending", [DONE_ONLY, NOTHING])
@pytest.mark.parametrize("model", ["openai", "azure", "vllm", "ollama"])
def test_a_stream_that_ends_without_a_chunk_is_the_servers_failure(
    oc: openai.OpenAI, model: str, ending: str
) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        _ask(oc, model, ending, True)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"
    said = "without sending any of the answer" if ending == DONE_ONLY else "before it was complete"
    assert _message(info.value) == f"provider '{model}' ended the stream {said}"


def test_a_stream_that_ends_without_a_chunk_is_fallen_back_from(oc: openai.OpenAI) -> None:
    chunks = _ask(oc, "vllm-or-backup", DONE_ONLY, True)
    assert "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices) == SAID + DONE_ONLY
