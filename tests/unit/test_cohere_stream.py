"""Cohere v2 SSE -> canonical chunks (https://docs.cohere.com/reference/chat-stream)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError, UpstreamBadGateway, UpstreamTimeout
from switchboard.providers.cohere import SPEC, CohereOptions
from switchboard.providers.target import Target

TARGET = Target(name="command-a", model="command-a-03-2025", provider="co", provider_type="cohere",
                api_base="https://api.cohere.com", options=CohereOptions(), timeouts=Timeouts())

USAGE = {"billed_units": {"input_tokens": 5, "output_tokens": 3},
         "tokens": {"input_tokens": 71, "output_tokens": 3}}
CANONICAL_USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                   "prompt_tokens_details": {"cached_tokens": 0}}


def sse(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def start(rid: str = "29f14a5a") -> bytes:
    return sse({"type": "message-start", "id": rid, "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})


def text(index: int, piece: str, **extra: Any) -> bytes:
    return sse({"type": "content-delta", "index": index, "delta": {"message": {"content": {"text": piece}}},
                **extra})


def end(reason: str = "COMPLETE", usage: dict[str, Any] | None = USAGE, **delta: Any) -> bytes:
    body: dict[str, Any] = {"finish_reason": reason, **delta}
    if usage is not None:
        body["usage"] = usage
    return sse({"type": "message-end", "delta": body})


TEXT_STREAM = b"".join([
    start(),
    sse({"type": "content-start", "index": 0,
         "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
    text(0, "Large"),
    text(0, " language"),
    sse({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {
        "start": 0, "end": 5, "text": "Large",
        "sources": [{"type": "document", "id": "1", "document": {}}]}}}}),
    sse({"type": "citation-end", "index": 0}),
    text(0, " models."),
    sse({"type": "content-end", "index": 0}),
    end(),
])


def tool_call(index: int, call_id: str, name: str, parts: list[str]) -> bytes:
    events = [sse({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": {
        "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}}}})]
    events += [sse({"type": "tool-call-delta", "index": index,
                    "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}}}) for p in parts]
    events.append(sse({"type": "tool-call-end", "index": index}))
    return b"".join(events)


TOOL_STREAM = b"".join([
    start("r2"),
    sse({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}}),
    sse({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": " check."}}}),
    tool_call(0, "query_daily_sales_report_j3f0", "query_daily_sales_report",
              ['{"', "day", '": "2023-09-29"}']),
    tool_call(1, "query_product_catalog_c66n", "query_product_catalog", ['{"category": ', '"Electronics"}']),
    end("TOOL_CALL"),
])


def decode(data: bytes, split: int | None = None) -> list[dict[str, Any]]:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    pieces = [data] if split is None else [data[i:i + split] for i in range(0, len(data), split)]
    chunks = [c for piece in pieces for c in decoder.feed(piece)]
    return chunks + decoder.close()


def deltas(chunks: list[dict[str, Any]]) -> list[Any]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) if c["choices"] else c["usage"]
            for c in chunks]


def test_text_stream_golden() -> None:
    chunks = decode(TEXT_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Large"}, None),
        ({"content": " language"}, None),
        ({"content": " models."}, None),
        ({}, "stop"),
        CANONICAL_USAGE,
    ]
    assert {c["id"] for c in chunks} == {"29f14a5a"}
    assert {c["model"] for c in chunks} == {"command-a-03-2025"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["created"] for c in chunks}) == 1


@pytest.mark.parametrize("split", [1, 7, 64])
def test_any_byte_split_gives_the_same_chunks(split: int) -> None:
    assert deltas(decode(TEXT_STREAM, split)) == deltas(decode(TEXT_STREAM))
    assert deltas(decode(TOOL_STREAM, split)) == deltas(decode(TOOL_STREAM))


def test_crlf_line_endings() -> None:
    assert deltas(decode(TEXT_STREAM.replace(b"\n", b"\r\n"))) == deltas(decode(TEXT_STREAM))


def test_tool_stream_golden() -> None:
    assert deltas(decode(TOOL_STREAM)) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "I will"}, None),
        ({"content": " check."}, None),
        ({"tool_calls": [{"index": 0, "id": "query_daily_sales_report_j3f0", "type": "function",
                          "function": {"name": "query_daily_sales_report", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": "day"}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '": "2023-09-29"}'}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "query_product_catalog_c66n", "type": "function",
                          "function": {"name": "query_product_catalog", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"category": '}}]}, None),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '"Electronics"}'}}]}, None),
        ({}, "tool_calls"),
        CANONICAL_USAGE,
    ]


def test_tool_indices_are_dense_in_order_of_appearance() -> None:
    stream = start() + tool_call(3, "a", "f", ["{}"]) + tool_call(7, "b", "g", ["{}"]) + end("TOOL_CALL")
    indices = [tc["index"] for c in decode(stream) if c["choices"]
               for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert indices == [0, 0, 1, 1]


def test_done_terminator_and_unknown_events_are_ignored() -> None:
    stream = TEXT_STREAM + b"data: [DONE]\n\n"
    debug = b'event: debug\ndata: {"type": "debug"}\n\n'
    stream = stream.replace(b"event: content-end", debug + b"event: content-end")
    assert deltas(decode(stream)) == deltas(decode(TEXT_STREAM))


def test_thinking_content_becomes_reasoning_content() -> None:
    thinking = sse({"type": "content-delta", "index": 0,
                    "delta": {"message": {"content": {"thinking": "hmm"}}}})
    chunks = decode(start() + thinking + text(1, "answer") + end())
    assert [d for d, _ in deltas(chunks)[:-1]] == [
        {"role": "assistant", "content": ""}, {"reasoning_content": "hmm"}, {"content": "answer"}, {}]


def test_logprobs_ride_on_content_chunks() -> None:
    stream = start() + text(0, "Hi", logprobs={"text": "Hi", "token_ids": [9], "logprobs": [-0.5]}) + end()
    chunk = decode(stream)[1]
    assert chunk["choices"][0]["logprobs"] == {"content": [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}]}


@pytest.mark.parametrize(("reason", "expected"), [("MAX_TOKENS", "length"), ("STOP_SEQUENCE", "stop")])
def test_finish_reasons(reason: str, expected: str) -> None:
    assert deltas(decode(start() + text(0, "x") + end(reason)))[-2] == ({}, expected)


def test_missing_usage_sends_no_usage_chunk() -> None:
    chunks = decode(start() + text(0, "x") + end(usage=None))
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_without_message_start_still_sends_role_first() -> None:
    chunks = decode(text(0, "x") + end())
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_truncated_stream_raises_on_close() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    partial = start() + text(0, "Hel")
    cut = b'event: content-delta\ndata: {"ty'
    assert [c["choices"][0]["delta"] for c in decoder.feed(partial + cut)] == [
        {"role": "assistant", "content": ""}, {"content": "Hel"}]
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.close()
    assert "message-end" in exc.value.message


def test_error_mid_stream_delivers_earlier_chunks_then_raises() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    failing = start() + text(0, "Hel") + end("ERROR", usage=None, error="internal failure")
    assert [c["choices"][0]["delta"] for c in decoder.feed(failing)] == [
        {"role": "assistant", "content": ""}, {"content": "Hel"}]
    with pytest.raises(UpstreamBadGateway) as exc:
        decoder.close()
    assert "internal failure" in exc.value.message


def test_error_in_its_own_read_raises_at_once() -> None:
    decoder = SPEC.adapter.chat_stream({}, TARGET)
    decoder.feed(start() + text(0, "Hel"))
    with pytest.raises(GatewayError):
        decoder.feed(end("ERROR", usage=None))


def test_timeout_finish_raises_timeout() -> None:
    with pytest.raises(UpstreamTimeout):
        decode(end("TIMEOUT", usage=None))


def test_error_object_instead_of_event_raises() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(b'data: {"id": "x", "message": "internal server error"}\n\n')
    assert "internal server error" in exc.value.message


def test_invalid_json_event_raises() -> None:
    with pytest.raises(UpstreamBadGateway) as exc:
        decode(b"event: content-delta\ndata: <html>oops</html>\n\n")
    assert "invalid stream event" in exc.value.message


def test_events_after_message_end_are_ignored() -> None:
    assert deltas(decode(TEXT_STREAM + text(0, "late"))) == deltas(decode(TEXT_STREAM))


def test_a_tool_call_index_of_the_wrong_type_is_read_as_missing() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    data = b"".join([
        start(),
        sse({"type": "tool-call-start", "index": [0], "delta": {"message": {"tool_calls": call}}}),
        sse({"type": "tool-call-delta", "index": {"i": 0}, "delta": {"message": {"tool_calls": {
            "function": {"arguments": "{}"}}}}}),
        end("TOOL_CALL"),
    ])
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in decode(data)
             if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0]["id"] == "c1" and calls[0]["index"] == 0
    assert calls[-1]["function"]["arguments"] == "{}"


def test_a_float_tool_call_index_keeps_the_deltas_on_their_call() -> None:
    """An index written as a JSON float (``0.0``, as a server serialising its numbers as floats
    sends) still names one call: its argument deltas continue the call it started, as an int
    index's do, instead of each starting a call of its own."""
    stream = b"".join([start("r3"), tool_call(0.0, "call_a", "lookup", ['{"q": ', '"x"}']),  # type: ignore[arg-type]
                       end("TOOL_CALL")])
    calls = [call for c in decode(stream) if c["choices"]
             for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [call["index"] for call in calls] == [0, 0, 0], calls


@pytest.mark.parametrize("value", [5, ["x"], {"id": "x"}, True])
def test_ids_and_names_of_the_wrong_type_are_read_as_absent(value: Any) -> None:
    # Never relayed as they came: the chunk id, the call's id and function name are strings.
    call = {"id": value, "type": "function", "function": {"name": value, "arguments": "{}"}}
    data = b"".join([
        sse({"type": "message-start", "id": value}),
        sse({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}}),
        sse({"type": "message-end", "id": value, "delta": {"finish_reason": "TOOL_CALL", "usage": USAGE}}),
    ])
    chunks = decode(data)
    assert all(c["id"] == "" for c in chunks)
    [started] = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                 if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert started["id"] == "" and started["function"] == {"name": "", "arguments": "{}"}


def test_a_call_without_a_valid_index_is_not_merged_with_a_later_call_of_index_0() -> None:
    """A call whose index is of the wrong type is a call of its own (its fragments go on with
    it): the key it gets cannot be taken by a later call's real index (it was the count of calls
    so far: 0 here, and every fragment was a call of its own)."""
    stream = b"".join([start("r3"), tool_call(True, "odd_1", "odd", ['{"a": 1}']),  # type: ignore[arg-type]
                       tool_call(0, "real_2", "real", ['{"b": 2}']), end("TOOL_CALL")])
    calls: dict[int, dict[str, str]] = {}
    for chunk in decode(stream):
        for call in (chunk["choices"][0]["delta"].get("tool_calls") or []) if chunk["choices"] else []:
            seen = calls.setdefault(call["index"], {"id": "", "arguments": ""})
            seen["id"] += call.get("id") or ""
            seen["arguments"] += call["function"].get("arguments") or ""
    assert calls == {0: {"id": "odd_1", "arguments": '{"a": 1}'},
                     1: {"id": "real_2", "arguments": '{"b": 2}'}}
