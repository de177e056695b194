"""Canonical embeddings and legacy completions types (OpenAI's shapes)."""

from __future__ import annotations

from typing import Any, TypedDict


class EmbeddingsRequest(TypedDict, total=False):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str  # float | base64
    dimensions: int
    user: str


class Embedding(TypedDict):
    object: str
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(TypedDict, total=False):
    object: str
    data: list[Embedding]
    model: str
    usage: dict[str, int]


class CompletionsRequest(TypedDict, total=False):
    model: str
    prompt: Any
    stream: bool
    max_tokens: int
