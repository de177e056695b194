"""Counting the input tokens of canonical (OpenAI-shaped) requests.

Chat requests follow OpenAI's published counting (the cookbook "How to count tokens with
tiktoken"): 3 tokens per message plus its role and content, 1 more for a ``name``, 3 for the
reply priming; tool definitions by the cookbook's ``num_tokens_for_tools`` rules. What the
cookbook leaves open (tool calls, nested parameter schemas, other content parts) follows the
rules documented in docs/tokens.md. Every function here is pure: no I/O, and no input makes it
raise, whatever the shapes in the request (the edge validated only what it had to).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from switchboard.tokens import documents, encodings
from switchboard.tokens.images import (
    claude_image_tokens,
    claude_vision,
    image_tokens,
    is_claude,
    size_of_url,
)

# The cookbook's constants.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# num_tokens_for_tools: function start (by encoding), properties, enums, end of the tool list.
FUNC_INIT = {"o200k_base": 7, "cl100k_base": 10}
PROP_INIT = 3
PROP_KEY = 3
ENUM_INIT = -3
ENUM_ITEM = 3
FUNC_END = 12
# Each tool call of an assistant message: like a message of its own (name + arguments).
TOKENS_PER_TOOL_CALL = 3

# Models of other providers: their tokenizers are not public or not shipped; the o200k count
# times this factor, rounded up. Chosen on the high side (Anthropic's and Mistral's tokenizers
# produce more tokens than o200k_base for the same text) so that a pre-call estimate does not
# under-reserve; the provider's reported usage is what is billed afterwards.
OTHER_PROVIDER_FACTOR = 1.2

# Model-name prefixes (after any "provider/" or "openai." prefix) and their encodings, checked in
# order: the o200k families first, since "gpt-4o" also starts with "gpt-4".
_O200K_PREFIXES = (
    "gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss",
    "codex-", "gpt-realtime", "gpt-audio", "computer-use", "omni-moderation",
)
_CL100K_PREFIXES = (
    "gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002", "davinci-002",
    "babbage-002",
)


class ModelInfoLike(Protocol):
    """What counting reads of a catalog record (``switchboard.catalog.ModelInfo`` has it)."""

    @property
    def model(self) -> str: ...

    @property
    def max_output_tokens(self) -> int | None: ...


def encoding_for(model: str) -> str | None:
    """``o200k_base`` or ``cl100k_base`` for an OpenAI model name; None for any other model."""
    # Asked on every request that is counted, for a handful of names: each worked out once.
    try:
        return _ENCODINGS[model]
    except KeyError:
        pass
    if len(_ENCODINGS) >= _ENCODINGS_MAX:
        _ENCODINGS.clear()
    found = _ENCODINGS[model] = _encoding_for(model)
    return found


_ENCODINGS: dict[str, str | None] = {}
_ENCODINGS_MAX = 4096


def _encoding_for(model: str) -> str | None:
    name = model.lower().rsplit("/", 1)[-1]
    name = name.removeprefix("openai.").removeprefix("azure.")
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return None


class Counter:
    """Counts with one encoding; ``model`` selects the image costs (OpenAI's, or Anthropic's for
    a Claude model)."""

    def __init__(self, encoding: str, model: str = "") -> None:
        self.encoding = encoding
        self.model = model
        # A Claude model's native image resolution; None for other models (OpenAI's image rule).
        self.vision = claude_vision(model) if is_claude(model) else None
        # A figure in the provider's own tokens (a Claude image, a PDF page) is divided by the
        # factor estimate() multiplies the whole count by for other providers' models.
        self.factor = OTHER_PROVIDER_FACTOR if encoding_for(model) is None else 1.0
        self._known = encodings.short_counts(encoding)

    def text(self, value: str) -> int:
        # A short string counted before (a role, a name, a one-line prompt): its kept count, read
        # without a call into ``encodings`` (cleared when full, never replaced: the same dict).
        n = self._known.get(value)
        if n is not None:
            return n
        return encodings.count_text(value, self.encoding) if value else 0

    def json(self, value: Any) -> int:
        """Tokens of a value's compact JSON text (what is not a string)."""
        if isinstance(value, str):
            return self.text(value)
        try:
            return self.text(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())
        except TypeError:
            return self.text(str(value))

    # -- chat ---------------------------------------------------------------------------------

    def chat(self, request: Mapping[str, Any]) -> int:
        messages = request.get("messages")
        total = REPLY_PRIMING
        for msg in messages if isinstance(messages, list) else ():
            total += self.message(msg) if isinstance(msg, dict) else 0
        tools = request.get("tools")
        if isinstance(tools, list) and tools:
            total += self.tools(tools)
        fmt = request.get("response_format")
        if fmt is not None:  # most requests have none: no call
            total += self.response_format(fmt)
        return total

    def message(self, msg: Mapping[str, Any]) -> int:
        n = TOKENS_PER_MESSAGE
        role = msg.get("role")
        if isinstance(role, str):
            n += self.text(role)
        content = msg.get("content")
        # Text content, the usual kind, counted without the content() call.
        n += self.text(content) if isinstance(content, str) else self.content(content)
        name = msg.get("name")
        if isinstance(name, str):
            n += self.text(name) + TOKENS_PER_NAME
        calls = msg.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                n += self.tool_call(fn)
        legacy = msg.get("function_call")
        if isinstance(legacy, dict):
            n += self.tool_call(legacy)
        return n

    def tool_call(self, fn: Mapping[str, Any]) -> int:
        name, args = fn.get("name"), fn.get("arguments")
        return (
            TOKENS_PER_TOOL_CALL
            + (self.text(name) if isinstance(name, str) else 0)
            + (self.text(args) if isinstance(args, str) else self.json(args) if args is not None else 0)
        )

    def content(self, content: Any) -> int:
        if isinstance(content, str):
            return self.text(content)
        if not isinstance(content, list):
            return 0
        return sum(self.part(p) for p in content if isinstance(p, dict))

    def part(self, part: Mapping[str, Any]) -> int:
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            return self.text(text) if isinstance(text, str) else 0
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict):
                return 0
            url, detail = image.get("url"), image.get("detail")
            size = size_of_url(url) if isinstance(url, str) else None
            if self.vision is not None:
                # Already in Claude's tokens: the estimate carries Anthropic's figure (at most 2 more).
                return self.native(claude_image_tokens(size, self.vision))
            return image_tokens(size, detail if isinstance(detail, str) else "auto", self.model)
        if kind == "refusal":
            text = part.get("refusal")
            return self.text(text) if isinstance(text, str) else 0
        if kind == "document" or kind == "file":
            counted = self.document(part, kind)
            if counted is not None:
                return counted
        # Audio, files by id or URL and anything newer: the JSON of the part (an estimate,
        # documented), inline data cut to its first INLINE_DATA_CHARS characters.
        return self.json(_cut({k: v for k, v in part.items() if k != "type"}))

    def document(self, part: Mapping[str, Any], kind: str) -> int | None:
        """A document's tokens: a text one as its text, a PDF by its pages; None when its content
        is not in the request (a URL, a file id), or not readable."""
        found = documents.read_document(part) if kind == "document" else documents.read_file(part)
        if found is None:
            return None
        texts, pdf = found
        n = sum(self.text(text) for text in texts)
        return n + (self.native(documents.pdf_tokens(pdf)) if pdf is not None else 0)

    def native(self, provider_tokens: int) -> int:
        """``provider_tokens`` (already the provider's count, not o200k's) as this counter's
        share: estimate() multiplies other providers' counts by the factor, so it is divided by it
        here, and the estimate carries the figure (at most 2 more, from the rounding)."""
        return math.ceil(provider_tokens / self.factor) if self.factor != 1.0 else provider_tokens

    # -- tools --------------------------------------------------------------------------------

    def tools(self, tools: list[Any]) -> int:
        total = 0
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            fn = tool.get("function")
            if tool.get("type") == "function" and isinstance(fn, dict):
                total += self.function(fn)
            else:
                total += self.json(tool)
        return total + FUNC_END

    def function(self, fn: Mapping[str, Any]) -> int:
        n = FUNC_INIT.get(self.encoding, FUNC_INIT["o200k_base"])
        name, desc = _str(fn.get("name")), _str(fn.get("description"))
        n += self.text(f"{name}:{_strip_dot(desc)}")
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if isinstance(props, dict) and props:
            n += PROP_INIT
            for key, schema in props.items():
                n += PROP_KEY + self.prop(str(key), schema if isinstance(schema, dict) else {})
        return n

    def prop(self, key: str, schema: Mapping[str, Any]) -> int:
        n = 0
        kind = schema.get("type")
        kind_text = kind if isinstance(kind, str) else "" if kind is None else _compact(kind)
        desc = _str(schema.get("description"))
        enum = schema.get("enum")
        if isinstance(enum, list):
            n += ENUM_INIT
            for item in enum:
                n += ENUM_ITEM + (self.text(item) if isinstance(item, str) else self.json(item))
        n += self.text(f"{key}:{kind_text}:{_strip_dot(desc)}")
        # Nested schemas (items, properties, ...) are outside the published rules: their JSON.
        rest = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
        return n + (self.json(rest) if rest else 0)

    def response_format(self, fmt: Any) -> int:
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return self.json(fmt.get("json_schema"))
        return 0

    # -- embeddings and completions -----------------------------------------------------------

    def inputs(self, value: Any) -> int:
        """Tokens of an embeddings ``input`` or completions ``prompt``: text, texts or token ids."""
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, list):
            return 0
        if all(isinstance(x, int) for x in value):
            return len(value)
        return sum(self.inputs(x) for x in value)


# How much of a long string inside an "other" content part (base64 audio or file data) counts.
INLINE_DATA_CHARS = 1024


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value[:INLINE_DATA_CHARS]
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    return value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strip_dot(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def _compact(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


_COUNTERS: dict[tuple[str, str], Counter] = {}
_COUNTERS_MAX = 1024


def _counter(encoding: str, model: str) -> Counter:
    """A counter of (``encoding``, ``model``), kept: a counter holds nothing else, so one per
    pair serves every request (``count`` reads the kept one without a call)."""
    if len(_COUNTERS) >= _COUNTERS_MAX:
        _COUNTERS.clear()
    counter = _COUNTERS[(encoding, model)] = Counter(encoding, model)
    return counter


def count(request: Mapping[str, Any], operation: str, encoding: str, model: str = "") -> int:
    """Exact input tokens of ``request`` under ``encoding`` (OpenAI models)."""
    counter = _COUNTERS.get((encoding, model))
    if counter is None:
        counter = _counter(encoding, model)
    if operation in ("chat", "count_tokens"):
        return counter.chat(request)
    if operation == "embeddings":
        return counter.inputs(request.get("input"))
    if operation == "completions":
        return counter.inputs(request.get("prompt"))
    return 0


def estimate(
    request: Mapping[str, Any], operation: str, model_info: ModelInfoLike | None = None,
    *, model: str | None = None,
) -> int:
    """Prompt tokens of ``request`` before the call, for limits and reservations.

    The model is the catalog record's (``model_info.model``), else ``model`` (the upstream id),
    else the request's. OpenAI models: the exact count with their encoding. Any other model: the
    o200k_base count times :data:`OTHER_PROVIDER_FACTOR`, rounded up.
    """
    name = model_info.model if model_info is not None else model
    if name is None:
        requested = request.get("model")
        name = requested if isinstance(requested, str) else ""
    encoding = encoding_for(name)
    if encoding is not None:
        return count(request, operation, encoding, name)
    return math.ceil(count(request, operation, "o200k_base", name) * OTHER_PROVIDER_FACTOR)


def largest_input(request: Mapping[str, Any], *, model: str | None = None) -> int:
    """Tokens of an embeddings request's largest input, by :func:`estimate`'s rules: a model's
    context window bounds each input it embeds, not the list."""
    value = request.get("input")
    items: list[Any] = [value]
    if isinstance(value, list) and value and not all(isinstance(x, int) for x in value):
        items = value
    return max(estimate({"input": item}, "embeddings", model=model) for item in items)


def max_completion_tokens(
    request: Mapping[str, Any], operation: str = "chat", model_info: ModelInfoLike | None = None
) -> int | None:
    """The most output tokens the call can produce: the request's ``max_completion_tokens`` or
    ``max_tokens``, else the model's output limit from the catalog, times ``n`` choices; 0 for
    embeddings; None when neither the request nor the catalog bounds it."""
    if operation == "embeddings":
        return 0
    limit: int | None = None
    if "max_completion_tokens" in request or "max_tokens" in request:  # most requests set neither
        for key in ("max_completion_tokens", "max_tokens"):
            value = request.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                limit = value
                break
    if limit is None and model_info is not None:
        limit = model_info.max_output_tokens
    if limit is None:
        return None
    n = request.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return limit * choices
