"""Canonical chat types.

The canonical form is OpenAI's Chat Completions schema, held as plain dicts (typed here for
readers and mypy, not validated per field at run time beyond ``http/validate.py``). Adapters
translate to and from it; the OpenAI adapter is therefore almost the identity, which keeps the
most common path cheap.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ToolCallDelta(TypedDict, total=False):
    index: int
    id: str
    type: Literal["function"]
    function: dict[str, str]


class Message(TypedDict, total=False):
    role: str  # system | developer | user | assistant | tool
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[ToolCall]
    tool_call_id: str


class ChatRequest(TypedDict, total=False):
    model: str
    messages: list[Message]
    stream: bool
    stream_options: dict[str, Any]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: str | list[str]
    seed: int
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    response_format: dict[str, Any]
    logprobs: bool
    top_logprobs: int
    user: str


class Usage(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]
    completion_tokens_details: dict[str, int]


class Choice(TypedDict, total=False):
    index: int
    message: Message
    finish_reason: str | None
    logprobs: Any


class ChatResponse(TypedDict, total=False):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None


class ChunkChoice(TypedDict, total=False):
    index: int
    delta: dict[str, Any]
    finish_reason: str | None
    logprobs: Any


class ChatChunk(TypedDict, total=False):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None
    system_fingerprint: NotRequired[str | None]


FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")
