"""What a caller may grant: a model name or pattern within the models it may use itself."""

from __future__ import annotations

import pytest

from switchboard.access.rules import within


@pytest.mark.parametrize(
    ("entry", "allowed", "expected"),
    [
        ("anything", None, True),
        ("*", None, True),
        ("*", ("*",), True),
        ("gpt-4o-mini", ("*",), True),
        ("gpt-4o-mini", ("gpt-4o-mini",), True),
        ("gpt-4o-mini", ("gpt-*",), True),
        ("claude", ("gpt-*",), False),
        ("gpt-*", ("gpt-*",), True),
        ("gpt-4o*", ("gpt-*",), True),
        ("gpt-4o*", ("gpt-4o-mini",), False),  # a family is not one of its members
        ("gpt*", ("gpt-*",), False),  # wider: gpt4 matches it, not gpt-*
        ("*", ("gpt-*",), False),
        ("*-mini", ("gpt-*",), False),
        ("*-mini", ("*-mini",), True),
        ("gpt-4o*", ("*-mini", "gpt-4*"), True),
        ("gpt-[4]*", ("gpt-*",), True),  # starts with the literal gpt-: within
        ("a*", ("[ab]*",), False),  # not worked out: refused rather than guessed
        ("", ("gpt-*",), False),
    ],
)
def test_within(entry: str, allowed: tuple[str, ...] | None, expected: bool) -> None:
    assert within(entry, allowed) is expected
