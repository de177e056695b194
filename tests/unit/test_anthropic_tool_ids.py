"""Gemini thought signatures carried through Anthropic tool_use ids (http/anthropic/tool_ids.py):
out in a message and a stream, back in through tool_use and tool_result."""

from __future__ import annotations

import re
from typing import Any

import orjson

from switchboard.http.anthropic import content, response, tool_ids
from switchboard.http.anthropic.stream import StreamEncoder

ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
SIGNATURE = "CiQB+/p9ab==x"  # not URL-safe, padded: must survive unchanged


def signed_call(call_id: str = "call_1", signature: str = SIGNATURE) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": signature}}}


def test_an_id_without_a_signature_is_unchanged_both_ways() -> None:
    call = {"id": "toolu_01A", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert response.tool_use_block(call)["id"] == "toolu_01A"
    assert tool_ids.inbound("toolu_01A") == ("toolu_01A", None)


def test_a_signature_rides_in_an_anthropic_id_and_comes_back() -> None:
    block_id = response.tool_use_block(signed_call())["id"]
    assert ANTHROPIC_ID.match(block_id) and block_id.startswith("call_1" + tool_ids.SEPARATOR)
    assert tool_ids.inbound(block_id) == ("call_1", SIGNATURE)


def test_ids_that_only_look_signed_stay_whole() -> None:
    for given in ("a__thsig_", "__thsig_YQ", "a__thsig_Y", "a__thsig_Pz4/", "a__thsig__w"):
        assert tool_ids.inbound(given) == (given, None), given


def test_a_call_id_holding_the_separator_is_sent_without_its_signature() -> None:
    call = signed_call("x__thsig_y")
    assert response.tool_use_block(call)["id"] == "x__thsig_y"


def test_the_replayed_call_and_its_result_map_to_the_plain_id_with_the_signature() -> None:
    block_id = response.tool_use_block(signed_call())["id"]
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": block_id, "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block_id, "content": "ok"}]},
    ]
    messages = content.messages(history, content.Noted())
    assert messages[1]["tool_calls"] == [signed_call()]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "ok"}


def test_a_streamed_call_carries_the_same_id() -> None:
    encoder = StreamEncoder("m")
    encoder.start()
    delta = {"tool_calls": [{"index": 0, **signed_call()}]}
    data = encoder.feed({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    start = next(orjson.loads(line[6:]) for line in data.split(b"\n") if b"content_block_start" in line
                 and line.startswith(b"data: "))
    assert start["content_block"]["id"] == response.tool_use_block(signed_call())["id"]
