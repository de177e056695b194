"""Offline token counting: OpenAI's encodings shipped as package data, OpenAI's counting rules
for chat messages, tools, tool calls and images, and a documented estimate for other providers.
See docs/tokens.md. Pure functions; the encodings are built once (``preload`` at start-up)."""

from switchboard.tokens.count import (
    OTHER_PROVIDER_FACTOR,
    Counter,
    ModelInfoLike,
    count,
    encoding_for,
    estimate,
    largest_input,
    max_completion_tokens,
)
from switchboard.tokens.encodings import EncodingFileError, count_text, preload

__all__ = [
    "OTHER_PROVIDER_FACTOR",
    "Counter",
    "EncodingFileError",
    "ModelInfoLike",
    "count",
    "count_text",
    "encoding_for",
    "estimate",
    "largest_input",
    "max_completion_tokens",
    "preload",
]
