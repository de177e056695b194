"""Validate an Anthropic Messages request and translate it to the canonical (OpenAI) request.

Reference: https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/api/messages-count-tokens (parameters and their ranges).

    model                          -> model
    max_tokens (required)          -> max_tokens
    system (string)                -> first message, role system
    system (text blocks)           -> first message, role system, content a list of text parts
                                      (kept apart, each with its cache_control)
    messages                       -> messages (see content.py)
    stop_sequences                 -> stop
    temperature (0-1), top_p       -> temperature, top_p
    top_k                          -> top_k (passed on; adapters that know it use it)
    metadata.user_id               -> user
    tools [{name, description, input_schema, strict, cache_control}]
                                   -> tools [{type: function, function: {..., strict}, cache_control}]
    tool_choice auto|any|tool|none -> "auto" | "required" | {type: function, ...} | "none"
    tool_choice.disable_parallel_tool_use -> parallel_tool_calls: false
    output_config.format (json_schema)    -> response_format json_schema
    stream                         -> stream, with stream_options.include_usage
    thinking                       -> thinking (validated; the canonical form is Anthropic's)
    output_config.effort           -> reasoning_effort ("high", the default: not sent)
    service_tier, top-level cache_control -> checked and dropped: cost hints (priority capacity,
                                      automatic caching) other providers have no use for
    context_management             -> checked, dropped: only the edit keeping every thinking block
                                      (Claude Code's), which asks other providers for nothing
    prompt                         -> a registry prompt (docs/prompts.md): model, messages and
                                      max_tokens become optional (http/anthropic/prompt.py)
Any other top-level field is rejected, as the Anthropic API does. To an ``anthropic``
deployment the body goes as sent (pipeline/native.py), so everything accepted here reaches it.
Fields of the Anthropic API refused here although that pass-through could carry them:
``container`` (with the server tools refused in ``_tool``: objects of the shared account),
``inference_geo`` and ``speed`` (priced apart from the model's rates, which the gateway's cost
and budget accounting would not see), ``diagnostics`` (compares with an earlier message of the
shared account), the beta ``mcp_servers`` and ``context_management`` edits that clear context. The SDK's
``workspace_id`` and ``user_profile_id`` are headers, not body fields: ``anthropic-workspace-id``
and ``anthropic-user-profile-id`` are refused on every deployment (``check_headers``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

from switchboard.context import RequestContext
from switchboard.http.anthropic.content import (
    JSON,
    Noted,
    cached,
    check_cache_control,
    check_keys,
    fail,
    messages,
    text_part,
)
from switchboard.http.openai_api import parse_object
from switchboard.http.sources import Source
from switchboard.prompts.reference import parse_reference

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MIN_THINKING_BUDGET = 1024


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any, name: str, low: float, high: float) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise fail(name, "Input should be a valid number")
    if not low <= v <= high:
        raise fail(name, f"Input should be between {low:g} and {high:g}")
    return v


def _system(value: Any) -> str | list[JSON]:
    """The system message content: the string, or one text part per block (kept apart, with
    their cache_control)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise fail("system", "Input should be a string or a list of text blocks")
    parts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise fail(f"system.{i}.type", "Input should be 'text'")
        check_keys(block, "text", f"system.{i}")
        parts.append(text_part(block, f"system.{i}"))
    return parts


def _tool(tool: Any, path: str) -> JSON:
    if not isinstance(tool, dict):
        raise fail(path, "Input should be an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise fail(f"{path}.type", f"server tool '{str(kind)[:60]}' is not supported by this gateway; only "
                   "custom tools (name, description, input_schema) are")
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise fail(f"{path}.name", "Field required: 1-128 letters, digits, '_' or '-'")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise fail(f"{path}.input_schema", "Field required")
    if schema.get("type") != "object":
        raise fail(f"{path}.input_schema.type", "Input should be 'object'")
    function: JSON = {"name": name, "parameters": schema}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise fail(f"{path}.description", "Input should be a valid string")
        function["description"] = description
    # strict asks for calls constrained to the schema: carried as OpenAI's function.strict, which
    # every adapter honours or refuses, never dropped (the call would then be unchecked).
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise fail(f"{path}.strict", "Input should be a valid boolean")
        function["strict"] = strict
    return cached({"type": "function", "function": function}, tool, path)


def _tools(value: Any) -> list[JSON]:
    if not isinstance(value, list):
        raise fail("tools", "Input should be a valid list")
    tools = [_tool(t, f"tools.{i}") for i, t in enumerate(value)]
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise fail("tools", "Tool names must be unique.")
    return tools


def _tool_choice(value: Any, tools: list[JSON] | None, out: JSON) -> None:
    if not isinstance(value, dict):
        raise fail("tool_choice", "Input should be an object")
    kind = value.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise fail("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    names = {t["function"]["name"] for t in tools or ()}
    if kind in ("any", "tool") and not names:
        raise fail("tool_choice", f"tool_choice '{kind}' requires 'tools'")
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str):
            raise fail("tool_choice.name", "Field required")
        if name not in names:
            raise fail("tool_choice.name", f"no tool named '{name[:100]}' in 'tools'")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif tools:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise fail("tool_choice.disable_parallel_tool_use", "Input should be a valid boolean")
    if disable and tools and kind != "none":
        out["parallel_tool_calls"] = False


def _stop_sequences(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise fail("stop_sequences", "Input should be a list of non-empty strings")
    return value


def _only_key(value: Any, name: str, key: str) -> Any:
    """The ``key`` of the object ``value`` (field ``name``), which may hold no other key."""
    if not isinstance(value, dict):
        raise fail(name, "Input should be an object")
    for other in value:
        if other != key:
            raise fail(f"{name}.{str(other)[:60]}", "Extra inputs are not permitted")
    return value.get(key)


def _metadata(value: Any, out: JSON) -> None:
    user = _only_key(value, "metadata", "user_id")
    if user is not None:
        if not isinstance(user, str):
            raise fail("metadata.user_id", "Input should be a valid string")
        out["user"] = user


def _thinking(value: Any, max_tokens: int | None) -> None:
    """Checked as Anthropic does; the canonical ``thinking`` is Anthropic's own shape."""
    if not isinstance(value, dict):
        raise fail("thinking", "Input should be an object")
    kind = value.get("type")
    if kind not in ("enabled", "disabled", "adaptive"):
        raise fail("thinking.type", "Input should be 'enabled', 'disabled' or 'adaptive'")
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < MIN_THINKING_BUDGET:
            problem = f"Input should be an integer of at least {MIN_THINKING_BUDGET}"
            raise fail("thinking.budget_tokens", problem, "invalid_value")
        if max_tokens is not None and budget >= max_tokens:
            raise fail("max_tokens", "must be greater than thinking.budget_tokens", "invalid_value")


# Anthropic's effort levels (https://platform.claude.com/docs/en/build-with-claude/effort).
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
# "high" is Anthropic's default: the same as sending no effort, so nothing to carry over.
_DEFAULT_EFFORT = "high"
# The reasoning_effort each output_config.effort asks for (high, the default, asks for none): how
# a level an adapter refuses is told to this API's callers (providers/effort.py).
EFFORT_LEVELS = {level: level for level in _EFFORTS if level != _DEFAULT_EFFORT}


def _output_config(value: Any, out: JSON) -> None:
    if not isinstance(value, dict):
        raise fail("output_config", "Input should be an object")
    for key in value:
        if key not in ("format", "effort"):
            raise fail(f"output_config.{str(key)[:60]}", "Extra inputs are not permitted")
    effort = value.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise fail("output_config.effort", "Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    fmt = value.get("format")
    if fmt is None:
        return
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(schema, dict):
        raise fail("output_config.format", "Input should be {'type': 'json_schema', 'schema': {...}}")
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def _service_tier(value: Any) -> None:
    if value not in ("auto", "standard_only"):
        raise fail("service_tier", "Input should be 'auto' or 'standard_only'")


def _max_tokens(body: JSON) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise fail("max_tokens", "Field required")
    if not _is_int(value) or value < 1:
        raise fail("max_tokens", "Input should be an integer of at least 1")
    return int(value)


def _model(body: JSON) -> str:
    model = body.get("model")
    if model is None:
        raise fail("model", "Field required")
    if not isinstance(model, str) or not model:
        raise fail("model", "Input should be a non-empty string")
    return model


# Optional fields: each checks its value and writes the canonical form into ``out``.
Apply = Callable[[Any, JSON, JSON], None]


def _sampling(name: str, low: float, high: float) -> Apply:
    def apply(value: Any, body: JSON, out: JSON) -> None:
        out[name] = _number(value, name, low, high)

    return apply


def _apply_top_k(value: Any, body: JSON, out: JSON) -> None:
    if not _is_int(value) or value < 0:
        raise fail("top_k", "Input should be an integer of at least 0")
    out["top_k"] = value


def _apply_stop(value: Any, body: JSON, out: JSON) -> None:
    out["stop"] = _stop_sequences(value)


def _apply_stream(value: Any, body: JSON, out: JSON) -> None:
    if not isinstance(value, bool):
        raise fail("stream", "Input should be a valid boolean")
    if value:
        # Usage is always requested: Anthropic streams carry it in message_start/message_delta.
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}


def _apply_thinking(value: Any, body: JSON, out: JSON) -> None:
    max_tokens = body.get("max_tokens")
    _thinking(value, max_tokens if _is_int(max_tokens) else None)
    out["thinking"] = value


def _apply_output_config(value: Any, body: JSON, out: JSON) -> None:
    _output_config(value, out)


def _apply_output_config_effort(value: Any, body: JSON, out: JSON) -> None:
    """``output_config`` of a Messages request: also ``effort`` -> ``reasoning_effort``. Both ask
    the model how much work to put into the answer (Anthropic's covers the text and tool calls as
    well as the thinking), with the same level names; "high", Anthropic's default, asks for
    nothing. Adapters without the control, or a level, refuse it naming ``output_config.effort``
    (messages.py); an ``anthropic`` deployment gets the body as sent (pipeline/native.py)."""
    _output_config(value, out)
    effort = value.get("effort")
    if effort is not None and effort != _DEFAULT_EFFORT:
        out["reasoning_effort"] = effort


def _apply_metadata(value: Any, body: JSON, out: JSON) -> None:
    _metadata(value, out)


def _apply_service_tier(value: Any, body: JSON, out: JSON) -> None:
    _service_tier(value)


# The one context edit taken: Claude Code sends it on every request with thinking on (with the
# beta header context-management-2025-06-27). Keeping every earlier thinking block asks Anthropic
# to strip none of them, so it changes nothing a translated request would send (other providers
# get the history's thinking as the gateway carries it either way); an ``anthropic`` deployment
# gets the body as sent. Edits that drop context (tool results, older thinking) change what the
# model sees, which the gateway cannot do for other providers: refused.
_CLEAR_THINKING = "clear_thinking_20251015"
_KEEP_ALL = {"type": _CLEAR_THINKING, "keep": "all"}


def _apply_context_management(value: Any, body: JSON, out: JSON) -> None:
    edits = _only_key(value, "context_management", "edits")
    if edits is None:
        return
    if not isinstance(edits, list):
        raise fail("context_management.edits", "Input should be a valid list")
    thinking = body.get("thinking")
    thinking_on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    for i, edit in enumerate(edits):
        path = f"context_management.edits.{i}"
        if edit != _KEEP_ALL:
            problem = f"only {json.dumps(_KEEP_ALL)} is supported (edits that clear context are not)"
            raise fail(path, problem, "unsupported_parameter")
        if not thinking_on:  # as Anthropic answers it
            raise fail(path, f"`{_CLEAR_THINKING}` strategy requires `thinking` to be enabled or adaptive")


def _handled_elsewhere(value: Any, body: JSON, out: JSON) -> None:
    """system, tools and tool_choice are translated together by _translate."""


def _apply_cache_control(value: Any, body: JSON, out: JSON) -> None:
    """Automatic caching: checked as a block's breakpoint is, on every deployment (a bad one would
    otherwise pass unnoticed where it is not sent), then left to the pass-through to an
    ``anthropic`` deployment; other providers have no counterpart."""
    check_cache_control(value, "cache_control")


_REQUIRED = ("model", "messages")
_COMMON: dict[str, Apply] = {
    "system": _handled_elsewhere,
    "tools": _handled_elsewhere,
    "tool_choice": _handled_elsewhere,
    "thinking": _apply_thinking,
    "output_config": _apply_output_config,
    "cache_control": _apply_cache_control,
    "context_management": _apply_context_management,
}
_MESSAGES: dict[str, Apply] = {
    **_COMMON,
    "max_tokens": _handled_elsewhere,
    "stop_sequences": _apply_stop,
    "temperature": _sampling("temperature", 0, 1),
    "top_p": _sampling("top_p", 0, 1),
    "top_k": _apply_top_k,
    "metadata": _apply_metadata,
    "stream": _apply_stream,
    "service_tier": _apply_service_tier,
    # Counting tokens needs no effort: only a Messages request carries it on.
    "output_config": _apply_output_config_effort,
}
# Every top-level field a Messages request may carry (tests/unit/test_sdk_params.py holds the
# installed SDK's fields against it and REFUSED).
ACCEPTED = frozenset(_MESSAGES).union(_REQUIRED)


# Fields of the Anthropic API the gateway refuses on every deployment, although the pass-through
# to an ``anthropic`` one could carry them: each acts in the Anthropic account the gateway's key
# opens, which every caller shares, or is billed in a way the cost accounting does not see.
REFUSED: dict[str, str] = {
    "container": "containers (code execution) are objects of the Anthropic account the gateway's key "
                 "opens, which every caller shares",
    "mcp_servers": "MCP servers are not supported by this gateway's Anthropic Messages API: it runs MCP "
                   "tools itself (docs/mcp.md)",
    "diagnostics": "diagnostics compare with an earlier message of the Anthropic account the gateway's "
                   "key opens, which every caller shares",
    "inference_geo": "inference_geo is billed apart from the model's rates, which the gateway's cost "
                     "accounting would not see",
    "speed": "fast mode is billed apart from the model's rates, which the gateway's cost accounting "
             "would not see",
}


# Request headers of the Anthropic API the gateway refuses, for the reason REFUSED gives its
# fields: each picks something of the Anthropic account the gateway's key opens (a workspace, a
# user profile that requests are attributed and billed to), which every caller shares. Sent
# upstream they would let one caller act in the name of another; dropped, the caller's request
# would silently land elsewhere than it asked.
REFUSED_HEADERS: dict[str, str] = {
    "anthropic-workspace-id": "the workspace is the one of the Anthropic account the gateway's key "
                              "opens, which every caller shares",
    "anthropic-user-profile-id": "user profiles are those of the Anthropic account the gateway's key "
                                 "opens, which every caller shares",
}


def check_headers(headers: dict[str, str]) -> None:
    """Refuse the headers of REFUSED_HEADERS (two lookups in the request's header dict)."""
    for name, reason in REFUSED_HEADERS.items():
        if name in headers:
            raise fail(name, f"header not supported by this gateway ({reason})", "unsupported_parameter")


def _translate(body: JSON, fields: dict[str, Apply], found: Noted,
               sources: list[Source] | None = None) -> JSON:
    model = _model(body)
    for key in body:
        if key not in fields and key not in _REQUIRED:
            reason = REFUSED.get(key, "not supported by this gateway's Anthropic Messages API")
            raise fail(str(key)[:60], f"Extra inputs are not permitted ({reason})")
    msgs = messages(body.get("messages"), found, sources)
    system = _system(body["system"]) if body.get("system") is not None else ""
    if system:  # an empty system prompt is no prompt; some upstreams reject empty ones
        msgs.insert(0, {"role": "system", "content": system})
        if sources is not None:
            sources.append((msgs[0], "system", body["system"], None))
    out: JSON = {"model": model, "messages": msgs}
    for key, apply in fields.items():
        if body.get(key) is not None:
            apply(body[key], body, out)
    tools = _tools(body["tools"]) if body.get("tools") is not None else None
    if tools:
        out["tools"] = tools
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], tools, out)
    return out


def decode_into(ctx: RequestContext) -> None:
    """``ctx.request`` from ``ctx.body`` (a Messages body), with what decoding notes: the Files
    API source an attempt judges, where each message came from; ``ctx.body`` rewritten when
    decoding put a URL's scheme in lower case, so that a pass-through sends what a translated
    attempt does (pipeline/native.py)."""
    found = Noted()
    ctx.message_sources = []  # where each message came from, for a refusal (sources.py)
    ctx.request = messages_request(ctx.body, found, ctx.message_sources)
    ctx.account_object = found.files[0] if found.files else None
    if found.body is not None:
        ctx.body = found.body


def messages_request(raw: bytes, found: Noted | None = None,
                     sources: list[Source] | None = None) -> JSON:
    """The canonical chat request for a ``POST /v1/messages`` body; what decoding notes (the
    paths of its Files API sources, a URL rewritten) is added to ``found`` (content.py), where
    each message came from to ``sources`` (sources.py)."""
    body = parse_object(raw)
    if body.get("prompt") is not None:
        return _prompted(body)
    _model(body)
    max_tokens = _max_tokens(body)
    noted = Noted() if found is None else found
    out = _translate(body, _MESSAGES, noted, sources)
    if noted.rewritten:  # a URL's scheme put in lower case: a pass-through sends it so too
        noted.body = orjson.dumps(body)
    # OpenAI's current name for the output limit: its reasoning models refuse ``max_tokens``; the
    # adapters of servers that only know ``max_tokens`` rename it (openai-compatible presets, Azure
    # before 2024-09-01, Mistral), the translating ones read either.
    out["max_completion_tokens"] = max_tokens
    return out


def _prompted(body: JSON) -> JSON:
    """A request naming a registry prompt (docs/prompts.md): only the reference and the stream
    flag for now; the prompt stage merges the prompt into the body and decodes it again
    (http/anthropic/prompt.py), which checks everything else."""
    out: JSON = {"prompt": parse_reference(body["prompt"])}
    if body.get("model"):
        out["model"] = _model(body)
    if body.get("stream") is not None:
        _apply_stream(body["stream"], body, out)
    return out


def count_tokens_request(raw: bytes) -> JSON:
    """The canonical chat request for a ``POST /v1/messages/count_tokens`` body (no max_tokens)."""
    return _translate(parse_object(raw), _COMMON, Noted())  # counted here: never sent on
