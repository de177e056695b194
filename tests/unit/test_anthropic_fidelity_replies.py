"""Replies across dialects (issue 13 §2.3, 2.4, 2.6, 2.7): Anthropic thinking blocks, stop
sequences and cache counts -> the canonical reply, and the canonical reply -> ``/v1/messages``
(message and event stream, which must agree on refusals and stop sequences).
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.http.anthropic.response import message as anthropic_message
from tests.unit.test_anthropic_inbound_stream import chunk, names, run, usage_chunk
from tests.unit.test_anthropic_response import message, parse
from tests.unit.test_anthropic_stream import (
    STOP,
    block_start,
    block_stop,
    decode,
    ev,
    start,
    text_delta,
)

SIGNED = {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkYIBxgCKkDsig=="}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDF"}


def delta(index: int, body: dict[str, Any]) -> bytes:
    return ev({"type": "content_block_delta", "index": index, "delta": body})


def end(stop_reason: str, stop_sequence: str | None = None) -> bytes:
    return ev(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": 9},
        }
    )


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


# -- Anthropic upstream -> canonical -------------------------------------------------------------


def test_thinking_blocks_become_reasoning_with_signatures() -> None:
    out = parse(message([SIGNED, REDACTED, {"type": "text", "text": "42"}]))
    msg = out["choices"][0]["message"]
    assert msg["content"] == "42"
    assert msg["reasoning_content"] == "Let me see."
    assert msg["thinking_blocks"] == [SIGNED, REDACTED]


def test_stop_sequence_is_reported() -> None:
    body = {**message([{"type": "text", "text": "one two"}], "stop_sequence"), "stop_sequence": "END"}
    choice = parse(body)["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["stop_sequence"] == "END"
    assert "stop_sequence" not in parse(message([{"type": "text", "text": "x"}]))["choices"][0]


def test_cache_writes_are_reported_apart() -> None:
    usage = parse(
        message(
            [{"type": "text", "text": "x"}],
            input_tokens=5,
            output_tokens=1,
            cache_creation_input_tokens=100,
            cache_read_input_tokens=0,
        )
    )["usage"]
    assert usage["prompt_tokens"] == 105
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_creation_tokens": 100}


def test_stream_thinking_signature_redacted_and_stop_sequence() -> None:
    chunks = decode(
        start(),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
        delta(0, {"type": "thinking_delta", "thinking": "see."}),
        delta(0, {"type": "signature_delta", "signature": SIGNED["signature"]}),
        block_stop(0),
        block_start(1, REDACTED),
        block_stop(1),
        block_start(2, {"type": "text", "text": ""}),
        text_delta(2, "42"),
        block_stop(2),
        end("stop_sequence", "END"),
        STOP,
    )
    assert deltas(chunks)[1:6] == [
        {"reasoning_content": "Let me "},
        {"reasoning_content": "see."},
        {"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "",
                              "signature": SIGNED["signature"]}]},
        {"thinking_blocks": [{"index": 1, **REDACTED}]},
        {"content": "42"},
    ]
    finish = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[0]["finish_reason"] == "stop"
    assert finish[0]["stop_sequence"] == "END"


# -- canonical -> /v1/messages -------------------------------------------------------------------


def completion(msg: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", **msg}, "finish_reason": finish, **choice}],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 10, "cache_creation_tokens": 100},
        },
    }


def test_message_thinking_blocks_first_signatures_unchanged() -> None:
    out = anthropic_message(
        completion(
            {"content": "42", "reasoning_content": "Let me see.", "thinking_blocks": [SIGNED, REDACTED]}
        ),
        "m",
    )
    assert out["content"] == [SIGNED, REDACTED, {"type": "text", "text": "42"}]


def test_message_reasoning_without_blocks_is_an_unsigned_thinking_block() -> None:
    out = anthropic_message(completion({"content": "42", "reasoning_content": "Hmm."}), "m")
    assert out["content"][0] == {"type": "thinking", "thinking": "Hmm.", "signature": ""}


def test_message_stop_sequence_and_cache_counts() -> None:
    out = anthropic_message(completion({"content": "one"}, stop_sequence="END"), "m")
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    assert out["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 10,
    }


def message_delta_of(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return next(data for name, data in events if name == "message_delta")


def test_stream_thinking_events_before_text() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "Let me "}),
            chunk({"reasoning_content": "see."}),
            chunk(
                {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": SIGNED["signature"]}]}
            ),
            chunk({"thinking_blocks": [REDACTED]}),
            chunk({"content": "42"}),
            chunk(finish="stop"),
            usage_chunk(),
        ]
    )
    body = [(n, d) for n, d in events if n.startswith("content_block")]
    assert body[0] == (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
    )
    assert [d["delta"] for n, d in body if n == "content_block_delta"] == [
        {"type": "thinking_delta", "thinking": "Let me "},
        {"type": "thinking_delta", "thinking": "see."},
        {"type": "signature_delta", "signature": SIGNED["signature"]},
        {"type": "text_delta", "text": "42"},
    ]
    starts = [d["content_block"] for n, d in body if n == "content_block_start"]
    assert starts[1] == REDACTED and starts[2]["type"] == "text"
    assert names(events).count("content_block_stop") == 3


def test_stream_stop_sequence_matches_the_message() -> None:
    events = run(
        [
            chunk({"content": "one"}),
            {
                **chunk(finish="stop"),
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_sequence": "END"}],
            },
            usage_chunk(),
        ]
    )
    assert message_delta_of(events)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_refusal_reads_the_same_in_stream_and_message() -> None:
    # An OpenAI-shaped upstream refuses with message.refusal / delta.refusal and finish "stop".
    whole = anthropic_message(completion({"content": None, "refusal": "I can't help with that."}), "m")
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"refusal": "I can't help with that."}),
            chunk(finish="stop"),
            usage_chunk(),
        ]
    )
    assert whole["stop_reason"] == "refusal"
    assert message_delta_of(events)["delta"]["stop_reason"] == "refusal"
    streamed = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert streamed == [whole["content"][0]["text"]]


def test_stream_cache_writes_are_not_input_tokens() -> None:
    cached = {**usage_chunk(120, 5, 10)}
    cached["usage"]["prompt_tokens_details"]["cache_creation_tokens"] = 100
    usage = message_delta_of(run([chunk({"content": "x"}), chunk(finish="stop"), cached]))["usage"]
    assert orjson.loads(orjson.dumps(usage)) == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 10,
    }
