"""OpenAI's ``tool_choice: {type: allowed_tools, allowed_tools: {mode, tools}}`` for the translated
provider types: the entries checked against ``tools``, and the request narrowed to them.

Most providers have no allowed list (Anthropic, Converse, Cohere, Mistral). Offering only the
allowed tools with the list's mode (``auto``, or ``required``: call one of them) means the same,
so they are sent that way (:func:`narrowed`). Gemini has a native list for ``required``
(``allowedFunctionNames``) and takes the checked names (:func:`allowed`).
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON

_PARAM = "tool_choice.allowed_tools"


def allowed(request: JSON) -> tuple[str, list[JSON]] | None:
    """``(mode, the tools of 'tools' the list allows, in their order)`` when ``tool_choice`` is
    ``allowed_tools``, else None. An entry that names no function of ``tools`` is a 400 naming it:
    left out, the model would be offered less than the caller believes, or nothing."""
    choice = request.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return None
    spec = choice.get("allowed_tools")
    mode = spec.get("mode") if isinstance(spec, dict) else None
    if mode not in ("auto", "required"):
        raise InvalidRequest(f"{_PARAM}.mode must be 'auto' or 'required'", param=f"{_PARAM}.mode",
                             code="invalid_value")
    entries = spec.get("tools") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest(f"{_PARAM}.tools must be a non-empty list of functions of 'tools'",
                             param=f"{_PARAM}.tools", code="invalid_value")
    offered = request.get("tools") or ()
    by_name = {_name(t): t for t in offered if isinstance(t, dict) and t.get("type") == "function"}
    names: dict[str, None] = {}
    for i, entry in enumerate(entries):
        name = _name(entry) if isinstance(entry, dict) and entry.get("type") == "function" else None
        if name is None or name not in by_name:
            shown = "an entry that is not a named function" if name is None else f"function '{name[:100]}'"
            raise InvalidRequest(
                f"{_PARAM}.tools[{i}] names {shown}, which is not a function of 'tools': list only "
                "functions the request offers, as {\"type\": \"function\", \"function\": {\"name\": ...}}",
                param=f"{_PARAM}.tools[{i}]",
                code="invalid_value",
            )
        names[name] = None
    return mode, [tool for name, tool in by_name.items() if name in names]


def narrowed(request: JSON) -> JSON:
    """``request`` offering only the allowed tools, with ``tool_choice`` the list's mode; unchanged
    when ``tool_choice`` is not ``allowed_tools``."""
    picked = allowed(request)
    if picked is None:
        return request
    mode, tools = picked
    return {**request, "tools": tools, "tool_choice": mode}


def _name(tool: JSON) -> Any:
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None
