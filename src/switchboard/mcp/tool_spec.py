"""The ``mcp`` entries of a request's ``tools`` (docs/mcp.md, "Tools through the LLM endpoints"):
validated into :class:`ServerTool`; anything a caller could use to reach an upstream of its own
(a URL's headers, an authorization, connectors) is refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.errors import InvalidRequest

JSON = dict[str, Any]

# The keys of an ``mcp`` tool; the ones in _REFUSED are OpenAI's but not the gateway's (the
# gateway holds the servers' URLs and credentials: nothing a caller sends reaches an upstream).
_KEYS = frozenset(
    {
        "type",
        "server_label",
        "server_url",
        "allowed_tools",
        "require_approval",
        "server_description",
        "headers",
        "authorization",
        "connector_id",
        "tunnel_id",
        "defer_loading",
        "allowed_callers",
    }
)
_REFUSED = {
    "headers": "headers for an MCP server (the gateway holds the servers' credentials)",
    "authorization": "an authorization for an MCP server (the gateway holds the servers' credentials)",
    "connector_id": "connectors",
    "tunnel_id": "MCP tunnels",
}
MAX_LABEL = 64
MAX_ALLOWED = 1000


def _fail(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


@dataclass(slots=True)
class ServerTool:
    """One ``mcp`` entry of ``tools``."""

    label: str
    param: str  # "tools[i]"
    allowed: frozenset[str] | None = None  # tool names as the server gives them; None: all
    read_only: bool | None = None  # only tools annotated readOnlyHint (true) or not (false)
    url: str | None = None


def _names(value: Any, param: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_ALLOWED or not all(isinstance(v, str) for v in value):
        raise _fail(
            param,
            f"Invalid '{param}': expected an array of at most {MAX_ALLOWED} tool names.",
            "invalid_type",
        )
    return frozenset(value)


def _server_tool(tool: JSON, param: str) -> ServerTool:
    for key in tool:
        if key not in _KEYS:
            raise _fail(
                f"{param}.{str(key)[:40]}",
                f"Unknown parameter: '{param}.{str(key)[:40]}'.",
                "unknown_parameter",
            )
    for key, feature in _REFUSED.items():
        if tool.get(key) is not None:
            raise _fail(
                f"{param}.{key}",
                f"{feature[0].upper()}{feature[1:]} are not supported by this "
                "gateway: name a server registered with it by its server_label.",
                "unsupported_parameter",
            )
    if tool.get("defer_loading"):
        raise _fail(
            f"{param}.defer_loading",
            "defer_loading is not supported by this gateway.",
            "unsupported_parameter",
        )
    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise _fail(
            f"{param}.server_label",
            "Missing required parameter: 'server_label'.",
            "missing_required_parameter",
        )
    if len(label) > MAX_LABEL:
        raise _fail(
            f"{param}.server_label", f"Invalid '{param}.server_label': at most {MAX_LABEL} characters."
        )
    approval = tool.get("require_approval", "never")
    if approval != "never":
        raise _fail(
            f"{param}.require_approval",
            "require_approval must be 'never': this gateway runs MCP tools without approvals "
            "(which tools a caller may use is decided by its permissions).",
            "unsupported_parameter",
        )
    url = tool.get("server_url")
    if url is not None and not isinstance(url, str):
        raise _fail(
            f"{param}.server_url",
            f"Invalid type for '{param}.server_url': expected a string.",
            "invalid_type",
        )
    description = tool.get("server_description")
    if description is not None and not isinstance(description, str):
        raise _fail(
            f"{param}.server_description",
            f"Invalid type for '{param}.server_description': expected a string.",
            "invalid_type",
        )
    callers = tool.get("allowed_callers")
    if callers is not None and callers != ["direct"]:
        raise _fail(
            f"{param}.allowed_callers",
            "allowed_callers must be ['direct'] on this gateway.",
            "unsupported_parameter",
        )
    spec = ServerTool(label, param, url=url)
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        for key in allowed:
            if key not in ("tool_names", "read_only"):
                raise _fail(
                    f"{param}.allowed_tools.{str(key)[:40]}",
                    f"Unknown parameter: '{param}.allowed_tools.{str(key)[:40]}'.",
                    "unknown_parameter",
                )
        if allowed.get("tool_names") is not None:
            spec.allowed = _names(allowed["tool_names"], f"{param}.allowed_tools.tool_names")
        read_only = allowed.get("read_only")
        if read_only is not None and not isinstance(read_only, bool):
            raise _fail(
                f"{param}.allowed_tools.read_only",
                f"Invalid type for '{param}.allowed_tools.read_only': expected a boolean.",
                "invalid_type",
            )
        spec.read_only = read_only
    elif allowed is not None:
        spec.allowed = _names(allowed, f"{param}.allowed_tools")
    return spec


def split_tools(tools: Sequence[Any]) -> tuple[list[ServerTool], list[Any]]:
    """(the ``mcp`` entries, validated; every other tool, as given)."""
    servers: list[ServerTool] = []
    others: list[Any] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            spec = _server_tool(tool, f"tools[{i}]")
            if spec.label in seen:
                raise _fail(
                    f"tools[{i}].server_label", f"The MCP server '{spec.label}' is named twice in 'tools'."
                )
            seen.add(spec.label)
            servers.append(spec)
        else:
            others.append(tool)
    return servers, others


def has_mcp_tools(request: Mapping[str, Any]) -> bool:
    tools = request.get("tools")
    return (
        bool(tools)
        and isinstance(tools, list)
        and any(isinstance(t, dict) and t.get("type") == "mcp" for t in tools)
    )


