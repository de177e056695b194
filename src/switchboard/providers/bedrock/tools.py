"""Canonical tools, tool_choice and parallel_tool_calls -> Converse ``toolConfig`` (and, for Claude,
``additionalModelRequestFields.tool_choice``).

- ``tool_choice: "none"``: Converse has no "none", so no ``toolConfig`` is sent; tool blocks in
  the history are sent as text (see ``messages.tools_as_text``), since Converse accepts them only
  with a ``toolConfig`` that would let the model call tools again.
- ``parallel_tool_calls: false``: Converse has no general control. Claude models take Anthropic's
  ``tool_choice: {type, disable_parallel_tool_use: true}`` in ``additionalModelRequestFields``
  (its ``type`` matches ``toolConfig.toolChoice``); for other families nothing is sent and the
  gateway keeps the first tool call of the reply (``providers/tool_calls.py``).
- a forced ``tool_choice`` (``required``, a function) without ``tools`` is a 400: it could not be
  sent, and the model would answer in text instead (``providers/forced_choice.py``).
- ``allowed_tools`` (no Converse form) arrives narrowed (``providers/allowed_tools.py``): only the
  allowed tools, with ``auto`` or ``required`` (``any``) by its mode; the history's tool blocks
  are sent as they are.
- ``strict`` is kept per tool (``toolSpec.strict``), so strict and loose tools can be mixed.
- ``cache_control`` on a tool adds a ``cachePoint`` after it in ``toolConfig.tools``.
- a tool name Converse refuses (1-64 of ``[a-zA-Z0-9_-]``) is a 400 naming
  ``tools[i].function.name`` (``providers/tool_names.py``).
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import forced_choice, tool_names
from switchboard.providers.base import JSON
from switchboard.providers.bedrock.messages import cache_point
from switchboard.providers.bedrock.models import is_claude
from switchboard.providers.target import Target


def tool_config(request: JSON, turns: list[JSON], target: Target) -> JSON | None:
    tools = request.get("tools") or []
    if not tools:
        forced_choice.refuse_without_tools(request.get("tool_choice"), target)
        return _history_tools(turns)
    tool_names.check(tools, tool_names.CONVERSE, target)
    config: JSON = {"tools": [b for i, t in enumerate(tools) for b in _tool_spec(t, i, target)]}
    if choice := _choice(request.get("tool_choice"), target):
        config["toolChoice"] = choice
    return config


def _choice(choice: Any, target: Target) -> JSON | None:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or not isinstance(name, str):
            # allowed_tools never gets here: request.py narrows it to its tools and mode first.
            kind = str(choice.get("type"))[:40]
            raise InvalidRequest(
                f"tool_choice must be 'none', 'auto', 'required', a named function or allowed_tools for "
                f"provider type 'bedrock' (model '{target.name}'; {kind!r} has no Converse form)",
                param="tool_choice",
            )
        return {"tool": {"name": name}}
    return None


def _history_tools(turns: list[JSON]) -> JSON | None:
    """Converse refuses tool blocks without a toolConfig, and clients often drop ``tools`` on the
    turn after a tool result; declare the tools the history used, with an open schema."""
    names = dict.fromkeys(b["toolUse"]["name"] for t in turns for b in t["content"] if "toolUse" in b)
    if not names:
        return None
    return {"tools": [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in names]}


def _tool_spec(tool: JSON, i: int, target: Target) -> list[JSON]:
    if tool.get("type") != "function":
        raise UnsupportedParameter(
            f"tool type '{tool.get('type')}' is not supported by provider type 'bedrock' "
            f"(model '{target.name}')",
            param=f"tools[{i}].type",
        )
    fn = tool["function"]
    spec: JSON = {
        "name": fn["name"],
        "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
    }
    if fn.get("description"):
        spec["description"] = fn["description"]
    if fn.get("strict") is True:
        spec["strict"] = True
    blocks = [{"toolSpec": spec}]
    if tool.get("cache_control") is not None:
        blocks.append(cache_point(tool["cache_control"], f"tools[{i}].cache_control"))
    return blocks


def serial_tool_choice(request: JSON, config: JSON | None, target: Target) -> JSON | None:
    """``parallel_tool_calls: false`` -> Claude's ``tool_choice`` for additionalModelRequestFields,
    or None when there is nothing to send: no tools offered, or not a Claude model (the gateway
    then enforces it on the reply)."""
    if request.get("parallel_tool_calls") is not False or config is None or not request.get("tools"):
        return None
    if not is_claude(target.model):
        return None
    choice = config.get("toolChoice") or {"auto": {}}
    kind = next(iter(choice))
    anthropic: JSON = {"type": kind, "disable_parallel_tool_use": True}
    if kind == "tool":
        anthropic["name"] = choice["tool"]["name"]
    return anthropic
