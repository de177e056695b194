"""Validate an OpenAI Responses request and translate it to the canonical (chat) request.

Reference: https://platform.openai.com/docs/api-reference/responses/create. The mapping:

    model                               -> model
    instructions                        -> a first message, role system (not carried over by
                                           previous_response_id, as OpenAI does)
    input (string)                      -> one user message
    input items:
      message {role, content}           -> a message; roles user, assistant, system, developer;
                                           input_text/output_text -> text parts, input_image ->
                                           image_url parts, refusal -> assistant text; a
                                           part's prompt_cache_breakpoint -> the chat part's
      function_call {call_id, name, arguments} -> an assistant message's tool_calls (one
                                           with status incomplete, cut before its arguments
                                           were whole, is left out, and its output too)
      function_call_output {call_id, output}   -> a tool message
      reasoning                         -> dropped (never sent upstream)
      mcp_call {id, server_label, name, arguments, output, error} (the tool loop's output, replayed)
                                        -> an assistant message's tool_calls (function
                                           <server_label>__<name>, id the item's) and a tool
                                           message with what the loop fed back (mcp/offer.py)
      mcp_list_tools                    -> accepted, not sent (a listing tells the model nothing)
      other item types                  -> refused by type (input[i].type)
    Inside the items and function tools, keys with no chat equivalent (a function's namespace,
    programmatic callers, async calls, deferred tools, output schemas) are refused by path unless
    at their default; id, status, phase and annotations describe earlier output and are not sent
    (tests/unit/test_sdk_params.py RESPONSES_NESTED decides every key of the installed SDK).
    tools [{type: function, name, description, parameters, strict}] -> chat tools
    tools [{type: mcp, server_label, ...}] -> kept as they are: the gateway's tool loop
                                           (mcp/loop.py, docs/mcp.md) runs them
    tool_choice auto|none|required|{type: function, name} -> tool_choice
    tool_choice {type: allowed_tools, mode, tools: [{type: function, name}]}
                                        -> tool_choice {type: allowed_tools, allowed_tools: {mode,
                                           tools: [{type: function, function: {name}}]}}
    max_output_tokens                   -> max_completion_tokens
    temperature, top_p                  -> temperature, top_p
    text.format json_schema|json_object -> response_format
    reasoning.effort                    -> reasoning_effort
    parallel_tool_calls                 -> parallel_tool_calls (with tools only)
    user, safety_identifier             -> user
    text.verbosity, service_tier, prompt_cache_key -> verbosity, service_tier, prompt_cache_key
                                           as hints (named in the request's ``switchboard_hints``): sent
                                           where the provider's capability table passes them,
                                           left out where it refuses them (capabilities.check)
    stream                              -> stream, with stream_options.include_usage
    metadata, store, previous_response_id, include, reasoning.summary, client_metadata,
    truncation "disabled"               -> kept by the gateway (echoed, stored) and not sent upstream

Built-in tools (web_search, file_search, computer_use, code_interpreter, image_generation,
local_shell, custom, namespace, tool_search tools) and fields with no chat equivalent (background,
conversation, prompt, top_logprobs, max_tool_calls, truncation "auto", file inputs, moderation,
prompt_cache_options, prompt_cache_retention, context_management, image, reasoning.context,
reasoning.mode) answer 400 naming the feature (a ``responses:
native`` deployment gets them as sent, but background); an unknown top-level field answers 400
as OpenAI does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.http.openai_api import parse_object
from switchboard.http.responses.response import append_call
from switchboard.http.responses.sources import Source
from switchboard.mcp.offer import new_id, replayed
from switchboard.providers.account import tool_object
from switchboard.providers.params import HINTS

JSON = dict[str, Any]

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_ROLES = frozenset({"user", "assistant", "system", "developer"})
BUILTIN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "web_search_2025_08_26",
        "file_search",
        "computer_use_preview",
        "computer_use",
        "computer",
        "code_interpreter",
        "mcp",
        "image_generation",
        "local_shell",
        "shell",
        "custom",
        "apply_patch",
        "programmatic_tool_calling",
        "namespace",  # functions grouped under a name, called as namespace + name
        "tool_search",
    }
)
# Accepted include values: nothing the gateway returns depends on them.
_INCLUDE = frozenset({"reasoning.encrypted_content"})
# Fields the gateway keeps (echoes or stores) without an upstream equivalent.
_KEPT = (
    "metadata",
    "store",
    "previous_response_id",
    "include",
    "prompt_cache_key",
    "service_tier",
    "truncation",
    "stream_options",
    "background",
    "client_metadata",  # Codex CLI sends it: its own labels
)
# Fields with no chat equivalent: refused by name (a native deployment would receive them as is).
_REFUSED = {
    "conversation": "conversations",
    "prompt": "prompt templates",
    "top_logprobs": "top_logprobs",
    "max_tool_calls": "max_tool_calls",
    "prompt_cache_retention": "prompt_cache_retention",
    "prompt_cache_options": "prompt_cache_options",
    "context_management": "context_management",
    # Moderation by an OpenAI model: its verdicts come in Responses fields the chat form has no
    # room for, and "block" changes the answer.
    "moderation": "moderation",
    "image": "request-level image options",
}
_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "stream",
        *_KEPT,
        *_REFUSED,
    }
)
# Every top-level field a Responses request may carry (tests/unit/test_sdk_params.py holds the
# installed SDK's fields against it).
KNOWN_FIELDS = _FIELDS
MAX_METADATA_KEYS = 16
# OpenAI's limit (the openai SDK's create docs); ``user`` has none documented on Responses.
MAX_SAFETY_IDENTIFIER = 128


def fail(param: str, message: str, code: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def unsupported(param: str, feature: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"{feature} is not supported by this deployment: the gateway translates the Responses API to "
        f"the chat form, which has no equivalent",
        param=param,
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: JSON, name: str, low: float, high: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise fail(name, f"Invalid type for '{name}': expected a number.", "invalid_type")
    if not low <= v <= high:
        raise fail(name, f"Invalid '{name}': must be between {low:g} and {high:g}.", "invalid_value")
    return float(v)


def _at_most(value: str | None, param: str, limit: int) -> None:
    """A string longer than ``limit`` characters refused as OpenAI refuses it, not sent upstream."""
    if value is not None and len(value) > limit:
        raise fail(param, f"Invalid '{param}': string too long. Expected a string with maximum length "
                   f"{limit}, but got a string with length {len(value)} instead.", "string_above_max_length")


def _missing(param: str) -> InvalidRequest:
    return fail(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")


def _string(value: Any, param: str) -> str:
    if value is None:  # absent (or null): missing, as OpenAI answers, not of the wrong type
        raise _missing(param)
    if not isinstance(value, str):
        raise fail(param, f"Invalid type for '{param}': expected a string.", "invalid_type")
    return value


@dataclass(slots=True)
class Translated:
    """A validated Responses request: the canonical chat request, what of it is this turn's
    conversation, and the parameters the Response object echoes."""

    request: JSON  # the canonical chat request (instructions first, then this turn's input)
    turn: list[JSON]  # this turn's input as canonical messages (no instructions)
    items: list[JSON]  # this turn's input as Responses items (GET .../input_items)
    echo: JSON = field(default_factory=dict)
    store: bool = True
    previous_response_id: str | None = None
    body: JSON = field(default_factory=dict)  # the request as the client sent it (native deployments)
    # Where each message came from: a refusal of one is named by the input item (sources.py).
    sources: list[Source] = field(default_factory=list)


# -- input ---------------------------------------------------------------------------------------


def _image(part: JSON, path: str) -> JSON:
    url = part.get("image_url")
    if part.get("file_id") is not None:
        raise unsupported(f"{path}.file_id", "input_image with file_id")
    if not isinstance(url, str) or not url:
        raise fail(
            f"{path}.image_url", "Missing required parameter: 'image_url'.", "missing_required_parameter"
        )
    detail = part.get("detail", "auto")
    if detail not in ("auto", "low", "high", "original"):
        raise fail(f"{path}.detail", "Invalid value: expected one of 'auto', 'low', 'high', 'original'.",
                   "invalid_value")
    image: JSON = {"url": url}
    if detail != "auto":
        image["detail"] = detail  # the chat form has the same four values
    return _breakpoint(part, {"type": "image_url", "image_url": image}, path)


def _breakpoint(part: JSON, out: JSON, path: str) -> JSON:
    """``out`` (a chat part) with the Responses part's ``prompt_cache_breakpoint``: the chat part's
    field of the same name and shape (the capability row ``prompt_cache_breakpoint`` decides it
    per provider)."""
    mark = part.get("prompt_cache_breakpoint")
    if mark is not None:
        if not isinstance(mark, dict):  # refused here: the upstream would answer it as its own error
            where = f"{path}.prompt_cache_breakpoint"
            raise fail(where, f"Invalid type for '{where}': expected an object.", "invalid_type")
        out["prompt_cache_breakpoint"] = mark
    return out


def _content(content: Any, role: str, path: str) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise fail(
            path,
            f"Invalid type for '{path}': expected a string or an array of content parts.",
            "invalid_type",
        )
    parts: list[JSON] = []
    for i, part in enumerate(content):
        where = f"{path}[{i}]"
        if not isinstance(part, dict):
            raise fail(where, f"Invalid type for '{where}': expected an object.", "invalid_type")
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            # An output_text's annotations and logprobs describe an earlier answer: not sent.
            text = _string(part.get("text"), f"{where}.text")
            parts.append(_breakpoint(part, {"type": "text", "text": text}, where))
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part.get("refusal"), f"{where}.refusal")})
        elif kind == "input_image":
            if role == "assistant":
                raise fail(
                    f"{where}.type", "input_image is not allowed in an assistant message.", "invalid_value"
                )
            parts.append(_image(part, where))
        elif kind in ("input_file", "input_audio"):
            raise unsupported(f"{where}.type", f"the content part '{kind}'")
        else:
            raise fail(
                f"{where}.type",
                f"Invalid value: '{str(kind)[:60]}'. Supported values are: "
                "'input_text', 'input_image', 'output_text' and 'refusal'.",
                "invalid_value",
            )
    if role in ("assistant", "system", "developer") and all(p.keys() == {"type", "text"} for p in parts):
        return "".join(p["text"] for p in parts)  # plain text: every upstream takes it
    return parts


def _arguments(value: Any, path: str) -> str:
    return _string(value, path)


def _output(value: Any, path: str, images: list[tuple[JSON, str]]) -> str | list[JSON]:
    """The tool message content of a function_call_output's ``output``; its images (Codex's
    view_image answers with one) are added to ``images``: a tool message carries text only, so
    they go to the user message that follows, as the Anthropic API's tool_result images do."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # output as content parts: their text
        parts = []
        for i, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "input_image":
                images.append((_image(part, f"{path}[{i}]"), f"{path}[{i}]"))
                continue
            if kind not in ("input_text", "output_text"):
                raise unsupported(f"{path}[{i}]", "a function_call_output part other than text or an image")
            text = _string(part.get("text"), f"{path}[{i}].text")
            parts.append(_breakpoint(part, {"type": "text", "text": text}, f"{path}[{i}]"))
        if any("prompt_cache_breakpoint" in p for p in parts):
            return parts  # text parts, so that the breakpoint stays where it was put
        return "".join(p["text"] for p in parts)
    if value is None:
        raise _missing(path)
    raise fail(path, f"Invalid type for '{path}': expected a string.", "invalid_type")


def _with_images(messages: list[JSON], images: list[tuple[JSON, str]], sources: list[Source]) -> None:
    """The images of the tool outputs just read, as a user message after those tool messages
    (the tool messages answering one turn's calls stay together, as every upstream needs)."""
    if images:
        message = {"role": "user", "content": [image for image, _ in images]}
        messages.append(message)
        paths = tuple(path for _, path in images)
        sources.append((message, paths[0].rsplit(".", 1)[0], None, paths))
        images.clear()


# Keys of the translated input items (and function tools) with no chat equivalent that change what
# the model is told: refused on translated deployments (400 naming the path) unless at the value
# that asks for nothing (None, False, a direct caller); a native deployment gets them as sent.
# Their ``id`` and ``status`` (set when an item comes back from the API), a message's ``phase`` (a
# label OpenAI's own models read on their earlier turns; the text is sent) and an output's
# ``name`` (the call it answers names the function) are accepted and not sent.
_ITEM_REFUSED: dict[str, dict[str, str]] = {
    "function_call": {
        "namespace": "function namespaces",
        "caller": "programmatic tool calls",
        "async": "asynchronous function calls",
    },
    "function_call_output": {"namespace": "function namespaces", "caller": "programmatic tool calls"},
}
_TOOL_REFUSED = {
    "allowed_callers": "programmatic tool calls",
    "async": "asynchronous function calls",
    "defer_loading": "tools loaded by a tool search",
    "output_schema": "a function's output schema",
}


def _asks_for_nothing(key: str, value: Any) -> bool:
    """Whether a refused key's value is its default, which the chat form already means."""
    if key == "caller":
        return value is None or value == {"type": "direct"}
    if key == "allowed_callers":
        return value is None or value == ["direct"]
    return value is None or value is False


def _refuse_keys(value: JSON, refused: dict[str, str], path: str) -> None:
    for key, feature in refused.items():
        if not _asks_for_nothing(key, value.get(key)):
            raise unsupported(f"{path}.{key}", feature)


def _without_keys(value: JSON, refused: dict[str, str]) -> JSON:
    return {k: v for k, v in value.items() if k not in refused}


def input_messages(value: Any, sources: list[Source] | None = None) -> tuple[list[JSON], list[JSON]]:
    """(canonical messages, Responses items) of ``input``; where each message (and tool call) came
    from in ``sources``."""
    sources = [] if sources is None else sources
    if isinstance(value, str):
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}
        message: JSON = {"role": "user", "content": value}
        sources.append((message, "input", None, None))
        return [message], [item]
    if not isinstance(value, list):
        raise fail(
            "input", "Invalid type for 'input': expected a string or an array of input items.", "invalid_type"
        )
    messages: list[JSON] = []
    calls: set[str] = set()
    ids: set[str] = set()
    cut: set[str] = set()  # calls left out (incomplete), whose outputs are left out too
    images: list[tuple[JSON, str]] = []  # of the tool outputs read last (and their paths), for the
    # user message after them
    for i, item in enumerate(value):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise fail(path, f"Invalid type for '{path}': expected an object.", "invalid_type")
        if item.get("type") not in ("function_call_output", "reasoning", "mcp_list_tools"):
            _with_images(messages, images, sources)  # before the next message this item may add
        if isinstance(item_id := item.get("id"), str):
            # As OpenAI refuses it: input_items pages by item id (after=), and a repeated id
            # would send every page after it back to its first occurrence, without end.
            if item_id in ids:
                raise fail(f"{path}.id", f"Duplicate item found with id {item_id[:100]}. Remove duplicate "
                           "items from your input and try again.", "invalid_value")
            ids.add(item_id)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:  # an array or object cannot be looked up
                raise fail(
                    f"{path}.role",
                    f"Invalid value: '{str(role)[:40]}'. Supported values are: 'user', "
                    "'assistant', 'system' and 'developer'.",
                    "invalid_value",
                )
            if "content" not in item:
                raise fail(
                    f"{path}.content", "Missing required parameter: 'content'.", "missing_required_parameter"
                )
            content = _content(item["content"], role, f"{path}.content")
            message = {"role": "system" if role == "developer" else role, "content": content}
            messages.append(message)
            sources.append((message, path, item, None))
        elif kind == "function_call":
            _refuse_keys(item, _ITEM_REFUSED[kind], path)
            call_id = _string(item.get("call_id"), f"{path}.call_id")
            name = _string(item.get("name"), f"{path}.name")
            call = {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": _arguments(item.get("arguments"), f"{path}.arguments"),
                },
            }
            calls.add(call_id)
            if item.get("status") != "incomplete":  # cut (a failure, max_output_tokens): not whole
                append_call(messages, call)
                sources.append((call, path, item, None))
                if messages[-1]["tool_calls"][0] is call:  # a message of its own: named by this item
                    sources.append((messages[-1], path, None, None))
            else:
                cut.add(call_id)
        elif kind == "function_call_output":
            _refuse_keys(item, _ITEM_REFUSED[kind], path)
            call_id = _string(item.get("call_id"), f"{path}.call_id")
            if call_id in cut:  # its call was left out: a tool message needs the call before it
                continue
            message = {
                "role": "tool",
                "tool_call_id": call_id,
                "content": _output(item.get("output"), f"{path}.output", images),
            }
            messages.append(message)
            sources.append((message, path, item, None))
        elif kind == "reasoning":
            continue  # the model's own reasoning: not sent to other models
        elif kind == "mcp_call":
            # A call of the gateway's tool loop: the assistant's call and its result, as the loop
            # gave them to the model.
            given = item.get("id")
            call_id = new_id("mcp_") if given is None else _string(given, f"{path}.id")
            call, text = replayed(_mcp_call(item, path), call_id)
            append_call(messages, call)
            message = {"role": "tool", "tool_call_id": call["id"], "content": text}
            messages.append(message)
            sources.append((call, path, item, None))
            sources.append((message, path, item, None))
            if messages[-2]["tool_calls"][0] is call:
                sources.append((messages[-2], path, None, None))
        elif kind == "mcp_list_tools":
            # The tools a server listed: offered again by this request's own mcp tools, if any;
            # the listing itself tells the model nothing.
            _string(item.get("server_label"), f"{path}.server_label")
        elif kind == "item_reference":
            raise unsupported(f"{path}.type", "the input item 'item_reference'")
        else:
            raise unsupported(f"{path}.type", f"the input item '{str(kind)[:60]}'")
    _with_images(messages, images, sources)
    items = [dict(item) for item in value]
    return messages, items


def _mcp_call(item: JSON, path: str) -> JSON:
    """An ``mcp_call`` input item, checked: the keys its replay reads."""
    for key in ("server_label", "name", "arguments"):
        _string(item.get(key), f"{path}.{key}")
    if item.get("output") is not None:
        _string(item["output"], f"{path}.output")
    if item.get("error") is not None and not isinstance(item["error"], dict):
        raise fail(f"{path}.error", f"Invalid type for '{path}.error': expected an object.", "invalid_type")
    return item


# -- tools ---------------------------------------------------------------------------------------


def _tool(tool: Any, path: str) -> JSON:
    if not isinstance(tool, dict):
        raise fail(path, f"Invalid type for '{path}': expected an object.", "invalid_type")
    kind = tool.get("type")
    if kind == "mcp":  # a registered MCP server: the tool loop's (mcp/loop.py), validated there
        return dict(tool)
    if kind != "function":
        if isinstance(kind, str) and (
            kind in BUILTIN_TOOLS or kind.startswith(("web_search", "computer_use"))
        ):
            raise unsupported(f"{path}.type", f"the built-in tool '{kind}'")
        raise fail(f"{path}.type", f"Invalid value: '{str(kind)[:60]}'.", "invalid_value")
    _refuse_keys(tool, _TOOL_REFUSED, path)
    name = tool.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise fail(
            f"{path}.name",
            f"Invalid '{path}.name': 1-128 letters, digits, '_', '.', ':' or '-'.",
            "invalid_value",
        )
    function: JSON = {"name": name}
    description = tool.get("description")
    if description is not None:
        function["description"] = _string(description, f"{path}.description")
    parameters = tool.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise fail(
                f"{path}.parameters",
                f"Invalid type for '{path}.parameters': expected an object.",
                "invalid_type",
            )
        function["parameters"] = parameters
    # Omitted stays omitted (not strict), unlike OpenAI's Responses default, which normalizes the
    # schema into strict mode when it can: the target is not chosen yet, and strictness is taken
    # only by some models or for all tools at once elsewhere (docs/api-responses.md).
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise fail(
                f"{path}.strict", f"Invalid type for '{path}.strict': expected a boolean.", "invalid_type"
            )
        function["strict"] = strict
    return {"type": "function", "function": function}


def _tools(value: Any) -> list[JSON]:
    if not isinstance(value, list):
        raise fail("tools", "Invalid type for 'tools': expected an array.", "invalid_type")
    return [_tool(t, f"tools[{i}]") for i, t in enumerate(value)]


def _tool_choice(value: Any, names: set[str]) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        name = _string(value.get("name"), "tool_choice.name")
        if name not in names:
            raise fail(
                "tool_choice", f"Tool choice '{name[:100]}' not found in 'tools' parameter.", "invalid_value"
            )
        return {"type": "function", "function": {"name": name}}
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        return _allowed_tools(value, names)
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        raise unsupported("tool_choice.type", f"tool_choice '{value['type'][:60]}'")
    raise fail(
        "tool_choice",
        "Invalid value for 'tool_choice': expected 'auto', 'none', 'required', a function or "
        "allowed_tools.",
        "invalid_value",
    )


def _allowed_tools(value: JSON, names: set[str]) -> JSON:
    """``{type: allowed_tools, mode, tools: [{type: function, name}]}`` -> the chat form
    ``{type: allowed_tools, allowed_tools: {mode, tools: [{type: function, function: {name}}]}}``,
    which each provider then sends, translates or refuses as on chat. Entries of other tool types
    (MCP servers, built-in tools) have no chat equivalent: refused by path."""
    mode = value.get("mode")
    if mode not in ("auto", "required"):
        raise fail("tool_choice.mode", "Invalid value: expected 'auto' or 'required'.", "invalid_value")
    tools = value.get("tools")
    if not isinstance(tools, list) or not tools:
        raise fail("tool_choice.tools", "Invalid 'tool_choice.tools': expected a non-empty array of tools.",
                   "invalid_value")
    allowed: list[JSON] = []
    for i, tool in enumerate(tools):
        path = f"tool_choice.tools[{i}]"
        if not isinstance(tool, dict):
            raise fail(path, f"Invalid type for '{path}': expected an object.", "invalid_type")
        if tool.get("type") != "function":
            raise unsupported(f"{path}.type", f"an allowed tool of type '{str(tool.get('type'))[:60]}'")
        name = _string(tool.get("name"), f"{path}.name")
        if name not in names:
            raise fail(f"{path}.name", f"Tool '{name[:100]}' not found in 'tools' parameter.",
                       "invalid_value")
        allowed.append({"type": "function", "function": {"name": name}})
    return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}}


# -- text and reasoning --------------------------------------------------------------------------


def _text(value: Any, out: JSON) -> JSON:
    if not isinstance(value, dict):
        raise fail("text", "Invalid type for 'text': expected an object.", "invalid_type")
    for key in value:
        if key not in ("format", "verbosity"):
            raise fail(
                f"text.{str(key)[:40]}", f"Unknown parameter: 'text.{str(key)[:40]}'.", "unknown_parameter"
            )
    verbosity = value.get("verbosity")
    if verbosity is not None and verbosity not in ("low", "medium", "high"):
        raise fail("text.verbosity", "Invalid value: expected 'low', 'medium' or 'high'.", "invalid_value")
    fmt = value.get("format")
    if fmt is None:
        return {"format": {"type": "text"}, **({"verbosity": verbosity} if verbosity else {})}
    if not isinstance(fmt, dict):
        raise fail("text.format", "Invalid type for 'text.format': expected an object.", "invalid_type")
    kind = fmt.get("type")
    if kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        name = _string(fmt.get("name"), "text.format.name")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise fail(
                "text.format.schema",
                "Missing required parameter: 'text.format.schema'.",
                "missing_required_parameter",
            )
        spec: JSON = {"name": name, "schema": schema}
        strict, description = fmt.get("strict"), fmt.get("description")
        if strict is not None:
            if not isinstance(strict, bool):
                raise fail("text.format.strict", "Invalid type for 'text.format.strict': expected a boolean.",
                           "invalid_type")
            spec["strict"] = strict
        if description is not None:
            spec["description"] = _string(description, "text.format.description")
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind != "text":
        raise fail(
            "text.format.type",
            f"Invalid value: '{str(kind)[:60]}'. Supported values are: 'text', "
            "'json_object' and 'json_schema'.",
            "invalid_value",
        )
    return dict(value)


# Reasoning options of OpenAI's own models with no chat equivalent: which earlier reasoning items
# the model sees (a translated deployment sends none) and its execution mode ("pro").
_REASONING_REFUSED = {"context": "reasoning.context", "mode": "reasoning.mode"}
# The openai SDK's ReasoningEffort values: carried as reasoning_effort, which each adapter maps
# where its provider has the level and refuses by name where it has none (docs/providers.md).
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def _reasoning(value: Any, out: JSON) -> JSON:
    if not isinstance(value, dict):
        raise fail("reasoning", "Invalid type for 'reasoning': expected an object.", "invalid_type")
    _refuse_keys(value, _REASONING_REFUSED, "reasoning")
    for key in value:
        if key not in ("effort", "summary", "generate_summary", *_REASONING_REFUSED):
            raise fail(
                f"reasoning.{str(key)[:40]}",
                f"Unknown parameter: 'reasoning.{str(key)[:40]}'.",
                "unknown_parameter",
            )
    effort = value.get("effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise fail(
                "reasoning.effort",
                "Invalid value: expected 'none', 'minimal', 'low', 'medium', 'high', 'xhigh' or 'max'.",
                "invalid_value",
            )
        out["reasoning_effort"] = effort
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in ("auto", "concise", "detailed"):
        raise fail(
            "reasoning.summary", "Invalid value: expected 'auto', 'concise' or 'detailed'.", "invalid_value"
        )
    return {"effort": effort, "summary": summary}


def _metadata(value: Any) -> JSON:
    if not isinstance(value, dict):
        raise fail("metadata", "Invalid type for 'metadata': expected an object.", "invalid_type")
    if len(value) > MAX_METADATA_KEYS:
        raise fail("metadata", f"Invalid 'metadata': at most {MAX_METADATA_KEYS} keys.", "invalid_value")
    for key, v in value.items():
        if len(key) > 64 or not isinstance(v, str) or len(v) > 512:
            raise fail(
                f"metadata.{key[:40]}",
                "Invalid 'metadata': keys of at most 64 characters, string values of at most 512.",
                "invalid_value",
            )
    return value


def _kept(body: JSON) -> None:
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list) or not all(isinstance(x, str) for x in include):
            raise fail("include", "Invalid type for 'include': expected an array of strings.", "invalid_type")
        for i, x in enumerate(include):
            if x not in _INCLUDE:
                raise unsupported(f"include[{i}]", f"include '{x[:60]}'")
    for name in ("store", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise fail(name, f"Invalid type for '{name}': expected a boolean.", "invalid_type")
    if body.get("background"):
        # Refused on every deployment, native ones too: the gateway keeps each response's state
        # and answers it within its request (a native upstream gets store: false, which OpenAI's
        # background mode refuses), so there is no queued response to poll or cancel.
        raise fail("background", "background mode is not supported by the gateway: every response is "
                   "answered within its request; send it without 'background'", "unsupported_parameter")
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        if truncation == "auto":
            raise unsupported("truncation", "truncation 'auto'")
        raise fail("truncation", "Invalid value: expected 'auto' or 'disabled'.", "invalid_value")
    for name in ("prompt_cache_key", "service_tier", "previous_response_id"):
        if body.get(name) is not None:
            _string(body[name], name)
    for name in ("stream_options", "client_metadata"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise fail(name, f"Invalid type for '{name}': expected an object.", "invalid_type")
    obfuscation = (body.get("stream_options") or {}).get("include_obfuscation")
    if obfuscation is not None and not isinstance(obfuscation, bool):
        where = "stream_options.include_obfuscation"
        raise fail(where, f"Invalid type for '{where}': expected a boolean.", "invalid_type")


# -- the request ---------------------------------------------------------------------------------


def check_fields(body: JSON) -> None:
    for key in body:
        if key not in _FIELDS:
            raise fail(str(key)[:60], f"Unknown parameter: '{str(key)[:60]}'.", "unknown_parameter")


def parse_body(raw: bytes) -> JSON:
    return parse_object(raw)


def translate(body: JSON) -> Translated:
    """The canonical chat request of a Responses body (parsed JSON), validated."""
    check_fields(body)
    for name, feature in _REFUSED.items():
        if body.get(name) is not None:
            raise unsupported(name, feature)
    model = body.get("model")
    if model is None:
        raise fail("model", "Missing required parameter: 'model'.", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise fail("model", "Invalid type for 'model': expected a non-empty string.", "invalid_type")
    if body.get("input") is None:
        raise fail("input", "Missing required parameter: 'input'.", "missing_required_parameter")
    _kept(body)
    sources: list[Source] = []
    turn, items = input_messages(body["input"], sources)
    out: JSON = {"model": model}
    instructions = body.get("instructions")
    messages = list(turn)
    if instructions is not None:
        _string(instructions, "instructions")
        if instructions:
            messages.insert(0, {"role": "system", "content": instructions})
            sources.append((messages[0], "instructions", None, None))
    out["messages"] = messages
    echo: JSON = {"instructions": instructions}
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = _number(body, name, low, high)
        if value is not None:
            out[name] = value
        echo[name] = value if value is not None else 1.0
    max_output = body.get("max_output_tokens")
    if max_output is not None:
        # A boolean, a string or 16.0 is the wrong type, not too small a number (as OpenAI says).
        if not _is_int(max_output):
            raise fail("max_output_tokens", "Invalid type for 'max_output_tokens': expected an integer.",
                       "invalid_type")
        if max_output < 16:
            raise fail(
                "max_output_tokens",
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
                "integer_below_min_value",
            )
        out["max_completion_tokens"] = max_output  # the name every OpenAI model takes
    echo["max_output_tokens"] = max_output
    tools = _tools(body["tools"]) if body.get("tools") is not None else []
    if tools:
        out["tools"] = tools
    echo["tools"] = body.get("tools") or []
    echo["tool_choice"] = "auto"
    if body.get("tool_choice") is not None:
        functions = {t["function"]["name"] for t in tools if t["type"] == "function"}
        choice = _tool_choice(body["tool_choice"], functions)
        if tools:
            out["tool_choice"] = choice
        echo["tool_choice"] = body["tool_choice"]
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise fail(
                "parallel_tool_calls",
                "Invalid type for 'parallel_tool_calls': expected a boolean.",
                "invalid_type",
            )
        if tools:
            out["parallel_tool_calls"] = parallel
    echo["parallel_tool_calls"] = True if parallel is None else parallel
    echo["text"] = _text(body["text"], out) if body.get("text") is not None else {"format": {"type": "text"}}
    echo["reasoning"] = (
        _reasoning(body["reasoning"], out)
        if body.get("reasoning") is not None
        else {"effort": None, "summary": None}
    )
    echo["metadata"] = _metadata(body["metadata"]) if body.get("metadata") is not None else {}
    for name in ("user", "safety_identifier"):  # each checked by its own name
        if body.get(name) is not None:
            _string(body[name], name)
    _at_most(body.get("safety_identifier"), "safety_identifier", MAX_SAFETY_IDENTIFIER)
    user = body.get("user") or body.get("safety_identifier")
    if user is not None:
        out["user"] = user
    echo["user"] = body.get("user")
    echo["safety_identifier"] = body.get("safety_identifier")
    echo["prompt_cache_key"] = body.get("prompt_cache_key")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise fail("stream", "Invalid type for 'stream': expected a boolean.", "invalid_type")
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    store = body.get("store")
    previous = body.get("previous_response_id")
    echo["store"] = store is not False
    echo["previous_response_id"] = previous
    echo["truncation"] = body.get("truncation") or "disabled"
    echo["service_tier"] = body.get("service_tier") or "default"  # the upstream's own, if it says
    _hints(body, echo["text"], out)
    return Translated(out, turn, items, echo, store is not False, previous, body, sources)


# POST /v1/responses/input_tokens: the fields of a create that shape the input (the openai SDK's
# InputTokenCountParams); the others (max_output_tokens, stream, store, ...) are unknown there.
COUNT_FIELDS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
    "truncation", "previous_response_id", "conversation", "personality",
})


def translate_count(body: JSON) -> Translated:
    """The canonical chat request of an input-token count, validated as a create is. The count is
    the gateway's own (pipeline/count_tokens.py), made before any deployment is chosen, so what
    only a native deployment could serve is refused here rather than left out of the count."""
    for key in body:
        if key not in COUNT_FIELDS:
            raise fail(str(key)[:60], f"Unknown parameter: '{str(key)[:60]}'.", "unknown_parameter")
    if body.get("personality") is not None:  # a style preset of OpenAI's models: no chat equivalent
        raise unsupported("personality", "personality")
    translated = translate(body)
    for i, tool in enumerate(translated.request.get("tools") or ()):
        if tool.get("type") == "mcp":
            # The tool loop lists a server's tools only when it runs the request: not counted.
            raise UnsupportedParameter(
                "MCP tools cannot be counted: the gateway lists an MCP server's tools only when it "
                "runs the request; count the request without them",
                param=f"tools[{i}].type",
            )
    translated.store = False  # a count keeps nothing
    return translated


def counted(body: JSON) -> JSON:
    """The part of an input-token count's ``body`` that ``translate_count`` refuses nothing of: the
    request its chain runs until the refusal of the rest is raised (``Responses.count``)."""
    return {k: v for k, v in without_unsupported(body).items() if k != "personality"}


def _hints(body: JSON, text: JSON, out: JSON) -> None:
    """The hints of ``body`` the chat form has fields for, in ``out``, named in its ``switchboard_hints``:
    a provider that refuses one gets the request without it (capabilities.check), as the Responses
    API documents them as hints (the answer is the same without them)."""
    hints = {"verbosity": text.get("verbosity"), "service_tier": body.get("service_tier"),
             "prompt_cache_key": body.get("prompt_cache_key")}
    given = [name for name, value in hints.items() if value is not None]
    if given:
        out.update((name, hints[name]) for name in given)
        out[HINTS] = given


# Fields that name objects kept in the provider's account (OpenAI's Conversations, the prompts of
# its dashboard, vector stores, code interpreter and shell containers, skills, stored items): a
# native deployment would read (and, for a conversation, append to) them in the account the
# gateway's stored credential opens, which every caller shares.
_ACCOUNT_FIELDS = {"conversation": "a conversation", "prompt": "a prompt template"}


def account_object(body: JSON) -> tuple[str, str] | None:
    """The first field of a Responses body naming objects of the upstream account (``conversation``,
    ``prompt``, a tool's vector stores, container or skills (``providers/account.tool_object``),
    in ``tools`` or in a ``tool_search_output`` input item, an ``item_reference`` input item, the
    container of a replayed ``code_interpreter_call`` or ``shell_call``) as (param, what it
    names), or None.

    An ``item_reference`` names an item stored upstream. The gateway keeps every response it
    serves itself (a native deployment gets ``store: false``), so no item of the caller's is ever
    stored there: the id can only be one of the shared account's. The caller's own earlier turns
    are continued with ``previous_response_id`` instead."""
    for name, what in _ACCOUNT_FIELDS.items():
        if body.get(name) is not None:
            return name, what
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if isinstance(tool, dict) and (found := tool_object(tool, f"tools[{i}]")) is not None:
            return found
    items = body.get("input")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "item_reference":
            return f"input[{i}]", "an item"
        if (found := _replayed_container(item, f"input[{i}]")) is not None:
            return found
        # A tool search's output: tools loaded into the request, defined as in ``tools``.
        loaded = item.get("tools") if item.get("type") == "tool_search_output" else None
        for j, tool in enumerate(loaded if isinstance(loaded, list) else ()):
            if isinstance(tool, dict) and (found := tool_object(tool, f"input[{i}].tools[{j}]")) is not None:
                return found
    return None


def _replayed_container(item: JSON, where: str) -> tuple[str, str] | None:
    """The container an output item sent back as input names: a ``code_interpreter_call``'s
    ``container_id``, a ``shell_call``'s ``environment`` (a ``container_reference``; ``local`` is
    the caller's machine). Like an ``item_reference``, it can only be a container of the account
    the gateway's credential opens, and the gateway does not know whose: the caller's own turns
    are continued with ``previous_response_id``."""
    if item.get("container_id") is not None:
        return f"{where}.container_id", "a container"
    environment = item.get("environment")
    if environment is not None and item.get("type") == "shell_call":
        return tool_object({"environment": environment}, where)
    return None


def loaded_mcp_tool(body: JSON) -> UnsupportedParameter | None:
    """The refusal of an ``mcp`` tool loaded by a ``tool_search_output`` input item, or None. The
    gateway runs MCP tools itself, only those of ``tools`` and only against the servers registered
    with it (mcp/tool_spec.py refuses a caller's ``connector_id``, ``authorization``, ``headers``):
    a loaded one would reach a native deployment as written and be called by the provider, on
    whatever server, connector or token it names. Refused on every deployment, whatever the
    credential, as in ``tools``."""
    items = body.get("input")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict) or item.get("type") != "tool_search_output":
            continue
        loaded = item.get("tools")
        for j, tool in enumerate(loaded if isinstance(loaded, list) else ()):
            if isinstance(tool, dict) and tool.get("type") == "mcp":
                return UnsupportedParameter(
                    "MCP tools loaded by a tool search are not supported by this gateway: it runs MCP "
                    "tools itself; name a server registered with it by its server_label in 'tools'",
                    param=f"input[{i}].tools[{j}]",
                )
    return None


def account_objects(body: JSON) -> UnsupportedParameter | None:
    """The refusal of a request naming objects of the upstream account, or None. The gateway
    neither creates nor keeps such objects apart per caller, so one caller could use another's
    by its id: a native deployment serves them only with the caller's own provider credential
    (its own account) or on a provider entry with ``allow_account_objects`` (state.py). Read only
    for requests the chat form cannot carry (translate refused them)."""
    found = account_object(body)
    if found is None:
        return None
    param, what = found
    return UnsupportedParameter(
        f"'{param}' names {what} of the provider account the gateway shares among all its callers, "
        "which it neither creates nor keeps apart per caller: it is accepted only with your own "
        "provider credential (caller credentials); send the request without it",
        param=param,
    )


def _supported_part(part: Any) -> bool:
    if not isinstance(part, dict):
        return True
    kind = part.get("type")
    return kind not in ("input_file", "input_audio") and not (kind == "input_image" and part.get("file_id"))


def _supported_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    kind = item.get("type", "message")
    if kind not in ("message", "function_call", "function_call_output", "reasoning", "mcp_call",
                    "mcp_list_tools"):
        return None
    if kind in _ITEM_REFUSED:
        item = _without_keys(item, _ITEM_REFUSED[kind])
    if isinstance(item.get("content"), list):
        return {**item, "content": [p for p in item["content"] if _supported_part(p)]}
    output = item.get("output")
    if item.get("type") == "function_call_output" and isinstance(output, list):
        kept = [p for p in output if isinstance(p, dict) and _supported_part(p)
                and p.get("type") in ("input_text", "output_text", "input_image")]
        return {**item, "output": kept}
    return item


def without_unsupported(body: JSON) -> JSON:
    """``body`` without the features the chat form cannot carry (built-in tools, file inputs,
    ...): the canonical request of a request that only a native deployment can serve in full."""
    out = {k: v for k, v in body.items() if k not in _REFUSED and k != "background"}
    if out.get("truncation") == "auto":
        del out["truncation"]
    if isinstance(out.get("tools"), list):
        out["tools"] = [
            _without_keys(t, _TOOL_REFUSED) if isinstance(t, dict) else t
            for t in out["tools"]
            if not isinstance(t, dict) or t.get("type") == "function"
        ]
    if isinstance(out.get("reasoning"), dict):
        out["reasoning"] = _without_keys(out["reasoning"], _REASONING_REFUSED)
    choice = out.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") != "function":
        del out["tool_choice"]
    if isinstance(out.get("include"), list):
        # Names it cannot serve left out; anything but a name kept, for translate to refuse (400).
        out["include"] = [x for x in out["include"] if not isinstance(x, str) or x in _INCLUDE]
    if isinstance(out.get("input"), list):
        out["input"] = [x for x in map(_supported_item, out["input"]) if x is not None]
    return out
