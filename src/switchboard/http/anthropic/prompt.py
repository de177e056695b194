"""A registry prompt on ``POST /v1/messages`` (docs/prompts.md, "Prompts from chat").

The prompt stage (pipeline/prompt.py) hands the rendered messages and the prompt's defaults
here: they are merged into the client's Messages body, in Anthropic's own terms (system
messages into ``system``, the rest before the client's messages, defaults the client did not
set), and the body is decoded again. So the canonical request and the body a pass-through
exchange sends (pipeline/native.py) say the same thing, and the whole is validated as any
Messages request is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.context import RequestContext
from switchboard.http.anthropic.content import JSON
from switchboard.http.anthropic.request import decode_into


def _tool(tool: Mapping[str, Any]) -> JSON | None:
    function = tool.get("function") if tool.get("type") == "function" else None
    if not isinstance(function, Mapping):
        return None
    out: JSON = {"name": function.get("name"),
                 "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> JSON | None:
    if isinstance(choice, str):
        kind = {"auto": "auto", "required": "any", "none": "none"}.get(choice)
        return None if kind is None else {"type": kind}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "tool", "name": choice["function"].get("name")}
    return None


def defaults(params: Mapping[str, Any]) -> JSON:
    """A prompt's default parameters (chat completion names) as Messages fields; those the
    Messages API has no counterpart for are left out."""
    out: JSON = {}
    tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if tokens is not None:
        out["max_tokens"] = tokens
    if params.get("temperature") is not None:  # Anthropic's range is 0-1
        out["temperature"] = min(float(params["temperature"]), 1.0)
    if params.get("top_p") is not None:
        out["top_p"] = params["top_p"]
    stop = params.get("stop")
    if stop is not None:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [t for t in (_tool(t) for t in params.get("tools") or ()) if t is not None]
    if tools:
        out["tools"] = tools
        choice = _tool_choice(params.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, Mapping):
            out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return out


def with_prompt(ctx: RequestContext, rendered: list[dict[str, Any]], model: str,
                params: Mapping[str, Any]) -> None:
    """Merge the rendered prompt into the client's body and decode the result."""
    body = orjson.loads(ctx.body)
    body.pop("prompt", None)
    system = [str(m["content"]) for m in rendered if m.get("role") in ("system", "developer")]
    turns = [{"role": m["role"], "content": m["content"]} for m in rendered
             if m.get("role") in ("user", "assistant")]
    given = body.get("system")
    if system:
        if not given:
            body["system"] = "\n\n".join(system)
        elif isinstance(given, str):
            body["system"] = "\n\n".join([*system, given])
        elif isinstance(given, list):
            body["system"] = [*({"type": "text", "text": s} for s in system), *given]
    body["messages"] = [*turns, *(body.get("messages") or [])]
    if not body.get("model"):
        body["model"] = model
    for key, value in defaults(params).items():
        if body.get(key) is None:
            body[key] = value
    ctx.body = orjson.dumps(body)
    decode_into(ctx)  # the merged body's sources: a refusal names its messages as validation does
