"""TGI's own dialect through the gateway (preset ``tgi``), from a server answering as TGI does.

- Finish reasons: TGI's Messages API reports the end-of-sequence token as "stop" but a stop
  sequence as its own "stop_sequence" (router/src/lib.rs ``FinishReason::format``; before 2.0 also
  "eos_token"): values no OpenAI client knows. Clients see OpenAI's "stop"; Anthropic clients see
  ``stop_sequence``.
- Tool calls: TGI before 2.2 gave a call's arguments as a JSON object; clients get OpenAI's text.
  TGI names every call "0" (router/src/chat.rs): clients get unique ids, so parallel calls stay
  apart and their results pair with them; so do calls named by another bare index ("1") or by
  none, and the ids they send back with the results are the ones TGI gets.
- Errors: a generation error (a shard failed: out of memory, ...) is TGI's 424 Failed Dependency
  (router/src/server.rs), the server's failure: a 502 to the client, and fallen back from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.fake_http import QuietHandler, serving
from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway

TEXT = "one two"
TWO_CALLS = "two-calls"
# Two parallel calls whose ids are their indices ("0", "1", again on every turn), or that have none.
INDEXED_CALLS = "indexed-calls"
NO_ID_CALLS = "no-id-calls"
# Two calls streamed as TGI streams a call (router/src/chat.rs): id "0" on every delta, the name
# on the first one only (null after), ``index`` 0 on every delta, or none at all.
TGI_CALLS = "tgi-calls"
TGI_CALLS_NO_INDEX = "tgi-calls-no-index"
CALL_IDS: dict[str, tuple[str | None, ...]] = {
    TWO_CALLS: ("0", "0"), INDEXED_CALLS: ("0", "1"), NO_ID_CALLS: (None, None),
    TGI_CALLS: ("0", "0"), TGI_CALLS_NO_INDEX: ("0", "0")}
GENERATION_ERROR = "generation-error"
SAID = "Hello from the Switchboard mock. You said: "


class _TGI(QuietHandler):
    """A TGI Messages API answering ``one two``, finished with the reason the last message names
    (or its generation error)."""

    received: list[dict[str, Any]] = []  # every request body, in order

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.received.append(body)
        reason = str(body["messages"][-1]["content"])
        if reason == GENERATION_ERROR:
            self._send(424, "application/json", json.dumps({
                "error": "Request failed during generation: Server error: CUDA out of memory",
                "error_type": "generation"}).encode())
            return
        head = {"id": "", "created": 1, "model": "tgi", "system_fingerprint": "3.0.0-native"}
        if body.get("tools"):
            self._tool_call(body, head)
            return
        if not body.get("stream"):
            data = json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": TEXT}, "logprobs": None,
                 "finish_reason": reason}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode()
            self._send(200, "application/json", data)
        else:
            chunk = {**head, "object": "chat.completion.chunk", "usage": None}
            events = [
                {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": w},
                                       "logprobs": None, "finish_reason": None}]}
                for w in ("one", " two")
            ]
            events[-1]["choices"][0]["finish_reason"] = reason
            data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
            self._send(200, "text/event-stream", data)

    def _tool_call(self, body: dict[str, Any], head: dict[str, Any]) -> None:
        """A call with its arguments as a JSON object and id "0", as TGI before 2.2 answered (or,
        asked for ``two-calls``, two parallel calls both named "0")."""
        last = body["messages"][-1]
        if last["role"] == "tool":  # the results came back: a text answer
            self._send(200, "application/json", json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": TEXT}, "logprobs": None,
                 "finish_reason": "eos_token"}]}).encode())
            return
        if last["content"] in CALL_IDS:
            self._two_calls(body, head, last["content"])
            return
        call = {"id": "0", "type": "function",
                "function": {"description": None, "name": "get_weather", "arguments": {"city": "Paris"}}}
        if not body.get("stream"):
            self._send(200, "application/json", json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "logprobs": None,
                 "finish_reason": "eos_token"}]}).encode())
            return
        events = [{**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "tool_calls": [{**call, "index": 0}]},
             "logprobs": None, "finish_reason": "eos_token"}]}]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
        self._send(200, "text/event-stream", data)

    def _two_calls(self, body: dict[str, Any], head: dict[str, Any], text: str) -> None:
        """Two parallel calls with the ids ``text`` names (both "0" as TGI names them; None: no
        id); streamed with the id in the first delta of each call and its arguments in the next
        ones, or, for the TGI_CALLS texts, with TGI's id, index and null name on every delta."""
        ids = CALL_IDS[text]
        calls = [{"id": call_id, "type": "function",
                  "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
                 for call_id, city in zip(ids, ("Paris", "Rome"), strict=True)]
        for call in calls:
            if call["id"] is None:
                del call["id"]
        if not body.get("stream"):
            self._send(200, "application/json", json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "tool_calls": calls}, "logprobs": None,
                 "finish_reason": "stop"}]}).encode())
            return
        deltas: list[dict[str, Any]] = []
        if text in (TGI_CALLS, TGI_CALLS_NO_INDEX):
            index = {"index": 0} if text == TGI_CALLS else {}
            for call in calls:
                arguments = call["function"]["arguments"]
                deltas += [{**index, "id": "0", "type": "function",
                            "function": {"name": "get_weather" if n == 0 else None, "arguments": part}}
                           for n, part in enumerate((arguments[:5], arguments[5:]))]
        for i, call in enumerate(calls if not deltas else ()):
            arguments = call["function"]["arguments"]
            deltas.append({"index": i, **({"id": call["id"]} if "id" in call else {}), "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}})
            deltas += [{"index": i, "function": {"arguments": part}}
                       for part in (arguments[:5], arguments[5:])]
        events = [{**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "tool_calls": [d]}, "logprobs": None,
             "finish_reason": None}]} for d in deltas]
        events[-1]["choices"][0]["finish_reason"] = "stop"
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
        self._send(200, "text/event-stream", data)

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def tgi_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serving(_TGI) as root:
        yield from _tgi_gateway(f"{root}/v1", mock_upstream, tmp_path_factory)


def _tgi_gateway(base: str, mock_upstream: Mock,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [{"name": "tgi", "type": "openai-compatible", "preset": "tgi", "api_base": base},
                      {"name": "backup", "type": "openai-compatible", "preset": "vllm",
                       "api_base": f"{mock_upstream.url}/v1", "api_key": "${UPSTREAM_KEY}"}],
        "models": [{"name": "tgi", "provider": "tgi", "model": "tgi"},
                   {"name": "tgi-or-backup", "provider": "tgi", "model": "tgi"},
                   {"name": "backup", "provider": "backup", "model": "mock-gpt"}],
        "router": {"num_retries": 0, "fallbacks": {"tgi-or-backup": ["backup"]}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("tgi"))
    yield gw
    gw.process.stop()


@pytest.mark.parametrize("reason", ["stop_sequence", "eos_token"])
def test_openai_clients_see_stop(tgi_gateway: Gateway, reason: str) -> None:
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    whole = oc.chat.completions.create(model="tgi", messages=[{"role": "user", "content": reason}],
                                       stop=["three"])
    assert whole.choices[0].message.content == TEXT
    assert whole.choices[0].finish_reason == "stop"
    chunks = list(oc.chat.completions.create(model="tgi", messages=[{"role": "user", "content": reason}],
                                             stop=["three"], stream=True))
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    # The stop sequence that ended the reply is the request's only one (docs/providers.md).
    expected = {"stop_sequence": "three"} if reason == "stop_sequence" else {}
    assert {k: v for k, v in (whole.choices[0].model_extra or {}).items() if k == "stop_sequence"} == expected


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_clients_see_the_stop_sequence(tgi_gateway: Gateway, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=tgi_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    kwargs: dict[str, Any] = {"model": "tgi", "max_tokens": 16, "stop_sequences": ["three"],
                              "messages": [{"role": "user", "content": "stop_sequence"}]}
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "three")
    assert "".join(b.text for b in message.content if b.type == "text") == TEXT


def test_a_generation_error_is_the_servers_failure(tgi_gateway: Gateway) -> None:
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.InternalServerError) as exc:
        oc.chat.completions.create(model="tgi", messages=[{"role": "user", "content": GENERATION_ERROR}])
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_error"
    assert "CUDA out of memory" in exc.value.message
    # A server error falls back (router.fallback_on), as it would not from the caller's error.
    answer = oc.chat.completions.create(model="tgi-or-backup",
                                        messages=[{"role": "user", "content": GENERATION_ERROR}])
    assert answer.choices[0].message.content == SAID + GENERATION_ERROR


WEATHER: dict[str, Any] = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_tool_call_arguments_given_as_an_object_reach_clients_as_json_text(tgi_gateway: Gateway) -> None:
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    ask: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    whole = oc.chat.completions.create(model="tgi", messages=ask, tools=[WEATHER])
    call = (whole.choices[0].message.tool_calls or [])[0]
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(oc.chat.completions.create(model="tgi", messages=ask, tools=[WEATHER], stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    text = "".join(d.function.arguments for d in deltas if d.function and d.function.arguments)
    assert json.loads(text) == {"city": "Paris"}


def _assert_unique_calls(calls: list[tuple[str, str]]) -> None:
    """(id, arguments) of the reply's calls: one per city, each with an id of its own."""
    assert [json.loads(arguments)["city"] for _, arguments in calls] == ["Paris", "Rome"]
    ids = [call_id for call_id, _ in calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids), ids


def _calls(oc: openai.OpenAI, text: str, stream: bool) -> list[tuple[str, str]]:
    """(id, arguments) of the calls the reply to ``text`` makes, as an OpenAI client gathers them."""
    ask: list[Any] = [{"role": "user", "content": text}]
    if not stream:
        whole = oc.chat.completions.create(model="tgi", messages=ask, tools=[WEATHER])
        return [(c.id, c.function.arguments) for c in whole.choices[0].message.tool_calls or []
                if c.type == "function"]
    chunks = list(oc.chat.completions.create(model="tgi", messages=ask, tools=[WEATHER], stream=True))
    ids: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for d in (d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []):
        if d.id:
            assert ids.setdefault(d.index, d.id) == d.id
        arguments[d.index] = arguments.get(d.index, "") + (d.function.arguments or "" if d.function else "")
    assert sorted(ids) == sorted(arguments), (ids, arguments)
    return [(ids[i], arguments[i]) for i in sorted(ids)]


def test_parallel_calls_all_named_0_reach_openai_clients_with_ids_of_their_own(tgi_gateway: Gateway) -> None:
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    _assert_unique_calls(_calls(oc, TWO_CALLS, stream=False))
    _assert_unique_calls(_calls(oc, TWO_CALLS, stream=True))


@pytest.mark.parametrize("text", [TGI_CALLS, TGI_CALLS_NO_INDEX])
def test_calls_streamed_as_tgi_streams_them_stay_apart(tgi_gateway: Gateway, text: str) -> None:
    """Every delta of both calls says id "0" (and index 0, or no index): a delta that names a
    function starts the next call, the others continue it. Gathered by the OpenAI SDK's own
    stream helper as well as by index."""
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    _assert_unique_calls(_calls(oc, text, stream=True))
    ask: list[Any] = [{"role": "user", "content": text}]
    with oc.chat.completions.stream(model="tgi", messages=ask, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    _assert_unique_calls([(c.id, c.function.arguments) for c in calls if c.type == "function"])
    assert [c.function.name for c in calls if c.type == "function"] == ["get_weather"] * 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("text", [INDEXED_CALLS, NO_ID_CALLS])
def test_calls_named_by_their_index_or_not_at_all_get_ids_of_their_own(
    tgi_gateway: Gateway, text: str, stream: bool
) -> None:
    """Ids "0", "1" come again on every turn (a client pairing results by id would mix the turns
    up), and a call without an id cannot be answered at all: each gets a ``call_…`` id, new on
    every turn."""
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    turns = [_calls(oc, text, stream) for _ in range(2)]
    for calls in turns:
        _assert_unique_calls(calls)
    assert len({call_id for calls in turns for call_id, _ in calls}) == 4


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("text", [TWO_CALLS, INDEXED_CALLS, NO_ID_CALLS])
def test_results_reach_tgi_paired_with_their_calls(tgi_gateway: Gateway, text: str, stream: bool) -> None:
    """The ids the client got are the ones TGI sees on the calls and their results next turn."""
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    calls = _calls(oc, text, stream)
    results = [(call_id, f"sunny in {json.loads(arguments)['city']}") for call_id, arguments in calls]
    messages: list[Any] = [
        {"role": "user", "content": text},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            for call_id, arguments in calls]},
        *({"role": "tool", "tool_call_id": call_id, "content": result} for call_id, result in results),
    ]
    answer = oc.chat.completions.create(model="tgi", messages=messages, tools=[WEATHER])
    assert answer.choices[0].message.content == TEXT
    sent = _TGI.received[-1]["messages"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == [call_id for call_id, _ in calls]
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == results


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_all_named_0_reach_anthropic_clients_as_distinct_tool_uses(
    tgi_gateway: Gateway, stream: bool
) -> None:
    client = anthropic.Anthropic(base_url=tgi_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    kwargs: dict[str, Any] = {"model": "tgi", "max_tokens": 64, "tools": [tool],
                              "messages": [{"role": "user", "content": TWO_CALLS}]}
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    _assert_unique_calls([(b.id, json.dumps(b.input)) for b in message.content if b.type == "tool_use"])


def test_a_single_call_named_0_gets_an_id_of_its_own(tgi_gateway: Gateway) -> None:
    """Turn after turn TGI names its call "0": each turn's call must not reuse the last one's id."""
    oc = openai.OpenAI(base_url=tgi_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    ask: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    replies = [oc.chat.completions.create(model="tgi", messages=ask, tools=[WEATHER]) for _ in range(2)]
    ids = [(reply.choices[0].message.tool_calls or [])[0].id for reply in replies]
    assert ids[0] != ids[1] and all(i.startswith("call_") for i in ids), ids
