"""The counts a counter keeps between requests: a short string's count read back from the kept
counts is the tokenizer's, also after the kept counts were cleared (full) or before any were
kept, and a long string is always counted by the tokenizer."""

from __future__ import annotations

from switchboard import tokens
from switchboard.tokens import encodings

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there"}]}
LONG = "word " * 400  # past the kept counts' length: counted each time


def test_kept_counts_are_the_tokenizers_before_and_after_a_clear() -> None:
    first = tokens.estimate(CHAT, "chat", model="gpt-4o")
    kept = encodings.short_counts("o200k_base")
    assert kept["Hello there"] == len(encodings.get("o200k_base").encode_ordinary("Hello there"))
    kept.clear()  # as count_text clears them when full
    assert tokens.estimate(CHAT, "chat", model="gpt-4o") == first
    assert kept["Hello there"] == len(encodings.get("o200k_base").encode_ordinary("Hello there"))


def test_a_long_text_is_counted_not_kept() -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": LONG}]}
    n = tokens.estimate(request, "chat", model="gpt-4o")
    tokenizer = encodings.get("o200k_base")
    assert n == 3 + 3 + len(tokenizer.encode_ordinary("user")) + len(tokenizer.encode_ordinary(LONG))
    assert LONG not in encodings.short_counts("o200k_base")


def test_every_model_of_an_encoding_counts_alike() -> None:
    # One counter kept per (encoding, model): text counts do not depend on the model.
    assert tokens.estimate(CHAT, "chat", model="gpt-4o") == tokens.estimate(CHAT, "chat", model="gpt-4.1")
    assert tokens.estimate(CHAT, "chat", model="gpt-4") != 0
