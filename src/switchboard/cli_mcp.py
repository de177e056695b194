"""``switchboard mcp servers|tools|call``: the MCP gateway as a caller sees it, for operators.

The commands are an MCP client of the gateway's ``/mcp`` endpoint (streamable HTTP, JSON-RPC),
authenticated by a key: what they show is what that key may see and call (the master key: every
server). ``servers`` is the servers' state from that point of view: a server whose tools were
listed is up; one left out of the list (down, slow, malformed, waiting for the user's OAuth
authorization) is shown with the gateway's notice. See docs/mcp.md, "CLI".
"""

from __future__ import annotations

import http.client
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Annotated, Any

import typer

from switchboard.admin_client import url_problem
from switchboard.cli_output import err, error, line, out, table

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="A Switchboard key (its tools).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_URL = "http://127.0.0.1:4000"
TIMEOUT = 120.0
SEPARATOR = "__"
NOTICES = "switchboard/notices"
MAX_PAGES = 100
MAX_REPLY_BYTES = 256 * 1024 * 1024

mcp_app = typer.Typer(no_args_is_help=True, help="The MCP gateway as a key sees it: its servers and their "
                      "state, its tools, and calling one (through /mcp).")


class McpFailure(Exception):
    """The gateway refused, could not be reached, or answered with a JSON-RPC error."""


class McpClient:
    """JSON-RPC over HTTP POST to ``<url>/mcp`` (stateless: no session to keep)."""

    def __init__(self, url: str, key: str) -> None:
        self.base = url.rstrip("/")
        self.url = self.base + "/mcp"
        self.key = key
        self._ids = itertools.count(1)

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        problem = url_problem(self.base)
        if problem:
            raise McpFailure(problem)
        request = urllib.request.Request(self.url, data=json.dumps(message).encode(), method="POST")  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.key}")
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json, text/event-stream")
        request.add_header("MCP-Protocol-Version", "2025-06-18")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310 - http(s) only
                kind = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                data = resp.read(MAX_REPLY_BYTES)
        except urllib.error.HTTPError as exc:
            raise McpFailure(f"HTTP {exc.code}: {_message(exc.read(64 * 1024))}") from None
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
            # HTTPException: an answer cut short or malformed (a gateway stopped mid-answer).
            reason = getattr(exc, "reason", exc)
            raise McpFailure(f"cannot reach the gateway at {self.url}: {reason}") from None
        reply = _reply(data, kind, rid)
        error = reply.get("error")
        if isinstance(error, dict):
            raise McpFailure(_said(error))
        result = reply.get("result")
        if not isinstance(result, dict):
            raise McpFailure("the gateway sent a reply without a result")
        return result

    def tools(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every tool listed (all pages), and the notices of the servers left out."""
        tools: list[dict[str, Any]] = []
        notices: list[str] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = self.request("tools/list", {"cursor": cursor} if cursor else None)
            tools += [t for t in result.get("tools") or () if isinstance(t, dict)]
            meta = result.get("_meta") or {}
            notices += [n for n in meta.get(NOTICES) or () if isinstance(n, str)]
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return tools, notices


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:500] or "(no body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return _said(error)
    return str(data)[:500]


def _said(error: dict[str, Any]) -> str:
    """An error's message and, when it has one, the gateway's code: a JSON-RPC error keeps it in
    ``data`` (a refusal over HTTP too: 401, 429), the OpenAI shape beside the message."""
    detail = error.get("data")
    named = detail.get("code") if isinstance(detail, dict) else error.get("code")
    code = f" ({named})" if isinstance(named, str) and named else ""
    return f"{error.get('message') or 'error'}{code}"


def _reply(data: bytes, kind: str, rid: int) -> dict[str, Any]:
    """The JSON-RPC reply to ``rid``: the body (JSON), or the matching event of an SSE stream."""
    if kind == "text/event-stream":
        for block in data.decode(errors="replace").split("\n\n"):
            payload = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
            if not payload:
                continue
            try:
                message = json.loads(payload)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("id") == rid and "method" not in message:
                return message
        raise McpFailure("the gateway's stream ended without a reply")
    try:
        message = json.loads(data)
    except ValueError:
        raise McpFailure("the gateway sent a reply that is not JSON") from None
    if not isinstance(message, dict):
        raise McpFailure("the gateway sent a reply that is not a JSON-RPC message")
    return message


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except McpFailure as exc:
        error(exc)
        raise typer.Exit(1) from None


def _server_of(name: str) -> str:
    return name.split(SEPARATOR, 1)[0]


@mcp_app.command("servers")
def servers(url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """The MCP servers this key may use and their state: up (its tools listed) or left out (the
    gateway's notice says why: down, slow, malformed, authorization needed)."""
    client = McpClient(url, key)
    tools, notices = _run(client.tools)
    rows: dict[str, dict[str, Any]] = {}
    for tool in tools:
        name = _server_of(str(tool.get("name", "")))
        rows.setdefault(name, {"server": name, "state": "up", "tools": 0, "notice": None})["tools"] += 1
    for notice in notices:
        name, _, reason = notice.partition(":")
        name = name.strip()
        rows[name] = {"server": name, "state": "left out", "tools": 0, "notice": reason.strip()}
    data = [rows[name] for name in sorted(rows)]
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(table(("server", "state", "tools", "notice"),
                    ((row["server"], row["state"], row["tools"], row["notice"] or "") for row in data)))


@mcp_app.command("tools")
def tools(
    server: Annotated[str | None, typer.Option("--server", help="Only this server's tools.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """The tools this key may call, named <server>__<tool>."""
    client = McpClient(url, key)
    listed, notices = _run(client.tools)
    if server is not None:
        listed = [t for t in listed if _server_of(str(t.get("name", ""))) == server]
        notices = [n for n in notices if n.partition(":")[0].strip() == server]
    if as_json:
        out.print_json(json.dumps(listed))
        return
    rows = []
    for tool in listed:
        description = str(tool.get("description") or "").replace("\n", " ")
        rows.append((str(tool.get("name")), description[:100] + ("…" if len(description) > 100 else "")))
    out.print(table(("name", "description"), rows))
    for notice in notices:
        err.print(line(("left out:", "yellow"), f" {notice}"))


def _value(text: str) -> Any:
    """An ``--arg`` value: JSON when it reads as JSON (numbers, true, objects...), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@mcp_app.command("call")
def call(
    name: Annotated[str, typer.Argument(help="The tool, as <server>__<tool>.")],
    arg: Annotated[list[str] | None, typer.Option("--arg", help="An argument, key=value (repeatable; "
                                                  "the value is read as JSON when it is JSON).")] = None,
    arguments: Annotated[str | None, typer.Option("--json", help="The arguments as one JSON object.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print the whole result as JSON.")] = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Call a tool through the gateway (its permissions, limits, budgets and logs apply). Exits 1
    when the tool reports an error."""
    given: dict[str, Any] = {}
    if arguments is not None:
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            error(f"--json is not JSON: {exc}")
            raise typer.Exit(2) from None
        if not isinstance(parsed, dict):
            error("--json must be a JSON object")
            raise typer.Exit(2)
        given.update(parsed)
    for item in arg or ():
        field, sep, value = item.partition("=")
        if not sep or not field:
            error(f"--arg {item!r}: expected key=value")
            raise typer.Exit(2)
        given[field] = _value(value)
    client = McpClient(url, key)
    result = _run(lambda: client.request("tools/call", {"name": name, "arguments": given}))
    if raw:
        out.print_json(json.dumps(result))
    else:
        for block in result.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "text":
                out.print(line(str(block.get("text", ""))))
            else:
                out.print_json(json.dumps(block))
        if not result.get("content") and result.get("structuredContent") is not None:
            out.print_json(json.dumps(result["structuredContent"]))
    if result.get("isError"):
        raise typer.Exit(1)
