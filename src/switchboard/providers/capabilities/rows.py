"""The rows of the capability matrix: every chat request field and sub-feature a caller can ask
for (in the canonical form, which is OpenAI's plus the extensions named in docs/providers.md
"Canonical extensions"), and the response features a provider may or may not report.

A request row knows how to tell whether a request uses it (``present``), how to remove it when
``drop_params`` asks for that (``drop``), and gives an ``example`` fragment the matrix test merges
into a minimal request to probe each provider's cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from switchboard.providers.params import CHAT_PARAMS

JSON = dict[str, Any]


def _given(name: str) -> Callable[[JSON], bool]:
    # false/null/0, n=1 and thinking {"type": "disabled"} ask for no feature (the defaults): they
    # are not uses of the row (Gemini clients send thinkingBudget 0, i.e. disabled, to any model).
    def present(request: JSON) -> bool:
        v = request.get(name)
        if v in (None, False, 0) or (name == "n" and v == 1):
            return False
        return not (name == "thinking" and isinstance(v, dict) and v.get("type") == "disabled")

    return present


def _has(name: str) -> Callable[[JSON], bool]:
    def there(request: JSON) -> bool:
        return name in request

    return there


def _without(name: str) -> Callable[[JSON], JSON]:
    def drop(request: JSON) -> JSON:
        return {k: v for k, v in request.items() if k != name}

    return drop


@dataclass(frozen=True, slots=True)
class Row:
    name: str  # the row's key in every provider table
    param: str  # the request parameter a 400 names
    what: str  # how the 400 and the docs name the feature
    example: JSON  # merged into a minimal chat request by the matrix test
    present: Callable[[JSON], bool] = field(default=lambda _r: False)
    drop: Callable[[JSON], JSON] = field(default=lambda r: r)
    # The request carries the row's key with a value that asks for nothing (``present`` false):
    # a strict server refuses the key itself (Mistral: "Extra inputs are not permitted").
    idle: Callable[[JSON], bool] = field(default=lambda _r: False)
    # A row every use of this one also uses (more than 5 stop sequences are more than 4): where
    # that row is refused, it is refused first, so this one is not tested per request.
    within: str = ""
    # A message-level row: the key a message must carry for ``present`` to be worth asking.
    # ``check`` collects the keys of all messages in one pass and skips the rows whose key is not
    # among them, so a plain request pays one pass however many message rows a provider refuses.
    message_key: str = ""
    # Where in the request the feature is (``messages[2].audio``), for the 400; None: ``param``.
    locate: Callable[[JSON], str] | None = None

    def param_in(self, request: JSON) -> str:
        """The parameter a 400 for this row names in ``request``."""
        return self.locate(request) if self.locate else self.param


def _param(name: str, example: Any) -> Row:
    return Row(name, name, f"parameter '{name}'", {name: example}, _given(name), _without(name), _has(name))


def _messages(request: JSON) -> Iterator[JSON]:
    for m in request.get("messages") or ():
        if isinstance(m, dict):
            yield m


def _parts(request: JSON) -> Iterator[JSON]:
    for m in _messages(request):
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    yield part


def _map_parts(request: JSON, change: Callable[[JSON], JSON]) -> JSON:
    """A copy of ``request`` with ``change`` applied to every content part (the original is the
    caller's and stays as it was)."""
    messages = [
        {**m, "content": [change(p) if isinstance(p, dict) else p for p in m["content"]]}
        if isinstance(m, dict) and isinstance(m.get("content"), list) else m
        for m in request.get("messages") or ()
    ]
    return {**request, "messages": messages}


def _without_detail(part: JSON) -> JSON:
    image = part.get("image_url")
    if part.get("type") != "image_url" or not isinstance(image, dict):
        return part
    return {**part, "image_url": {k: v for k, v in image.items() if k != "detail"}}


def _is_document(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "document"


def _without_documents(request: JSON) -> JSON:
    messages = [
        {**m, "content": [p for p in m["content"] if not _is_document(p)]}
        if isinstance(m, dict) and isinstance(m.get("content"), list) else m
        for m in request.get("messages") or ()
    ]
    return {**request, "messages": messages}


def _json_schema(request: JSON) -> JSON:
    fmt = request.get("response_format")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    return spec if isinstance(spec, dict) else {}


def _without_format_description(request: JSON) -> JSON:
    spec = {k: v for k, v in _json_schema(request).items() if k != "description"}
    return {**request, "response_format": {**request["response_format"], "json_schema": spec}}


def message_keys(request: JSON) -> set[str]:
    """The keys any message of ``request`` carries (one pass; see ``Row.message_key``)."""
    keys: set[str] = set()
    for m in request.get("messages") or ():  # a plain loop: this runs on every request
        if isinstance(m, dict):
            keys.update(m)
    return keys


def _message_row(name: str, key: str, what: str, example: JSON, uses: Callable[[JSON], bool],
                 note_empty: bool = False) -> Row:
    """A row for the message key ``key`` in the messages ``uses`` picks (role, value). The 400
    names the first such message's key (``messages[1].audio``); dropping removes the key from
    each of them. With ``note_empty``, an assistant message left with no content, tool calls or
    function call gets content "" (its turn stays in place, so the turns around it still
    alternate; adapters fill or leave out an empty assistant turn as they already do)."""

    def used(m: Any) -> bool:
        return isinstance(m, dict) and key in m and uses(m)

    def present(request: JSON) -> bool:
        return any(used(m) for m in _messages(request))

    def locate(request: JSON) -> str:
        messages = request.get("messages") or ()
        i = next((i for i, m in enumerate(messages) if used(m)), 0)
        return f"messages[{i}].{key}"

    def without(m: JSON) -> JSON:
        out = {k: v for k, v in m.items() if k != key}
        if note_empty and out.get("content") is None and not out.get("tool_calls") \
                and not out.get("function_call") and not out.get("audio"):
            out["content"] = ""
        return out

    def drop(request: JSON) -> JSON:
        return {**request, "messages": [without(m) if used(m) else m for m in request.get("messages") or ()]}

    return Row(name, "messages", what, example, present, drop, message_key=key, locate=locate)


def _functions(request: JSON) -> Iterator[JSON]:
    for t in request.get("tools") or ():
        if isinstance(t, dict) and isinstance(t.get("function"), dict):
            yield t["function"]


# Example values the matrix test sends for the top-level OpenAI parameters.
_EXAMPLES: dict[str, Any] = {
    "stream_options": {"include_usage": True},
    "max_tokens": 16,
    "max_completion_tokens": 16,
    "temperature": 0.5,
    "top_p": 0.9,
    "n": 2,
    "stop": ["END"],
    "seed": 7,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "required",
    "parallel_tool_calls": True,
    "response_format": {"type": "json_object"},
    "logprobs": True,
    "top_logprobs": 2,
    "logit_bias": {"50256": -100},
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "user": "user-1",
    "metadata": {"app": "demo"},
    "store": True,
    "service_tier": "default",
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "x"},
    "reasoning_effort": "low",
    "web_search_options": {},
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "function_call": "auto",
    "verbosity": "low",
    "prompt_cache_key": "k",
    "safety_identifier": "s",
    "moderation": {"model": "omni-moderation-latest", "policy": {"output": {"mode": "block"}}},
    "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    "prompt_cache_retention": "24h",
}

_PNG = "data:image/png;base64,iVBORw0KGgo="
_SKIP = {"model", "messages", "stream"}  # every request has them

PARAM_ROWS: tuple[Row, ...] = (
    *(_param(name, _EXAMPLES[name]) for name in sorted(CHAT_PARAMS - _SKIP)),
    # Extensions of the canonical form (docs/providers.md, "Canonical extensions").
    _param("top_k", 5),
    _param("thinking", {"type": "enabled", "budget_tokens": 2048}),
)

def _stop_limit(limit: int, within: str = "") -> Row:
    """More ``stop`` sequences than ``limit``, a provider's documented maximum (OpenAI and Azure 4,
    the Gemini API and Cohere 5). Other inbound APIs allow more (Anthropic's stop_sequences), and
    the upstream's 400 would name a field the caller never sent. Dropping keeps the first ones."""

    def present(request: JSON) -> bool:
        stop = request.get("stop")
        return isinstance(stop, list) and len(stop) > limit

    return Row(
        f"stop:more_than_{limit}", "stop", f"'stop' with more than {limit} sequences",
        {"stop": [f"STOP{i}" for i in range(limit + 1)]},
        present,
        lambda r: {**r, "stop": r["stop"][:limit]},
        within=within,
    )


# Sub-features: a value or a nested field that means something a plain "is the key there" misses.
FEATURE_ROWS: tuple[Row, ...] = (
    # The smaller limit first: a request over both is refused naming the one a provider has.
    _stop_limit(4),
    _stop_limit(5, within="stop:more_than_4"),
    Row(
        "tool_choice:none", "tool_choice", "tool_choice 'none'",
        {"tools": _EXAMPLES["tools"], "tool_choice": "none"},
        lambda r: r.get("tool_choice") == "none",
        _without("tool_choice"),
    ),
    # Where tool_choice itself is refused (Ollama), this is too, and that row names it first.
    Row(
        "tool_choice:allowed_tools", "tool_choice", "tool_choice 'allowed_tools'",
        {"tools": _EXAMPLES["tools"], "tool_choice": {"type": "allowed_tools", "allowed_tools": {
            "mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}}},
        lambda r: isinstance(r.get("tool_choice"), dict) and r["tool_choice"].get("type") == "allowed_tools",
        _without("tool_choice"),
        within="tool_choice",
    ),
    Row(
        "parallel_tool_calls:false", "parallel_tool_calls", "parallel_tool_calls false",
        {"tools": _EXAMPLES["tools"], "parallel_tool_calls": False},
        lambda r: r.get("parallel_tool_calls") is False,
        _without("parallel_tool_calls"),
    ),
    Row(
        "tools.strict", "tools", "strict tool schemas (function.strict)",
        {"tools": [{"type": "function", "function": {
            "name": "f", "strict": True,
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        }}]},
        lambda r: any(f.get("strict") is True for f in _functions(r)),
        lambda r: {**r, "tools": [
            {**t, "function": {k: v for k, v in t["function"].items() if k != "strict"}}
            if isinstance(t, dict) and isinstance(t.get("function"), dict) else t
            for t in r.get("tools") or ()
        ]},
    ),
    Row(
        "cache_control", "messages", "cache_control (prompt caching breakpoints)",
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
        ]}]},
        lambda r: any("cache_control" in p for p in _parts(r)),
        lambda r: _map_parts(r, lambda p: {k: v for k, v in p.items() if k != "cache_control"}),
    ),
    # OpenAI's explicit prompt-cache breakpoint on a content part (with prompt_cache_options).
    Row(
        "prompt_cache_breakpoint", "messages", "prompt_cache_breakpoint (OpenAI prompt caching breakpoints)",
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "prompt_cache_breakpoint": {"mode": "explicit"}},
        ]}]},
        lambda r: any("prompt_cache_breakpoint" in p for p in _parts(r)),
        lambda r: _map_parts(r, lambda p: {k: v for k, v in p.items() if k != "prompt_cache_breakpoint"}),
    ),
    # "high" and "auto" ask for the provider's normal handling of an image; only "low" asks for
    # something a provider without a resolution control cannot do.
    Row(
        "image_url.detail:low", "messages", "image_url.detail 'low'",
        {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": _PNG, "detail": "low"}},
        ]}]},
        lambda r: any(
            p.get("type") == "image_url" and isinstance(p.get("image_url"), dict)
            and p["image_url"].get("detail") == "low"
            for p in _parts(r)
        ),
        lambda r: _map_parts(r, _without_detail),
    ),
    # Documents and tool errors (canonical extensions from /v1/messages: document parts, is_error).
    Row(
        "document", "messages", "document parts",
        {"messages": [{"role": "user", "content": [{"type": "document", "document": {
            "title": "Notes",
            "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
        }}]}]},
        lambda r: any(p.get("type") == "document" for p in _parts(r)),
        _without_documents,
    ),
    Row(
        "tool.is_error", "messages", "tool results flagged is_error",
        {"tools": _EXAMPLES["tools"], "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "no such file", "is_error": True},
        ]},
        lambda r: any(m.get("role") == "tool" and m.get("is_error") is True for m in _messages(r)),
        lambda r: {**r, "messages": [
            {k: v for k, v in m.items() if k != "is_error"} if isinstance(m, dict) else m
            for m in r.get("messages") or ()
        ]},
    ),
    # What the structured output is for, which the model reads to decide how to answer in it.
    Row(
        "response_format.json_schema.description", "response_format",
        "response_format.json_schema.description",
        {"response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "description": "The capital city asked for",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}},
        lambda r: bool(_json_schema(r).get("description")),
        _without_format_description,
    ),
    # Gemini's safety thresholds (canonical extension from the Gemini-format API): an empty list
    # asks for nothing.
    Row(
        "safety_settings", "safety_settings", "safety_settings (Gemini safety thresholds)",
        {"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]},
        lambda r: bool(r.get("safety_settings")),
        _without("safety_settings"),
    ),
    # Gemini's enhanced civic (election) answers (canonical extension from the Gemini-format API):
    # a different answer, which only the Gemini API gives; false asks for nothing.
    Row(
        "enable_enhanced_civic_answers", "enable_enhanced_civic_answers",
        "parameter 'enable_enhanced_civic_answers' (Gemini's enhanced civic answers)",
        {"enable_enhanced_civic_answers": True},
        _given("enable_enhanced_civic_answers"),
        _without("enable_enhanced_civic_answers"),
        _has("enable_enhanced_civic_answers"),
    ),
)

def _custom_calls(m: JSON) -> list[int]:
    """The indexes of the custom tool calls (``type: custom``, free-form input) of message ``m``."""
    calls = m.get("tool_calls") if m.get("role") == "assistant" else None
    if not isinstance(calls, list):
        return []
    return [j for j, c in enumerate(calls) if isinstance(c, dict) and c.get("type") == "custom"]


def _locate_custom_call(request: JSON) -> str:
    for i, m in enumerate(_messages(request)):
        if calls := _custom_calls(m):
            return f"messages[{i}].tool_calls[{calls[0]}].type"
    return "messages"


def _without_custom_calls(request: JSON) -> JSON:
    """The request without its custom tool calls and the tool messages answering them (a result
    answering no call would be refused); an assistant message left with nothing gets content ""."""
    removed: set[Any] = set()
    messages: list[Any] = []
    for m in request.get("messages") or ():
        if isinstance(m, dict) and (custom := _custom_calls(m)):
            removed.update(m["tool_calls"][j].get("id") for j in custom)
            kept = [c for j, c in enumerate(m["tool_calls"]) if j not in custom]
            m = {k: v for k, v in m.items() if k != "tool_calls"} | ({"tool_calls": kept} if kept else {})
            if not kept and m.get("content") is None:
                m["content"] = ""
        elif isinstance(m, dict) and m.get("role") == "tool" and m.get("tool_call_id") in removed:
            continue
        messages.append(m)
    return {**request, "messages": messages}


_ASKING = {"role": "user", "content": "hi"}
_AGAIN = {"role": "user", "content": "and again"}
_NAMED_ROLES = frozenset({"system", "developer", "user", "assistant"})

# Message-level keys of OpenAI's chat API that a provider may lack. OpenAI's own keys it ignores
# on input (assistant ``refusal``, ``annotations``) and the canonical extensions with their own
# handling (``thinking_blocks``, ``reasoning_content``, tool ``is_error``) are not rows: see
# docs/providers.md, "Message fields".
MESSAGE_ROWS: tuple[Row, ...] = (
    # An earlier audio reply named by its id (OpenAI keeps it; content may then be absent).
    _message_row(
        "messages.audio", "audio", "assistant audio replies referenced by id (messages[].audio)",
        {"messages": [_ASKING, {"role": "assistant", "audio": {"id": "audio_abc"}}, _AGAIN]},
        lambda m: m.get("role") == "assistant" and m.get("audio") is not None,
        note_empty=True,
    ),
    # A participant's name on a system, developer, user or assistant message. (On a tool message
    # OpenAI has no ``name``: adapters that need the function's name take it from the call.)
    _message_row(
        "messages.name", "name", "participant names (messages[].name)",
        {"messages": [{"role": "user", "content": "hi", "name": "ann"}]},
        lambda m: m.get("role") in _NAMED_ROLES and bool(m.get("name")),
    ),
    # The legacy (pre-tools) function call of an assistant message.
    _message_row(
        "messages.function_call", "function_call",
        "legacy assistant function calls (messages[].function_call)",
        {"messages": [_ASKING, {"role": "assistant", "content": None,
                                "function_call": {"name": "f", "arguments": "{}"}}, _AGAIN]},
        lambda m: m.get("role") == "assistant" and m.get("function_call") is not None,
        note_empty=True,
    ),
    # An earlier custom tool call (OpenAI's free-form ``custom`` tools) and the tool result that
    # answers it: where custom tools are refused, the history of one cannot be sent either.
    Row(
        "messages.tool_calls:custom", "messages", "custom tool calls (messages[].tool_calls[].custom)",
        {"messages": [_ASKING, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "custom", "custom": {"name": "g", "input": "x"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}, _AGAIN]},
        lambda r: any(_custom_calls(m) for m in _messages(r)),
        _without_custom_calls,
        message_key="tool_calls",
        locate=_locate_custom_call,
    ),
)

REQUEST_ROWS: tuple[Row, ...] = PARAM_ROWS + FEATURE_ROWS + MESSAGE_ROWS

# Response features: documented per provider in the same table (cells say whether and how the
# provider's reply carries them) and checked by the matrix test against sample replies.
RESPONSE_ROWS: dict[str, str] = {
    "reasoning": "reasoning text returned (reasoning_content / thinking blocks)",
    "reasoning.signature": "thinking signatures kept for the next turn",
    "usage.cache_read": "cache reads reported (prompt_tokens_details.cached_tokens)",
    "usage.cache_write": "cache writes reported (prompt_tokens_details.cache_creation_tokens)",
    "stop_sequence": "the matched stop sequence reported",
    "refusal": "a refusal reported as such",
}
