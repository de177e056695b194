"""A matched stop sequence the provider does not name (``stop_sequence: null`` on the canonical
choice) is named from the request when it sent exactly one (providers/stop_sequences.py)."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.providers.stop_sequences import name_in_reply, naming_decoder, only_stop


def reply(**choice: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop", **choice}]}


@pytest.mark.parametrize(("stop", "expected"), [
    ("END", "END"), (["END"], "END"), (["END", "STOP"], None), ([], None), (None, None), ("", None),
])
def test_only_stop(stop: Any, expected: str | None) -> None:
    assert only_stop({"stop": stop}) == expected


def test_a_reply_names_only_an_unnamed_match() -> None:
    one = {"stop": ["END"]}
    assert name_in_reply(one, reply(stop_sequence=None))["choices"][0]["stop_sequence"] == "END"
    assert name_in_reply(one, reply(stop_sequence="OTHER"))["choices"][0]["stop_sequence"] == "OTHER"
    assert "stop_sequence" not in name_in_reply(one, reply())["choices"][0]  # no stop-sequence stop
    several = {"stop": ["END", "STOP"]}
    assert name_in_reply(several, reply(stop_sequence=None))["choices"][0]["stop_sequence"] is None


class Canned:
    def __init__(self, *batches: list[dict[str, Any]]) -> None:
        self.batches = list(batches)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self.batches.pop(0)

    def close(self) -> list[dict[str, Any]]:
        return self.batches.pop(0)


def chunk(**choice: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": None, **choice}]}


def test_a_stream_names_the_finish_chunk_and_is_left_alone_otherwise() -> None:
    finish = chunk(finish_reason="stop", stop_sequence=None)
    decoder = naming_decoder({"stop": "END"}, Canned([chunk()], [finish]))
    assert decoder.feed(b"") == [chunk()]
    assert decoder.close() == [chunk(finish_reason="stop", stop_sequence="END")]
    inner = Canned()
    assert naming_decoder({"stop": ["END", "STOP"]}, inner) is inner
    assert naming_decoder({}, inner) is inner
