"""The context-window policy of API sessions (apis/sessions.py): fit, room, the session id
header, the policy's settings and where the history goes in the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from switchboard.apis.sessions import (
    SessionPolicy,
    counter,
    fit,
    room,
    session_id,
    split_system,
    with_history,
)
from switchboard.errors import InvalidRequest

SYSTEM = [{"role": "system", "content": "be brief"}]


def words(messages: Sequence[dict[str, Any]]) -> int:
    """A counter for the tests: one token per word."""
    return sum(len(str(m["content"]).split()) for m in messages)


def turn(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]


def test_fit_keeps_the_most_recent_turns_that_fit_with_the_system_messages() -> None:
    turns = [turn("one two three"), turn("four five"), turn("six")]  # 4, 3 and 2 tokens
    assert fit(SYSTEM, turns, 100, words) == turns
    assert fit(SYSTEM, turns, 2 + 2 + 3, words) == turns[1:]  # system 2 + 3 + 2
    assert fit(SYSTEM, turns, 4, words) == turns[2:]
    assert fit(SYSTEM, turns, 3, words) == []  # the system messages always stay, no turn fits
    assert fit([], turns, 9, words) == turns
    assert fit(SYSTEM, [], 10, words) == []


def test_fit_without_a_known_window_keeps_every_turn() -> None:
    turns = [turn("a b c d e f g h")] * 3
    assert fit(SYSTEM, turns, None, words) == turns


def test_fit_leaves_no_holes_in_the_history() -> None:
    # The middle turn is too large: the older, small one is not kept around it.
    turns = [turn("a"), turn("b c d e f g h i j k"), turn("l")]
    assert fit([], turns, 6, words) == turns[2:]


def test_counter_uses_the_gateway_token_counter() -> None:
    count = counter("gpt-4o-mini")
    short = count([{"role": "user", "content": "hi"}])
    long = count([{"role": "user", "content": "hi " * 200}])
    assert 0 < short < long
    # Other providers: the documented estimate (more than the o200k count, never less).
    assert counter("claude-sonnet-4")([{"role": "user", "content": "hi " * 200}]) >= long


def test_room_reserves_the_new_turn_and_the_reply() -> None:
    assert room(None, 10, None) is None
    assert room(1000, 100, 200) == 700
    assert room(1000, 100, None) == 650  # a quarter of the window for the reply
    assert room(100, 500, None) == 0


def test_history_goes_between_the_system_messages_and_the_new_turn() -> None:
    rendered = [*SYSTEM, {"role": "system", "content": "more"}, {"role": "user", "content": "now"}]
    system, new = split_system(rendered)
    assert (len(system), new) == (2, [{"role": "user", "content": "now"}])
    history = [turn("before")]
    assert with_history(rendered, history) == [*rendered[:2], *history[0], rendered[2]]
    assert with_history([{"role": "user", "content": "x"}], []) == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize("value", ["a", "A-z_0.9:x", "x" * 128])
def test_good_session_ids(value: str) -> None:
    assert session_id({"x-switchboard-session": value}) == value


@pytest.mark.parametrize("value", ["", "x" * 129, "has space", "a/b", "é", "a\tb", "semi;colon"])
def test_bad_session_ids_are_400(value: str) -> None:
    with pytest.raises(InvalidRequest) as bad:
        session_id({"x-switchboard-session": value})
    assert bad.value.status == 400 and bad.value.code == "invalid_session_id"


def test_no_session_header_is_no_session() -> None:
    assert session_id({}) is None


def test_policy_settings() -> None:
    assert SessionPolicy.parse(None) is None
    assert SessionPolicy.parse({}) == SessionPolicy()
    assert SessionPolicy.parse({"max_turns": 5, "ttl_seconds": 1}) == SessionPolicy(5, 1)
    for bad, field in [({"max_turns": 0}, "max_turns"), ({"ttl_seconds": 0}, "ttl_seconds"),
                       ({"max_bytes": True}, "max_bytes"), ({"max_turns": "5"}, "max_turns"),
                       ({"nope": 1}, "nope")]:
        with pytest.raises(ValueError, match=f"sessions.{field}"):
            SessionPolicy.parse(bad)
