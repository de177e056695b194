"""Canonical (OpenAI Chat Completions / Embeddings) requests -> Cohere API v2 request bodies.

Reference: https://docs.cohere.com/reference/chat and https://docs.cohere.com/reference/embed
(the OpenAPI spec in github.com/cohere-ai/cohere-developer-experience, ``cohere-openapi.yaml``:
``ChatMessageV2``, ``ToolV2``, ``ResponseFormatV2``, ``V2EmbedRequest``).
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON
from switchboard.providers.params import check_supported
from switchboard.providers.target import Target

# OpenAI chat parameters this adapter maps (the rest of params.CHAT_PARAMS are refused or dropped).
CHAT_SUPPORTED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "stop", "seed", "tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs",
    "presence_penalty", "frequency_penalty", "user",
})

# Cohere-only fields a client may send as extra body; forwarded unchanged.
NATIVE_FIELDS = ("k", "safety_mode", "documents", "citation_options", "thinking", "priority", "strict_tools")

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
            blocks.append({"type": "image_url", "image_url": _image_url(part["image_url"])})
        else:
            raise _invalid(f"content part type '{kind}' is not supported here by provider type 'cohere'",
                           f"{param}[{j}]")
    return blocks


def _image_url(image: JSON) -> JSON:
    # Cohere takes data URIs and web URLs alike (ImageUrl.url), plus the same ``detail`` levels.
    out: JSON = {"url": image["url"]}
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
    calls = msg.get("tool_calls")
    if calls:
        # Cohere pairs tool calls with a plan, not with content: the text travels as tool_plan.
        out["tool_calls"] = [_tool_call(c) for c in calls]
        plan = _joined_text(msg.get("content"), f"{param}.content")
        if plan:
            out["tool_plan"] = plan
        return out
    out["content"] = _content(msg.get("content"), f"{param}.content")
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
    allowed = ("text", "image_url") if role == "user" else ("text",)
    out: JSON = {"role": role, "content": _content(msg.get("content"), f"{param}.content", allowed)}
    if role == "tool":
        out["tool_call_id"] = msg["tool_call_id"]
    return out


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

    Cohere cannot name one tool, so a named choice becomes REQUIRED with only that tool offered.
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
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
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


def _tooling(request: JSON, body: JSON) -> None:
    tools = request.get("tools")
    if tools:
        body["tools"] = _tools(tools)
        if any((t.get("function") or {}).get("strict") for t in tools):
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


def chat_body(request: JSON, target: Target) -> JSON:
    request = check_supported(_strip_neutral(request), CHAT_SUPPORTED, target)
    body: JSON = {
        "model": target.model,
        "messages": [_message(m, i) for i, m in enumerate(request["messages"])],
        "stream": bool(request.get("stream")),
    }
    _sampling(request, body)
    _tooling(request, body)
    for key in NATIVE_FIELDS:
        if request.get(key) is not None and key not in body:
            body[key] = request[key]
    return body


# ---- embeddings -------------------------------------------------------------------------------

def embed_body(request: JSON, target: Target, default_input_type: str) -> JSON:
    """Every OpenAI embeddings parameter maps (``user`` is ignored), so nothing is refused here."""
    texts = request["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise _invalid("token-array inputs are not supported by provider type 'cohere'; send text", "input")
    input_type = request.get("input_type")
    body: JSON = {
        "model": target.model,
        "texts": texts,
        "input_type": input_type if isinstance(input_type, str) else default_input_type,
        "embedding_types": ["float"],
    }
    if request.get("dimensions") is not None:
        body["output_dimension"] = request["dimensions"]
    if isinstance(request.get("truncate"), str):
        body["truncate"] = request["truncate"]
    return body
