"""Canonical (OpenAI Chat Completions / Embeddings) requests -> Cohere API v2 request bodies.

Reference: https://docs.cohere.com/reference/chat and https://docs.cohere.com/reference/embed
(the OpenAPI spec in github.com/cohere-ai/cohere-developer-experience, ``cohere-openapi.yaml``:
``ChatMessageV2``, ``ToolV2``, ``ResponseFormatV2``, ``V2EmbedRequest``).

Canonical ``document`` parts in user and tool messages: plain-text documents become text blocks
(title first); binary ones (PDF) are a 400, Cohere's chat has no file part. A tool message with
``is_error: true`` gets its content prefixed "Error: " (Cohere has no error flag).
"""

from __future__ import annotations

from typing import Any

from switchboard import media_urls
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import allowed_tools, capabilities, documents, tool_names
from switchboard.providers.base import JSON
from switchboard.providers.cohere.input_type import input_type
from switchboard.providers.effort import EffortRefused
from switchboard.providers.embedding_inputs import text_inputs
from switchboard.providers.params import drops
from switchboard.providers.response_format import described_schema
from switchboard.providers.target import Target
from switchboard.providers.turns import assistant_content, check_results

# What is refused (metadata, n, logit_bias, ...) comes from the capability table,
# capabilities/cohere.py. Cohere's v2 chat has no user or metadata field and no control over
# parallel tool calls (it may always make several: parallel_tool_calls false is not sent, the
# gateway keeps the first call of the reply); ``user`` is accepted and not sent (the body is
# built field by field).

# Cohere-only fields a client may send as extra body; forwarded unchanged.
NATIVE_FIELDS = ("k", "safety_mode", "documents", "citation_options", "priority", "strict_tools")

# reasoning_effort -> Cohere thinking (``{"type": "enabled", "token_budget": N}``); "high" leaves
# the budget to the model, "none" turns reasoning off (Cohere's reasoning models think by default).
_EFFORT_BUDGETS: dict[str, int | None] = {"minimal": 512, "low": 1024, "medium": 8192, "high": None}

# Cohere's ``p`` must lie in [0.01, 0.99]; OpenAI clients commonly send top_p=1 meaning "no cut-off".
_P_MIN, _P_MAX = 0.01, 0.99

_ROLE_MAP = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool",
}


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


# ---- messages ---------------------------------------------------------------------------------


def _text_blocks(content: list[Any], param: str, allowed: tuple[str, ...] = ("text",)) -> list[JSON]:
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text" and "text" in allowed:
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and "text" in allowed:
            blocks.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "image_url" and "image_url" in allowed:
            blocks.append({"type": "image_url", "image_url": _image_url(part["image_url"], f"{param}[{j}]")})
        elif kind == "document" and "document" in allowed:  # plain text only: Cohere has no file part
            blocks.append({"type": "text", "text": documents.text_of(part, f"{param}[{j}]", "cohere")})
        else:
            raise _invalid(f"content part type '{kind}' is not supported here by provider type 'cohere'",
                           f"{param}[{j}]")
    return blocks


def _image_url(image: JSON, where: str) -> JSON:
    # Cohere takes data URIs and web URLs alike (ImageUrl.url), plus the same ``detail`` levels.
    out: JSON = {"url": media_urls.canonical(image["url"], f"{where}.image_url.url")}
    if image.get("detail") in ("auto", "low", "high"):
        out["detail"] = image["detail"]
    return out


def _content(content: Any, param: str, allowed: tuple[str, ...] = ("text",)) -> str | list[JSON]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return _text_blocks(content, param, allowed)


def _joined_text(content: Any, param: str) -> str:
    """An assistant's text as one string (it becomes ``tool_plan`` next to tool calls)."""
    value = _content(content, param)
    if isinstance(value, str):
        return value
    return "".join(block["text"] for block in value)


def _tool_call(call: JSON) -> JSON:
    fn = call["function"]
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {"name": fn["name"], "arguments": fn.get("arguments") or "{}"},
    }


def _assistant(msg: JSON, param: str) -> JSON:
    out: JSON = {"role": "assistant"}
    content = assistant_content(msg)
    calls = msg.get("tool_calls")
    if calls:
        # Cohere pairs tool calls with a plan, not with content: the text travels as tool_plan.
        out["tool_calls"] = [_tool_call(c) for c in calls]
        plan = _joined_text(content, f"{param}.content")
        if plan:
            out["tool_plan"] = plan
        return out
    out["content"] = _content(content, f"{param}.content")
    return out


def _message(msg: JSON, i: int) -> JSON:
    param = f"messages[{i}]"
    role = _ROLE_MAP.get(msg.get("role", ""))
    if role is None:
        hint = "use tools and tool messages"
        raise _invalid(f"role '{msg.get('role')}' is not supported by provider type 'cohere'; {hint}",
                       f"{param}.role")
    if role == "assistant":
        return _assistant(msg, param)
    allowed = {"user": ("text", "image_url", "document"), "tool": ("text", "document")}.get(role, ("text",))
    out: JSON = {"role": role, "content": _content(msg.get("content"), f"{param}.content", allowed)}
    if role == "tool":
        out["tool_call_id"] = msg["tool_call_id"]
        if msg.get("is_error") is True:  # Cohere has no error flag on a tool result
            out["content"] = _error_prefixed(out["content"])
    return out


def _messages(messages: list[JSON]) -> list[JSON]:
    """The conversation as Cohere's messages. A tool result answering no earlier tool call is a
    400 here (Cohere refuses it: "tool call id not found in previous tool calls")."""
    check_results(messages, "cohere")
    return [_message(msg, i) for i, msg in enumerate(messages)]


def _error_prefixed(content: str | list[JSON]) -> str | list[JSON]:
    if isinstance(content, str):
        return f"Error: {content}"
    return [{"type": "text", "text": "Error: "}, *content]


# ---- tools and output format ------------------------------------------------------------------


def _tools(tools: list[JSON]) -> list[JSON]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _invalid(f"tool type '{tool.get('type')}' is not supported by provider type 'cohere'",
                           f"tools[{i}].type")
        fn = tool["function"]
        function: JSON = {"name": fn["name"], "parameters": fn.get("parameters") or {"type": "object",
                                                                                   "properties": {}}}
        if fn.get("description"):
            function["description"] = fn["description"]
        out.append({"type": "function", "function": function})
    return out


def _apply_tool_choice(body: JSON, choice: Any) -> None:
    """OpenAI tool_choice -> Cohere's REQUIRED/NONE (auto is Cohere's default: the field is omitted).

    Cohere cannot name one tool, so a named choice becomes REQUIRED with only that tool offered
    (``allowed_tools`` arrives narrowed to its tools and mode: providers/allowed_tools.py).
    """
    if choice is None or choice == "auto":
        return
    if choice == "none":
        body["tool_choice"] = "NONE"
        return
    if choice == "required":
        body["tool_choice"] = "REQUIRED"
        return
    name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
    if not isinstance(name, str):
        raise _invalid("tool_choice must be 'none', 'auto', 'required' or a function", "tool_choice")
    chosen = [t for t in body.get("tools") or [] if t["function"]["name"] == name]
    if not chosen:
        raise _invalid(f"tool_choice names function '{name}', which is not in 'tools'", "tool_choice")
    body["tools"] = chosen
    body["tool_choice"] = "REQUIRED"


def _response_format(fmt: JSON) -> JSON | None:
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = described_schema(fmt.get("json_schema"))
        if schema is not None:
            return {"type": "json_object", "json_schema": schema}
        return {"type": "json_object"}
    return None  # "text" is Cohere's default


# ---- chat body --------------------------------------------------------------------------------


def _sampling(request: JSON, body: JSON) -> None:
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    for name in ("temperature", "seed", "frequency_penalty", "presence_penalty"):
        if request.get(name) is not None:
            body[name] = request[name]
    if request.get("top_p") is not None:
        body["p"] = min(max(float(request["top_p"]), _P_MIN), _P_MAX)
    if request.get("top_k") is not None:
        body["k"] = request["top_k"]
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.get("logprobs"):
        body["logprobs"] = True


def _strictness(tools: list[JSON], request: JSON, target: Target) -> bool:
    """Whether to send ``strict_tools: true``. Cohere's switch covers every tool of the request,
    so it is set only when all tools ask for strict schemas; mixed strictness is refused (or
    strictness dropped, with drop_params), never widened to the tools that did not ask."""
    functions = [t.get("function") or {} for t in tools]
    strict = [f.get("name") for f in functions if f.get("strict")]
    if not strict or len(strict) == len(tools):
        return bool(strict)
    if drops(request, target):
        return False
    loose = [f.get("name") for f in functions if not f.get("strict")]
    raise UnsupportedParameter(
        f"strict tool schemas for some tools only (strict: {', '.join(map(str, strict))}; not strict: "
        f"{', '.join(map(str, loose))}) are not supported by provider type 'cohere' (model '{target.name}'): "
        "Cohere's strict_tools applies to every tool; make all tools strict or none, or set drop_params "
        "to send them without strictness",
        param="tools",
    )


def _tooling(request: JSON, body: JSON, target: Target) -> None:
    request = allowed_tools.narrowed(request)  # Cohere has no allowed list
    tools = request.get("tools")
    if tools:
        tool_names.check(tools, tool_names.COHERE, target)  # a name Cohere refuses: our 400, not its
        body["tools"] = _tools(tools)
        if _strictness(tools, request, target):
            body["strict_tools"] = True
    _apply_tool_choice(body, request.get("tool_choice"))
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and (converted := _response_format(fmt)) is not None:
        body["response_format"] = converted


def _strip_neutral(request: JSON) -> JSON:
    # top_logprobs=0 asks for nothing; treat it like absent so check_supported does not refuse it.
    if request.get("top_logprobs") == 0:
        request = {k: v for k, v in request.items() if k != "top_logprobs"}
    return request


def _thinking(request: JSON) -> JSON | None:
    """Canonical ``thinking`` (Anthropic's shape; Cohere's own ``token_budget`` accepted too), else
    ``reasoning_effort``, as Cohere's ``thinking``."""
    thinking = request.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "disabled":
            return {"type": "disabled"}
        if kind != "enabled":
            raise _invalid('thinking must be {"type": "enabled", "budget_tokens": N} or {"type": "disabled"}',
                           "thinking")
        budget = thinking.get("budget_tokens", thinking.get("token_budget"))
        if not (budget is None or (isinstance(budget, int) and not isinstance(budget, bool) and budget > 0)):
            # Named as the caller spelt it: the canonical (Anthropic) name unless Cohere's own was sent.
            param = "thinking.budget_tokens" if "budget_tokens" in thinking else "thinking.token_budget"
            raise _invalid(f"{param} must be a positive integer", param)
        return {"type": "enabled"} if budget is None else {"type": "enabled", "token_budget": budget}
    effort = request.get("reasoning_effort")
    if effort is None:
        return None
    if effort == "none":
        return {"type": "disabled"}
    if not isinstance(effort, str) or effort not in _EFFORT_BUDGETS:  # an array cannot be looked up
        raise EffortRefused(effort, "has no Cohere thinking budget", ("none", *_EFFORT_BUDGETS))
    budget = _EFFORT_BUDGETS[effort]
    return {"type": "enabled"} if budget is None else {"type": "enabled", "token_budget": budget}


def chat_body(request: JSON, target: Target) -> JSON:
    request = capabilities.check(_strip_neutral(request), target)
    body: JSON = {
        "model": target.model,
        "messages": _messages(request["messages"]),
        "stream": bool(request.get("stream")),
    }
    _sampling(request, body)
    _tooling(request, body, target)
    if (thinking := _thinking(request)) is not None:
        body["thinking"] = thinking
    for key in NATIVE_FIELDS:
        if request.get(key) is not None and key not in body:
            body[key] = request[key]
    return body


# ---- embeddings -------------------------------------------------------------------------------

# Cohere-only embed fields a client may send as extra body (per-input token limit, request
# priority); forwarded unchanged.
EMBED_NATIVE_FIELDS = ("max_tokens", "priority")

# Texts per embed call (Cohere's API reference: "Maximum number of texts per call is 96").
EMBED_MAX_TEXTS = 96


# Cohere's embedding types whose vectors are lists of numbers (the compressed ones are integers,
# binary/ubinary one per 8 dimensions). Its "base64" type is left out: encoding_format base64 asks
# for that, for every provider, and the gateway packs the vectors itself.
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")


def embedding_type(request: JSON) -> str:
    """The one embedding type to ask for: ``float`` unless the request sent Cohere's own
    ``embedding_types`` naming exactly one of EMBEDDING_TYPES. An answer carries one vector per
    input, so several types (or none, or another) are a 400 naming the field rather than quietly
    replaced by float vectors."""
    types = request.get("embedding_types")
    if types is None:
        return "float"
    if not (isinstance(types, list) and len(types) == 1 and types[0] in EMBEDDING_TYPES):
        raise _invalid(f"embedding_types must name exactly one of {', '.join(EMBEDDING_TYPES)} (an answer "
                       "holds one vector per input)", "embedding_types")
    return str(types[0])


def embed_body(request: JSON, target: Target, default_input_type: str) -> JSON:
    """Every OpenAI embeddings parameter maps (``user`` is ignored); an extra ``input_type`` must be
    one Cohere takes (providers/cohere/input_type.py), an extra ``embedding_types`` one type.
    Text only, at most 96 texts."""
    texts = text_inputs(request, target, EMBED_MAX_TEXTS)
    body: JSON = {
        "model": target.model,
        "texts": texts,
        "input_type": input_type(request, default_input_type),
        "embedding_types": [embedding_type(request)],
    }
    if request.get("dimensions") is not None:
        body["output_dimension"] = request["dimensions"]
    if isinstance(request.get("truncate"), str):
        body["truncate"] = request["truncate"]
    for key in EMBED_NATIVE_FIELDS:  # Cohere judges their values, as for chat's NATIVE_FIELDS
        if request.get(key) is not None:
            body[key] = request[key]
    return body
