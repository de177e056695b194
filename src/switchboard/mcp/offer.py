"""A request's MCP tools offered to the model as function tools named ``<server>__<tool>``, and
the model's calls to them run through the toolbox, each turned into an ``mcp_call`` item and
the text fed back to the model."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.config.mcp import SEPARATOR
from switchboard.errors import GatewayError
from switchboard.mcp.interfaces import Listing
from switchboard.mcp.tool_spec import ServerTool
from switchboard.mcp.upstream import tool_failed

JSON = dict[str, Any]

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
# What of a tool's result is fed back to the model and shown in ``mcp_call.output``.
MAX_OUTPUT_CHARS = 1_000_000


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


# -- the offered tools ---------------------------------------------------------------------------


@dataclass(slots=True)
class Offered:
    """A server's tool offered to the model as a function."""

    function: str  # the function name the model sees
    name: str  # the toolbox's name: <server>__<tool>
    label: str
    tool: str  # the server's own name of the tool


def _read_only(item: Mapping[str, Any]) -> bool:
    annotations = item.get("annotations")
    return isinstance(annotations, dict) and annotations.get("readOnlyHint") is True


def _function_name(name: str, taken: set[str]) -> str:
    """A function name every provider accepts for the toolbox name ``name``."""
    candidate = name if _FUNCTION_NAME.match(name) else (_UNSAFE.sub("_", name)[:120] or "tool")
    out, n = candidate, 1
    while out in taken:
        n += 1
        out = f"{candidate[:120]}_{n}"
    taken.add(out)
    return out


def _notice_for(label: str, notices: Sequence[str]) -> str | None:
    for notice in notices:
        if notice.startswith(label + ":") or f"'{label}'" in notice:
            return notice[:1000]
    return None


def offer(
    specs: Sequence[ServerTool], listing: Listing, taken: set[str]
) -> tuple[list[JSON], list[JSON], dict[str, Offered]]:
    """(the ``mcp_list_tools`` items, the function tools offered, function name -> its tool)."""
    items: list[JSON] = []
    functions: list[JSON] = []
    offered: dict[str, Offered] = {}
    for spec in specs:
        prefix = spec.label + SEPARATOR
        tools: list[JSON] = []
        for item in listing.items:
            name = item.get("name")
            if not isinstance(name, str) or not name.startswith(prefix):
                continue
            tool = name[len(prefix) :]
            if spec.allowed is not None and tool not in spec.allowed:
                continue
            if spec.read_only is not None and _read_only(item) != spec.read_only:
                continue
            schema = item.get("inputSchema")
            schema = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
            description = item.get("description")
            entry: JSON = {
                "name": tool,
                "input_schema": schema,
                "description": description if isinstance(description, str) else None,
                "annotations": item.get("annotations") if isinstance(item.get("annotations"), dict) else None,
            }
            tools.append(entry)
            function = _function_name(name, taken)
            offered[function] = Offered(function, name, spec.label, tool)
            declared: JSON = {"name": function, "parameters": schema}
            if entry["description"]:
                declared["description"] = entry["description"]
            functions.append({"type": "function", "function": declared})
        items.append(
            {
                "id": new_id("mcpl_"),
                "type": "mcp_list_tools",
                "server_label": spec.label,
                "tools": tools,
                "error": None if tools else _notice_for(spec.label, listing.notices),
            }
        )
    return items, functions, offered


# -- calling -------------------------------------------------------------------------------------


def result_text(result: Mapping[str, Any]) -> str:
    """A ``CallToolResult`` as the text fed back to the model: its text blocks, other blocks as
    JSON, the structured content when there is no content."""
    parts: list[str] = []
    content = result.get("content")
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        else:
            parts.append(orjson.dumps(block).decode())
    if not parts and result.get("structuredContent") is not None:
        parts.append(orjson.dumps(result["structuredContent"]).decode())
    text = "\n".join(parts)
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " [cut]"


def _error_of(exc: BaseException) -> JSON:
    """An ``mcp_call`` error of a call that did not produce a result."""
    rpc_code = getattr(exc, "rpc_code", None)
    if isinstance(exc, GatewayError) and isinstance(rpc_code, int):  # the server's JSON-RPC error
        return {"type": "mcp_protocol_error", "code": rpc_code, "message": exc.message[:2000]}
    if isinstance(exc, GatewayError):
        return {"type": "http_error", "code": exc.status, "message": exc.message[:2000]}
    data = getattr(exc, "error", None)
    code = getattr(data, "code", None)
    return {
        "type": "mcp_protocol_error",
        "code": code if isinstance(code, int) else -32603,
        "message": (str(exc) or type(exc).__name__)[:2000],
    }


# -- replayed calls --------------------------------------------------------------------------------


def replayed(item: Mapping[str, Any], call_id: str) -> tuple[JSON, str]:
    """An ``mcp_call`` output item sent back as input (``store: false`` clients replay the whole
    output): (the assistant's tool call, the text fed back), as ``run`` in loop.py and
    :func:`call_tool` gave them to the model. The model's own call id is not in the item: the
    item's id stands for it."""
    function = _function_name(f"{item['server_label']}{SEPARATOR}{item['name']}", set())
    arguments = item.get("arguments")
    arguments = arguments if isinstance(arguments, str) else "{}"
    call: JSON = {"id": call_id, "type": "function", "function": {"name": function, "arguments": arguments}}
    return call, fed_back(item)


def fed_back(item: Mapping[str, Any]) -> str:
    """The text :func:`call_tool` fed back to the model for its ``mcp_call`` item."""
    output = item.get("output")
    text = output if isinstance(output, str) else ""
    error = item.get("error")
    if not isinstance(error, dict):
        return text
    if error.get("type") == "mcp_tool_execution_error":  # the tool's own error: its text
        return f"Error: {text}"
    message = error.get("message")
    return f"Error: {message if isinstance(message, str) else text}"


# How a tool is run: (its exposed name, the arguments, the id of the model's tool call or None).
CallTool = Callable[[str, dict[str, Any], str | None], Awaitable[Mapping[str, Any]]]


async def call_tool(run: CallTool, offered: Offered, call: JSON) -> tuple[JSON, str]:
    """Run one of the model's tool calls: (its ``mcp_call`` item, the text fed back)."""
    function = call.get("function") or {}
    arguments = function.get("arguments")
    arguments = arguments if isinstance(arguments, str) and arguments.strip() else "{}"
    item: JSON = {
        "id": new_id("mcp_"),
        "type": "mcp_call",
        "server_label": offered.label,
        "name": offered.tool,
        "arguments": arguments,
        "output": None,
        "error": None,
        "status": "completed",
        "approval_request_id": None,
    }
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        message = "the arguments are not a JSON object"
        item.update(status="failed", error={"type": "mcp_protocol_error", "code": -32602, "message": message})
        return item, f"Error: {message}"
    try:
        ident = call.get("id")
        result = await run(offered.name, parsed, ident if isinstance(ident, str) else None)
    except Exception as exc:
        item.update(status="failed", error=_error_of(exc))
        return item, f"Error: {item['error']['message']}"
    text = result_text(result)
    item["output"] = text
    if tool_failed(offered.label, result):
        content = result.get("content")
        item.update(
            status="failed",
            error={
                "type": "mcp_tool_execution_error",
                "content": content if isinstance(content, list) else [],
            },
        )
        return item, f"Error: {text}"
    return item, text


