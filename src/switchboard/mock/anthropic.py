"""Mock of the Anthropic Messages API: ``POST /v1/messages`` (JSON and SSE) and
``POST /v1/messages/count_tokens``.

Strict like the real API (https://platform.claude.com/docs/en/api/messages/create and
/api/errors): the ``x-api-key`` and ``anthropic-version`` headers, a required ``max_tokens``,
roles ``user``/``assistant`` only, unknown top-level fields rejected, tool_use/tool_result
pairing across turns; errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
Faults from mock/controls.py use the same format (``status=529`` -> overloaded_error), mid-stream
as ``event: error``.

Prompt caching is simulated: the prefix up to the last ``cache_control`` breakpoint (tools, then
system, then messages) is written on first sight (``cache_creation_input_tokens``) and read on
later requests (``cache_read_input_tokens``).

Extended thinking (``thinking: {"type": "enabled", "budget_tokens": N}``, N >= 1024 and below
``max_tokens``) opens the reply with a ``thinking`` block whose ``signature`` is derived from its
text; a replayed ``thinking`` block whose signature does not match is refused with 400, as the
API refuses tampered thinking, and with thinking on, an assistant turn answered by tool results
must start with its thinking block. ``redacted_thinking`` blocks are accepted as they are (and,
with ``mock:redacted_thinking=1``, one comes before the thinking block of the reply). While
thinking (a budget or adaptive), a ``temperature`` other than 1, ``top_p`` below 0.95, any
``top_k`` and a forced ``tool_choice`` (any, tool) are refused (mock/claude_thinking.py).
``stop_sequences`` cut the text before the first hit (``stop_reason: "stop_sequence"``), and
``mock:refuse`` in the last user text answers ``stop_reason: "refusal"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import claude_thinking
from switchboard.mock import text as T
from switchboard.mock.common import (
    before_answer,
    error_as_json,
    json_response,
    new_id,
    read_json,
    request_controls,
    stream_response,
)
from switchboard.mock.controls import Controls

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    504: "timeout_error", 529: "overloaded_error",
}
_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "output_config", "service_tier", "container",
    "mcp_servers", "context_management", "inference_geo", "cache_control",
})
_COUNT_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "mcp_servers",
    "context_management", "cache_control",
})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_CACHE: set[str] = set()  # prompt-cache prefixes written so far
_CACHE_LIMIT = 10_000
REFUSE = "mock:refuse"  # in the last user text: the model declines (stop_reason "refusal")
REFUSAL_TEXT = "I can't help with that."
MIN_THINKING_BUDGET = 1024


class Invalid(Exception):
    """A request the real API rejects with 400 invalid_request_error."""


# -- errors -------------------------------------------------------------------------------------


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": new_id("req_")}


def error(status: int, message: str, kind: str | None = None, retry_after: str = "") -> Response:
    headers = {"request-id": new_id("req_")}
    if retry_after:
        headers["retry-after"] = retry_after
    return json_response(error_body(kind or ERROR_TYPES.get(status, "api_error"), message), status, headers)


def check_headers(request: Request) -> Response | None:
    key = request.app.state.api_key
    sent = request.headers.get("x-api-key")
    bearer = request.headers.get("authorization", "")
    if sent is None and bearer.startswith("Bearer "):
        sent = bearer[7:]  # recent official SDKs send the API key as a bearer token
    if key and sent is None:
        return error(401, "x-api-key header is required")
    if key and sent != key:
        return error(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    return None


def _code(value: str) -> str:
    # controls.py turns underscores into spaces in every string directive
    return value.replace(" ", "_")


def injected(c: Controls) -> Response | None:
    if not c.status:
        return None
    code = _code(c.error_code)
    retry = c.retry_after or ("1" if c.status == 429 else "")
    if code == "context_length_exceeded":
        return error(c.status, "prompt is too long: 250000 tokens > 200000 maximum", "invalid_request_error")
    messages = {401: "invalid x-api-key", 529: "Overloaded",
                429: "Number of request tokens has exceeded your per-minute rate limit"}
    kind = code if code in ERROR_TYPES.values() else None
    return error(c.status, messages.get(c.status, f"mock: injected error {c.status}"), kind, retry)


def _stream_failure(c: Controls) -> bytes:
    code = _code(c.error_code)
    kind = code if code in ERROR_TYPES.values() else "overloaded_error"
    message = "Overloaded" if kind == "overloaded_error" else "mock: injected mid-stream failure"
    return _sse("error", {"type": "error", "error": {"type": kind, "message": message}})


# -- validation ---------------------------------------------------------------------------------


def validate(body: Any, count_only: bool = False) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("There was an error parsing the body of your request")
    allowed = _COUNT_FIELDS if count_only else _FIELDS
    for key in body:
        if key not in allowed:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    if not count_only:
        _check_max_tokens(body.get("max_tokens"))
    _check_system(body.get("system"))
    names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), names)
    _check_sampling(body)
    _check_output_config(body.get("output_config"))
    _check_thinking(body.get("thinking"), body.get("max_tokens"), count_only)
    _check_while_thinking(body)
    _check_messages(body.get("messages"))
    if thinking_on(body):
        _check_thinking_kept(merged_turns(body["messages"]))
    return body


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_max_tokens(value: Any) -> None:
    if value is None:
        raise Invalid("max_tokens: Field required")
    if not _is_int(value):
        raise Invalid("max_tokens: Input should be a valid integer")
    if value < 0:
        raise Invalid("max_tokens: Input should be greater than or equal to 0")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Invalid("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Invalid(f"system.{i}.type: Input should be 'text'")
        _check_block(block, f"system.{i}", "system")


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise Invalid("tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise Invalid(f"tools.{i}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            continue  # server tools (web_search_..., ...) have their own shapes
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise Invalid(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise Invalid("tools: Tool names must be unique.")
        names.add(name)
    return names


def _check_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise Invalid("tool_choice: Input tag does not match any of the expected tags: "
                      "'auto', 'any', 'tool', 'none'")
    if choice["type"] in ("any", "tool") and not names:
        raise Invalid(f"tool_choice.type '{choice['type']}' requires tools to be provided")
    if choice["type"] == "tool" and choice.get("name") not in names:
        raise Invalid(f"tool_choice: tool '{choice.get('name')}' was not found in the provided tools")


def _check_sampling(body: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (not _is_number(value) or not 0 <= value <= 1):
            raise Invalid(f"{key}: Input should be a number between 0 and 1")
    if body.get("top_k") is not None and (not _is_int(body["top_k"]) or body["top_k"] < 0):
        raise Invalid("top_k: Input should be a non-negative integer")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise Invalid("stop_sequences: Input should be a valid list of strings")
    if stops and not all(stops):
        raise Invalid("stop_sequences: each stop sequence must be non-empty")
    if stops and not all(s.strip() for s in stops):
        raise Invalid("stop_sequences: each stop sequence must contain non-whitespace")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise Invalid("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise Invalid("metadata: Input should be a valid dictionary")
        for key in metadata:
            if key != "user_id":
                raise Invalid(f"metadata.{key}: Extra inputs are not permitted")
        user_id = metadata.get("user_id")
        if isinstance(user_id, str) and len(user_id) > 256:  # the API reference's maxLength
            raise Invalid("metadata.user_id: String should have at most 256 characters")


# Anthropic's effort levels (https://platform.claude.com/docs/en/build-with-claude/effort).
_EFFORTS = ("low", "medium", "high", "xhigh", "max")


def _check_output_config(config: Any) -> None:
    if config is None:
        return
    fmt = config.get("format") if isinstance(config, dict) else "invalid"
    if isinstance(config, dict) and config.get("effort") not in (None, *_EFFORTS):
        raise Invalid("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    if fmt is None:
        return
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(schema, dict):
        raise Invalid("output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}")


def thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _check_thinking(thinking: Any, max_tokens: Any, count_only: bool) -> None:
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("disabled", "adaptive"):  # adaptive: the model sets its own budget (no thinking mocked)
        return
    if kind != "enabled":
        raise Invalid("thinking: Input tag does not match any of the expected tags: 'adaptive', 'enabled', "
                      "'disabled'")
    assert isinstance(thinking, dict)
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise Invalid("thinking.enabled.budget_tokens: Field required")
    if budget < MIN_THINKING_BUDGET:
        raise Invalid(f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                      f"{MIN_THINKING_BUDGET}")
    if not count_only and _is_int(max_tokens) and budget >= max_tokens:
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")


def _check_while_thinking(body: dict[str, Any]) -> None:
    """Sampling settings and a forced tool choice Claude refuses while it thinks (a budget or
    adaptive), the rule the Bedrock mock applies too."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return
    choice = body.get("tool_choice")
    refused = claude_thinking.conflict(body.get("temperature"), body.get("top_p"), body.get("top_k"),
                                       choice.get("type") if isinstance(choice, dict) else None)
    if refused is not None:
        raise Invalid(refused)


def signature_of(thinking: str) -> str:
    """The mock's signature of a thinking text: a replayed block must carry it unchanged."""
    return "sig-" + hashlib.sha256(thinking.encode()).hexdigest()[:16]


def _check_thinking_block(block: dict[str, Any], param: str) -> None:
    if block["type"] == "redacted_thinking":
        if not isinstance(block.get("data"), str) or not block["data"]:
            raise Invalid(f"{param}.data: Field required")
        return
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise Invalid(f"{param}: thinking blocks need a 'thinking' and a 'signature' string")
    if signature != signature_of(text):
        raise Invalid(f"{param}: Invalid `signature` in `thinking` block")


def _check_thinking_kept(turns: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """With thinking on, the assistant turn a tool result answers must keep its thinking first."""
    if len(turns) < 2 or turns[-1][0] != "user" or not _ids(turns[-1][1], "tool_result", "tool_use_id"):
        return
    blocks = turns[-2][1]
    first = blocks[0].get("type") if blocks else None
    if first not in ("thinking", "redacted_thinking"):
        raise Invalid(f"messages.{len(turns) - 2}.content.0.type: Expected `thinking` or "
                      f"`redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final "
                      "`assistant` message must start with a thinking block.")


def blocks_of(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def _blank(blocks: list[Any]) -> bool:
    """Text blocks only, and none with more than whitespace: refused, as Anthropic refuses them."""
    return bool(blocks) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        and not b["text"].strip() for b in blocks)


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise Invalid("messages: Field required")
    if not isinstance(messages, list):
        raise Invalid("messages: Input should be a valid list")
    if not messages:
        raise Invalid("messages: at least one message is required")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise Invalid(f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        if role == "system":
            raise Invalid('messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                          'parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if not isinstance(content, str | list):
            raise Invalid(f"messages.{i}.content: Input should be a valid string or list")
        for j, block in enumerate(blocks_of(content) if isinstance(content, list) else []):
            _check_block(block, f"messages.{i}.content.{j}", role)
        if _blank(blocks_of(content)):
            raise Invalid("messages: text content blocks must contain non-whitespace text")
        if not blocks_of(content) and not (role == "assistant" and i == len(messages) - 1):
            raise Invalid(f"messages.{i}: all messages must have non-empty content except for the optional "
                          "final assistant message")
    _check_pairing(merged_turns(messages))


def _check_block(block: Any, param: str, role: str) -> None:
    if not isinstance(block, dict):
        raise Invalid(f"{param}: Input should be a valid dictionary")
    kind = block.get("type")
    cache = block.get("cache_control")
    if cache is not None and (not isinstance(cache, dict) or cache.get("type") != "ephemeral"):
        raise Invalid(f"{param}.cache_control.type: Input should be 'ephemeral'")
    allowed = {"user": ("text", "image", "document", "tool_result"), "system": ("text",),
               "assistant": ("text", "tool_use", "thinking", "redacted_thinking"),
               "tool_result": ("text", "image", "document")}[role]
    if kind not in allowed:
        raise Invalid(f"{param}.type: '{kind}' blocks are not allowed here "
                      f"(expected one of {', '.join(allowed)})")
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        raise Invalid("messages: text content blocks must be non-empty")
    if kind == "image":
        _check_image(block.get("source"), f"{param}.source")
    elif kind == "document":
        _check_document(block.get("source"), f"{param}.source")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not _TOOL_ID.match(block["id"]):
            raise Invalid(f"{param}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
            raise Invalid(f"{param}: tool_use blocks need a 'name' and an 'input' object")
    elif kind in ("thinking", "redacted_thinking"):
        _check_thinking_block(block, param)
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str) or not _TOOL_ID.match(block["tool_use_id"]):
            raise Invalid(f"{param}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        content = block.get("content")
        if content is not None and not isinstance(content, str | list):
            raise Invalid(f"{param}.content: Input should be a valid string or list")
        if block.get("is_error") is True and not content:
            raise Invalid(f"{param}.tool_result: content cannot be empty if `is_error` is true")
        for k, inner in enumerate(content if isinstance(content, list) else []):
            _check_block(inner, f"{param}.content.{k}", "tool_result")


def _base64(data: Any, param: str) -> None:
    try:
        base64.b64decode(data if isinstance(data, str) else "!", validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{param}.data: invalid base64 data") from None


def _shown_type(head: bytes) -> str | None:
    """The image type the leading bytes are, when they are one the API knows."""
    for magic, media_type in ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                              (b"GIF8", "image/gif")):
        if head.startswith(magic):
            return media_type
    return "image/webp" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def _check_image(source: Any, param: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        assert isinstance(source, dict)
        if source.get("media_type") not in _IMAGE_TYPES:
            raise Invalid(f"{param}.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                          "'image/gif' or 'image/webp'")
        _base64(source.get("data"), param)
        shown = _shown_type(base64.b64decode(source["data"][:16]))
        if shown is not None and shown != source["media_type"]:
            raise Invalid(f"{param}.base64.data: Image does not match the provided media type "
                          f"{source['media_type']}")
    elif kind == "url":
        assert isinstance(source, dict)
        if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
            raise Invalid(f"{param}.url: the image URL must be http(s)")
    elif kind != "file":  # a Files API file: its id, taken as named
        raise Invalid(f"{param}.type: Input tag '{kind}' does not match the expected tags: 'base64', 'url', "
                      "'file'")


def _check_document(source: Any, param: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict) and source.get("media_type") == "application/pdf":
        _base64(source.get("data"), param)
    elif kind not in ("text", "url", "content", "file"):
        raise Invalid(f"{param}: unsupported document source")


def merged_turns(messages: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive same-role messages, combined as the API does."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for msg in messages:
        blocks = blocks_of(msg["content"])
        if turns and turns[-1][0] == msg["role"]:
            turns[-1][1].extend(blocks)
        else:
            turns.append((msg["role"], blocks))
    return turns


def _ids(blocks: list[dict[str, Any]], kind: str, key: str) -> list[str]:
    return [b[key] for b in blocks if b.get("type") == kind]


def _check_pairing(turns: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for k, (role, blocks) in enumerate(turns):
        if role == "user":
            results = _ids(blocks, "tool_result", "tool_use_id")
            previous = set(_ids(turns[k - 1][1], "tool_use", "id")) if k else set()
            for rid in results:
                if rid not in previous:
                    raise Invalid(f"messages.{k}.content: unexpected `tool_use_id` found in `tool_result` "
                                  f"blocks: {rid}. Each `tool_result` block must have a corresponding "
                                  "`tool_use` block in the previous message.")
            kinds = [b.get("type") == "tool_result" for b in blocks]
            if results and kinds != sorted(kinds, reverse=True):
                raise Invalid(f"messages.{k}: `tool_result` blocks must come first in the content of a "
                              "user turn")
        elif k + 1 < len(turns):
            answered = set(_ids(turns[k + 1][1], "tool_result", "tool_use_id"))
            missing = [u for u in _ids(blocks, "tool_use", "id") if u not in answered]
            if missing:
                raise Invalid(f"messages.{k + 1}: `tool_use` ids were found without `tool_result` blocks "
                              f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                              "corresponding `tool_result` block in the next message.")


# -- answers ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reply:
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None = None


def _custom_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]


def _tool_to_call(body: dict[str, Any], c: Controls, last: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = _custom_tools(body)
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None
    if choice["type"] == "auto" and _ids(last, "tool_result", "tool_use_id") and not c.tool_call:
        return None  # answering a tool result
    wanted = choice.get("name") if choice["type"] == "tool" else (_code(c.tool_call) or None)
    return next((t for t in tools if wanted in (None, t["name"])), tools[0])


def _images(blocks: list[dict[str, Any]]) -> str:
    found = [b["source"].get("media_type") or b["source"]["type"] for b in blocks if b.get("type") == "image"]
    if not found:
        return ""
    return f" (I see {len(found)} image{'s' if len(found) > 1 else ''}: {', '.join(found)})"


def _answer_text(body: dict[str, Any], c: Controls, last: list[dict[str, Any]]) -> str:
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        return orjson.dumps(T.arguments_for(fmt["schema"])).decode()
    results = [b for b in last if b.get("type") == "tool_result"]
    if results:
        return c.reply or f"The tool returned: {T.text_of([b.get('content') for b in results])[:200]}"
    return T.reply_text(_said(last), c.reply) + _images(last)


def _cut_at_stop(text: str, stops: list[str] | None) -> tuple[str, str | None]:
    hits = [(text.find(s), s) for s in stops or [] if s and s in text]
    if not hits:
        return text, None
    at, stop = min(hits)
    return text[:at], stop


def _said(last: list[dict[str, Any]]) -> str:
    return " ".join(b["text"] for b in last if b.get("type") == "text")


def _thinking_block(body: dict[str, Any], c: Controls, last: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not thinking_on(body):
        return []
    said = " ".join(_said(last).split())[:100]
    # The prompt comes last, as it was: a directive in it (mock:capture=...) keeps its value when
    # the block is replayed.
    text = f"Let me think it through. The user said: {said}" if said else "Let me think it through."
    blocks = [{"type": "thinking", "thinking": text, "signature": signature_of(text)}]
    if c.redacted_thinking:  # reasoning the safety systems redacted: encrypted, returned whole
        blocks.insert(0, {"type": "redacted_thinking", "data": signature_of("redacted " + text)})
    return blocks


def _text_reply(body: dict[str, Any], c: Controls, last: list[dict[str, Any]]) -> _Reply:
    if REFUSE in _said(last):
        return _Reply([{"type": "text", "text": REFUSAL_TEXT}], "refusal")
    text, stop = _cut_at_stop(_answer_text(body, c, last), body.get("stop_sequences"))
    cut = False
    if stop is None:
        text, cut = T.truncate(text, body.get("max_tokens"))
    reason = "stop_sequence" if stop is not None else ("max_tokens" if cut else "end_turn")
    return _Reply([{"type": "text", "text": text}] if text else [], reason, stop)


def answer(body: dict[str, Any], c: Controls) -> _Reply:
    turns = merged_turns(body["messages"])
    last = turns[-1][1] if turns[-1][0] == "user" else []
    thinking = _thinking_block(body, c, last)
    tool = _tool_to_call(body, c, last)
    if tool is not None:
        blocks: list[dict[str, Any]] = list(thinking)
        if (body.get("tool_choice") or {"type": "auto"})["type"] == "auto":
            blocks.append({"type": "text", "text": f"I'll use the {tool['name']} tool."})
        blocks.append({"type": "tool_use", "id": new_id("toolu_"), "name": tool["name"],
                       "input": T.arguments_for(tool["input_schema"])})
        return _Reply(blocks, "tool_use")
    reply = _text_reply(body, c, last)
    reply.blocks[:0] = thinking
    return reply


def _output_tokens(reply: _Reply) -> int:
    count = 0
    for block in reply.blocks:
        if block["type"] == "tool_use":
            count += T.count_tokens(block["input"])
        else:
            count += len(T.words(block.get("text") or block.get("thinking") or ""))
    return count


def _segments(body: dict[str, Any]) -> list[Any]:
    """What the prompt cache sees, in its order: tools, system, then message blocks."""
    system = body.get("system")
    parts: list[Any] = list(body.get("tools") or [])
    parts += system if isinstance(system, list) else ([system] if system else [])
    for msg in body["messages"]:
        parts += blocks_of(msg["content"])
    return parts


def _words(value: Any) -> int:
    return len(T.text_of(value).split())


def usage(body: dict[str, Any], output_tokens: int, write_cache: bool = True) -> dict[str, Any]:
    parts = _segments(body)
    marks = [i for i, p in enumerate(parts) if isinstance(p, dict) and "cache_control" in p]
    if body.get("cache_control") and parts:
        marks.append(len(parts) - 1)  # automatic caching: the last block
    cached = created = 0
    if marks:
        prefix = parts[: max(marks) + 1]
        key = hashlib.sha256(orjson.dumps([body["model"], prefix])).hexdigest()
        if key in _CACHE:
            cached = _words(prefix)
        elif write_cache:
            created = _words(prefix)
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE.add(key)
    total = max(1, _words(parts))
    return {"input_tokens": max(0, total - cached - created), "cache_creation_input_tokens": created,
            "cache_read_input_tokens": cached,
            "cache_creation": {"ephemeral_5m_input_tokens": created, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens, "service_tier": "standard"}


def reported_usage(body: dict[str, Any], reply: _Reply, c: Controls) -> dict[str, Any]:
    """The usage of ``reply``, with the server tools' requests ``mock:web_searches=N`` asks for,
    as Claude reports them (web searches are billed per search)."""
    used = usage(body, _output_tokens(reply))
    if c.web_searches > 0:
        used["server_tool_use"] = {"web_search_requests": c.web_searches, "web_fetch_requests": 0}
    return used


def _message(body: dict[str, Any], reply: _Reply, usage: dict[str, Any],
             content: bool = True) -> dict[str, Any]:
    return {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
            "content": reply.blocks if content else [], "stop_reason": reply.stop_reason if content else None,
            "stop_sequence": reply.stop_sequence if content else None, "usage": usage}


# -- streaming ----------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    def delta(d: dict[str, Any]) -> bytes:
        return _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})

    start: dict[str, Any]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [delta({"type": "text_delta", "text": w}) for w in T.words(block["text"])]
    elif block["type"] == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [delta({"type": "thinking_delta", "thinking": w}) for w in T.words(block["thinking"])]
        deltas.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    elif block["type"] == "redacted_thinking":  # comes whole, in its start event
        start, deltas = block, []
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        args = orjson.dumps(block["input"]).decode()
        # The API opens tool input with an empty partial_json, then sends fragments.
        deltas = [delta({"type": "input_json_delta", "partial_json": p})
                  for p in ["", *(args[k:k + 8] for k in range(0, len(args), 8))]]
    opened = {"type": "content_block_start", "index": index, "content_block": start}
    events = [_sse("content_block_start", opened)]
    if index == 0:
        events.append(_sse("ping", {"type": "ping"}))
    events += deltas
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def stream_events(body: dict[str, Any], reply: _Reply, usage: dict[str, Any]) -> list[bytes]:
    start_usage = {**usage, "output_tokens": 1}
    events = [_sse("message_start", {"type": "message_start",
                                     "message": _message(body, reply, start_usage, content=False)})]
    for index, block in enumerate(reply.blocks):
        events += _block_events(index, block)
    # message_delta usage is cumulative and, in current API versions, repeats the input counts.
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    final_usage = {k: usage[k] for k in keys}
    if "server_tool_use" in usage:
        final_usage["server_tool_use"] = usage["server_tool_use"]
    events.append(_sse("message_delta", {"type": "message_delta", "usage": final_usage, "delta": {
        "stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}}))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


# -- endpoints ----------------------------------------------------------------------------------


async def messages(request: Request) -> Response:
    if (problem := check_headers(request)) is not None:
        return problem
    raw = await read_json(request)
    try:
        body = validate(raw)
    except Invalid as exc:
        return error(400, str(exc))
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return error_as_json(c, body, fault)
    await before_answer(c)
    reply = answer(body, c)
    used = reported_usage(body, reply, c)
    if body.get("stream") and not c.stream_json:
        return stream_response(c, stream_events(body, reply, used), lambda: _stream_failure(c))
    return json_response(_message(body, reply, used), headers={"request-id": new_id("req_")})


async def count_tokens(request: Request) -> Response:
    if (problem := check_headers(request)) is not None:
        return problem
    raw = await read_json(request)
    try:
        body = validate(raw, count_only=True)
    except Invalid as exc:
        return error(400, str(exc))
    if (fault := injected(request_controls(request, body))) is not None:
        return fault
    return json_response({"input_tokens": max(1, _words(_segments(body)))})


def routes() -> list[Route]:
    return [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
