"""Operators' patterns keep the meaning Python's re gives them when the regex engine runs them
(switchboard/patterns.py): a brace re reads as the character is one, never fuzzy matching."""

from __future__ import annotations

import re

import pytest

from switchboard.config.regexes import compile_as_re


@pytest.mark.parametrize("pattern", [
    r"user {id}", r"ticket{s}", r"x{2}", r"x{2,}", r"x{,3}", r"x{,}", r"a{}b", r"[{}]+", r"[^]{]+",
    r"\{literal\}", r"\N{DIGIT ONE}{2}", r"a\\{b}", r"(?i)Token={secret}",
])
def test_a_pattern_matches_as_re_matches(pattern: str) -> None:
    texts = ["user {id}", "tickets", "ticket{s}", "xx", "xxxx", "", "a{}b", "{}{", "abc", "{literal}",
             "11", "a\\{b}", "token={SECRET}", "x"]
    ours = compile_as_re(pattern)
    for text in texts:
        expected = re.search(pattern, text)
        found = ours.search(text)
        assert (found and found.span()) == (expected and expected.span()), (pattern, text)


def test_what_re_refuses_is_refused() -> None:
    with pytest.raises(re.error):
        compile_as_re(r"\p{L}+")  # regex would take it; the configuration is checked as re reads it
