"""An upstream that breaks HTTP or SSE in ways a well-behaved server library never would (tests/
raw_upstream.py): what a caller sees, and that the next caller is not affected.

- an answer nobody asked for (a stray second response, a 408 on an idle connection) must never
  reach a caller: the connection it came on is dropped, each later caller gets its own answer;
- a response head trickled line by line is bounded by ``first_byte``, not by ``total``;
- a stream event that never ends is refused with a 502 once it passes its bound, instead of
  being buffered (and re-scanned) until ``total``;
- parallel tool calls whose argument pieces alternate between the calls reach an Anthropic
  client as whole, separate tool_use blocks (Anthropic streams one block at a time);
- a host's "request too long" in its own words (llama.cpp's 500 typed
  ``exceed_context_size_error``, Azure's code-less GPT-5 message) is OpenAI's 400
  ``context_length_exceeded`` and goes to the group's context-window fallback;
- a model entry's own ``timeouts`` bound its calls, not its provider's;
- OpenAI's usage-policy refusals (``invalid_prompt``, ``cyber_policy``) are content-policy
  failures: they go to the group's fallbacks, as a content filter's do;
- a stream event with no data line (``event: ping`` alone) is a keep-alive, not an invalid event;
  so is one whose data holds nothing (``data: `` then a blank line), from an OpenAI upstream or
  an OpenAI-compatible one;
- a Gemini stream event whose fields have the wrong JSON types (``candidates`` a number) counts
  as one without candidates: the stream's later text still reaches the caller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from switchboard.upstream.client import IDLE_SECONDS
from tests.raw_upstream import RawUpstream
from tests.servers import MASTER_KEY, Gateway, start_gateway

FIRST_BYTE = 1.0
TOTAL = 20.0
TOO_LONG_HOSTS = ("llamacpp", "azure")
FLAGGED = ("flagged-prompt", "flagged-cyber")
MODEL_FIRST_BYTE = 0.3


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def gateway(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "providers": [{
            "name": "raw", "type": "openai", "api_base": raw.url, "api_key": "sk-raw-upstream-key",
            "timeouts": {"connect": 2, "first_byte": FIRST_BYTE, "total": TOTAL},
        }, {
            "name": "raw-llamacpp", "type": "openai-compatible", "api_base": raw.url,
            "preset": "custom",
        }, {
            "name": "raw-azure", "type": "azure", "api_base": raw.url.removesuffix("/v1"),
            "api_key": "azure-raw-upstream-key",
        }, {
            "name": "raw-gemini", "type": "gemini", "api_base": raw.url.removesuffix("/v1"),
            "api_key": "gemini-raw-upstream-key",
        }],
        "models": [
            *({"name": name, "provider": "raw", "model": name}
              for name in ("echo", "stray", "408", "headhang", "endless", "interleaved", "trailers",
                           "trailer-with-end", "te-gzip",
                           "bighead", "bighead-chunked", "bighead-under", "bighead-under-chunked",
                           "named-keepalive", "empty-data")),
            {"name": "compat-empty-data", "provider": "raw-llamacpp", "model": "empty-data"},
            *({"name": f"{host}-too-long{alone}", "provider": f"raw-{host}", "model": f"toolong-{host}"}
              for host in TOO_LONG_HOSTS for alone in ("", "-alone")),
            *({"name": name, "provider": "raw", "model": name} for name in FLAGGED),
            {"name": "gemini-wrongtypes", "provider": "raw-gemini", "model": "gemini-wrongtypes"},
            # The same upstream model under a model entry's own, shorter first_byte.
            {"name": "headhang-impatient", "provider": "raw", "model": "headhang",
             "timeouts": {"first_byte": MODEL_FIRST_BYTE}},
        ],
        "router": {"num_retries": 0,
                   "context_window_fallbacks": {f"{host}-too-long": ["echo"] for host in TOO_LONG_HOSTS},
                   "fallbacks": {name: ["echo"] for name in FLAGGED}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("raw-upstream"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)


def ask(client: openai.OpenAI, model: str, text: str) -> str | None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def assert_error(exc: openai.APIStatusError, status: int, code: str) -> None:
    assert exc.status_code == status
    error = exc.response.json()["error"]
    assert error["code"] == code and error["message"], error


@pytest.mark.parametrize("model", ["stray", "408"])
def test_an_answer_nobody_asked_for_never_reaches_a_caller(
    client: openai.OpenAI, raw: RawUpstream, model: str
) -> None:
    raw.dropped.clear()
    dropped = raw.dropped_count
    assert ask(client, model, f"{model} question") == f"echo:{model} question"
    # The gateway drops the connection as soon as the unasked answer arrives (not when its idle
    # sweep would have, after IDLE_SECONDS).
    assert raw.dropped.wait(IDLE_SECONDS / 2) and raw.dropped_count == dropped + 1
    for i in range(3):  # each later caller gets the answer to its own question
        assert ask(client, "echo", f"question {i} of user {i}") == f"echo:question {i} of user {i}"
    assert raw.requests[-4:] == [f"{model}:{model} question"] + [
        f"echo:question {i} of user {i}" for i in range(3)]


@pytest.mark.parametrize(("model", "says"), [
    ("trailers", "chunk framing or trailers after its body"),
    # The trailers that came in the read of the body's last bytes count as well.
    ("trailer-with-end", "chunk framing or trailers after its body"),
    ("te-gzip", "a transfer coding the gateway does not read: gzip"),
    # A head over the bound that came in one read with the body, whole or chunked.
    ("bighead", "answer headers exceed 65536 bytes"),
    ("bighead-chunked", "answer headers exceed 65536 bytes"),
])
def test_an_answer_the_upstream_client_cannot_take_is_a_502_saying_why(
    client: openai.OpenAI, model: str, says: str
) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        ask(client, model, "hi")
    assert_error(exc.value, 502, "upstream_error")  # refused, not waited out (a 504 at total)
    assert says in exc.value.response.json()["error"]["message"]
    assert "sk-raw-upstream-key" not in exc.value.response.text
    assert ask(client, "echo", "still there?") == "echo:still there?"


@pytest.mark.parametrize("model", ["bighead-under", "bighead-under-chunked"])
def test_a_head_just_under_the_bound_that_came_with_its_body_is_taken(
    client: openai.OpenAI, model: str
) -> None:
    """Head and body in one write, together past the 64 KiB bound: only the head counts."""
    assert ask(client, model, "hi") == "echo:hi"


def test_a_head_trickled_line_by_line_times_out_after_first_byte(client: openai.OpenAI) -> None:
    for stream in (False, True):
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as exc:
            if stream:
                list(client.chat.completions.create(
                    model="headhang", messages=[{"role": "user", "content": "hi"}], stream=True))
            else:
                ask(client, "headhang", "hi")
        took = time.monotonic() - started
        assert_error(exc.value, 504, "upstream_timeout")
        assert FIRST_BYTE <= took < TOTAL / 2, took
    assert ask(client, "echo", "still there?") == "echo:still there?"


def test_a_model_entrys_own_timeouts_override_its_providers(client: openai.OpenAI) -> None:
    for stream in (False, True):
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as exc:
            if stream:
                list(client.chat.completions.create(
                    model="headhang-impatient", messages=[{"role": "user", "content": "hi"}], stream=True))
            else:
                ask(client, "headhang-impatient", "hi")
        took = time.monotonic() - started
        assert_error(exc.value, 504, "upstream_timeout")
        assert MODEL_FIRST_BYTE <= took < FIRST_BYTE, took


def test_a_stream_event_that_never_ends_is_a_502_long_before_total(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as exc:
        list(client.chat.completions.create(
            model="endless", messages=[{"role": "user", "content": "hi"}], stream=True))
    took = time.monotonic() - started
    assert_error(exc.value, 502, "upstream_error")
    assert "longer than 16 MiB" in exc.value.response.json()["error"]["message"]
    assert took < TOTAL / 2, took
    assert ask(client, "echo", "still there?") == "echo:still there?"


def test_interleaved_parallel_tool_calls_reach_an_anthropic_client_whole(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    with client.messages.stream(
        model="interleaved", max_tokens=100, messages=[{"role": "user", "content": "weather and time?"}],
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [("call_weather", "weather", {"city": "Paris"}), ("call_time", "time", {"zone": "CET"})]
    assert message.stop_reason == "tool_use"
    # No delta goes to a block after its stop: each block's start, its deltas, then its stop.
    stopped: set[int] = set()
    for event in events:
        if event.type == "content_block_stop":
            stopped.add(event.index)
        elif event.type == "content_block_delta":
            assert event.index not in stopped


@pytest.mark.parametrize("host", TOO_LONG_HOSTS)
def test_a_hosts_own_words_for_too_long_are_a_context_length_error(client: openai.OpenAI, host: str) -> None:
    # Alone, the caller gets OpenAI's error for it (a 400 it can act on by shortening), not a
    # 502 to retry (llama.cpp's 500) nor an unnamed 400 (Azure's message without a code).
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, f"{host}-too-long-alone", "a very long story")
    assert_error(exc.value, 400, "context_length_exceeded")
    assert exc.value.response.json()["error"]["type"] == "invalid_request_error"
    # With a context-window fallback configured, that group answers instead.
    raw = client.chat.completions.with_raw_response.create(
        model=f"{host}-too-long", messages=[{"role": "user", "content": "a very long story"}])
    assert raw.parse().choices[0].message.content == "echo:a very long story"
    assert raw.headers["x-switchboard-model"] == "echo"
    assert raw.headers["x-switchboard-attempts"] == "2"


@pytest.mark.parametrize("model", FLAGGED)
def test_a_usage_policy_refusal_goes_to_the_fallbacks_as_a_content_filter_does(
    client: openai.OpenAI, model: str,
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "a flagged question"}])
    assert raw.parse().choices[0].message.content == "echo:a flagged question"
    assert raw.headers["x-switchboard-model"] == "echo"
    assert raw.headers["x-switchboard-attempts"] == "2"


def test_a_gemini_stream_event_of_the_wrong_types_does_not_break_the_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gemini-wrongtypes", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo:hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5


def test_an_event_without_data_is_a_keep_alive_not_an_invalid_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="named-keepalive", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo:hi"


@pytest.mark.parametrize("model", ["empty-data", "compat-empty-data"])
def test_an_event_with_empty_data_is_a_keep_alive_not_an_invalid_event(
    client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo:hi"
    assert chunks[-1].choices[0].finish_reason == "stop"
