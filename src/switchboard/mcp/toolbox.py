"""The aggregated toolbox: tools, resources and prompts of every server a caller may use.

Names: a tool or prompt ``t`` of server ``s`` is exposed as ``s__t`` (server names neither
contain ``__`` nor end with ``_``, so the first ``__`` is where the server's name ends, whatever
the tool's name: ``s___t`` is tool ``_t`` of ``s``). A resource URI ``u`` of server ``s`` is exposed as
``mcp://gateway/s/u`` (and templates the same way), so two servers' URIs never collide.

Lists are gathered from the servers in parallel, each bounded by ``mcp.list_timeout_seconds``:
a server that is down, slow, erroring or waiting for the user's authorization is left out, with
one notice per server in the result's ``_meta`` (``switchboard/notices``) and in the log; the
others' items are listed. Descriptions are untrusted text: cut to ``mcp.max_description_chars``
and never interpreted. Tools are filtered by permission (mcp/permissions.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.apis.schemas import (
    JSONSCHEMA,
    REFERENCING_ERRORS,
    bounded,
    matches_unbounded,
    nothing,
    patterns_bounded,
)
from switchboard.config.mcp import SEPARATOR, McpConfig
from switchboard.context import Principal
from switchboard.errors import GatewayError, InvalidRequest, NotFound, PayloadTooLarge, PermissionDenied
from switchboard.mcp.interfaces import AuthorizationRequired, Listing
from switchboard.mcp.permissions import Permissions
from switchboard.mcp.registry import Registry
from switchboard.mcp.relay import Notify
from switchboard.mcp.upstream import AuthorizationNeeded, Upstream, identity

log = logging.getLogger("switchboard.mcp")

URI_PREFIX = "mcp://gateway/"
NOTICES = "switchboard/notices"
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")
_MAX_PAGES = 20  # pages of one server's list followed, at most
_MAX_ITEMS = 2000  # items of one server's list kept, at most
_CACHE_MAX = 4096


Runner = Callable[[Principal | None, str, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


class UnknownTool(NotFound):
    code = "mcp_unknown_tool"


class ToolDenied(PermissionDenied):
    code = "mcp_tool_denied"


class InvalidArguments(InvalidRequest):
    code = "mcp_invalid_arguments"


class ArgumentsTooLarge(PayloadTooLarge):
    code = "mcp_arguments_too_large"


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool resolved for one call: its server, its name there, and its definition."""

    upstream: Upstream
    name: str  # as the server names it
    exposed: str  # <server>__<tool>
    definition: Mapping[str, Any]


def split_name(name: str) -> tuple[str, str] | None:
    # Unambiguous: no server name holds "__" or ends with "_" (config/mcp.py server_name_problem).
    server, sep, item = name.partition(SEPARATOR)
    return (server, item) if sep and server and item else None


class McpToolbox:
    def __init__(self, config: McpConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.permissions = Permissions(config)
        # (server key, credential identity) -> (expires, the server's tools); see _server_key
        self._tools: dict[tuple[tuple[str | None, str, str | None], str],
                          tuple[float, list[dict[str, Any]]]] = {}
        self._validators: dict[tuple[str, str, int], tuple[Mapping[str, Any], Any]] = {}
        # Runs a tools/call through the gateway's stages (set by the gateway): used by call_tool.
        self.runner: Runner | None = None

    # -- listing -----------------------------------------------------------------------------------

    async def _gather(self, principal: Principal | None,
                      fetch: Callable[[Upstream], Awaitable[list[dict[str, Any]]]]) -> tuple[
                          list[tuple[Upstream, list[dict[str, Any]]]], list[str]]:
        upstreams = self.registry.visible(principal)
        wait = self.config.list_timeout_seconds

        async def one(upstream: Upstream) -> list[dict[str, Any]]:
            async with asyncio.timeout(wait + 1):  # each page is bounded by ``wait`` too
                return await fetch(upstream)

        results = await asyncio.gather(*(one(u) for u in upstreams), return_exceptions=True)
        found: list[tuple[Upstream, list[dict[str, Any]]]] = []
        notices: list[str] = []
        for upstream, result in zip(upstreams, results, strict=True):
            if isinstance(result, BaseException):
                notice = _notice(upstream.name, result, wait)
                notices.append(notice)
                log.warning("MCP list: %s", notice)
            else:
                found.append((upstream, result))
        return found, notices

    async def _list(self, upstream: Upstream, method: str, key: str, principal: Principal | None) -> list[
            dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"cursor": cursor} if cursor else None
            result = await upstream.request(method, params, principal, wait=self.config.list_timeout_seconds)
            page = result.get(key)
            if not isinstance(page, list):
                raise GatewayError(f"'{key}' is not a list", status=502, code="mcp_malformed_reply")
            items += [item for item in page if isinstance(item, dict)]
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor or len(items) >= _MAX_ITEMS:
                break
        return items[:_MAX_ITEMS]

    async def server_tools(self, upstream: Upstream, principal: Principal | None) -> list[dict[str, Any]]:
        """The server's tools as it lists them (for this caller's credentials), cached briefly."""
        try:
            headers = await upstream.credentials.headers(upstream.server, principal)
        except AuthorizationRequired as required:
            raise AuthorizationNeeded(required) from None
        key = (_server_key(upstream), identity(headers))
        now = time.monotonic()
        cached = self._tools.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        tools = [t for t in await self._list(upstream, "tools/list", "tools", principal)
                 if isinstance(t.get("name"), str) and _TOOL_NAME.match(t["name"])]
        if len(self._tools) >= _CACHE_MAX:
            self._tools.clear()
        self._tools[key] = (now + self.config.tools_cache_seconds, tools)
        return tools

    async def list_tools(self, principal: Principal | None) -> Listing:
        rules = self.permissions.rules(principal)
        found, notices = await self._gather(principal, lambda u: self.server_tools(u, principal))
        items = []
        for upstream, tools in found:
            for tool in tools:
                exposed = upstream.name + SEPARATOR + tool["name"]
                if self.permissions.server_permits(upstream.server, tool["name"]) and \
                        self.permissions.permits(rules, exposed):
                    items.append(self._shown_tool(tool, exposed))
        return Listing(items, notices)

    def _shown_tool(self, tool: Mapping[str, Any], exposed: str) -> dict[str, Any]:
        shown = {k: v for k, v in tool.items() if k in ("title", "description", "inputSchema",
                                                         "outputSchema", "annotations", "_meta", "icons")}
        shown["name"] = exposed
        for field in ("title", "description"):
            if field in shown:
                shown[field] = self._text(shown[field])
        if not isinstance(shown.get("inputSchema"), dict):
            shown["inputSchema"] = {"type": "object"}
        return shown

    def _text(self, value: Any) -> str:
        text = value if isinstance(value, str) else ""
        limit = self.config.max_description_chars
        return text if len(text) <= limit else text[:limit] + "…"

    async def list_prompts(self, principal: Principal | None) -> Listing:
        found, notices = await self._gather(
            principal, lambda u: self._list(u, "prompts/list", "prompts", principal))
        items = []
        for upstream, prompts in found:
            for prompt in prompts:
                name = prompt.get("name")
                if not isinstance(name, str) or not name:
                    continue
                shown = dict(prompt, name=upstream.name + SEPARATOR + name)
                for field in ("title", "description"):
                    if field in shown:
                        shown[field] = self._text(shown[field])
                items.append(shown)
        return Listing(items, notices)

    async def list_resources(self, principal: Principal | None) -> Listing:
        return await self._resources(principal, "resources/list", "resources", "uri")

    async def list_resource_templates(self, principal: Principal | None) -> Listing:
        return await self._resources(principal, "resources/templates/list", "resourceTemplates",
                                     "uriTemplate")

    async def _resources(self, principal: Principal | None, method: str, key: str, field: str) -> Listing:
        found, notices = await self._gather(principal, lambda u: self._list(u, method, key, principal))
        items = []
        for upstream, resources in found:
            for resource in resources:
                uri = resource.get(field)
                if not isinstance(uri, str) or not uri:
                    continue
                shown = dict(resource)
                shown[field] = f"{URI_PREFIX}{upstream.name}/{uri}"
                for text in ("title", "description"):
                    if text in shown:
                        shown[text] = self._text(shown[text])
                items.append(shown)
        return Listing(items, notices)

    # -- reading, getting ----------------------------------------------------------------------------

    async def read_resource(self, principal: Principal | None, uri: str) -> dict[str, Any]:
        if not uri.startswith(URI_PREFIX):
            raise NotFound(f"unknown resource {uri[:200]!r}: resources here are named "
                           f"{URI_PREFIX}<server>/<uri>", code="mcp_unknown_resource")
        server, _, inner = uri[len(URI_PREFIX):].partition("/")
        upstream = self.registry.get(server, principal)
        if upstream is None or not inner:
            raise NotFound(f"unknown resource {uri[:200]!r}", code="mcp_unknown_resource")
        result = await upstream.request("resources/read", {"uri": inner}, principal)
        contents = result.get("contents")
        if isinstance(contents, list):
            result = dict(result, contents=[_named(upstream.name, c) for c in contents])
        return result

    async def get_prompt(self, principal: Principal | None, name: str,
                         arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        parts = split_name(name)
        upstream = self.registry.get(parts[0], principal) if parts else None
        if parts is None or upstream is None:
            raise NotFound(f"unknown prompt {name[:200]!r}", code="mcp_unknown_prompt")
        params: dict[str, Any] = {"name": parts[1]}
        if arguments is not None:
            params["arguments"] = arguments
        result = await upstream.request("prompts/get", params, principal)
        messages = result.get("messages")
        if isinstance(messages, list):
            result = dict(result, messages=[
                dict(m, content=_linked(upstream.name, m["content"])) if isinstance(m, dict)
                and isinstance(m.get("content"), dict) else m for m in messages])
        return result

    # -- tools/call ----------------------------------------------------------------------------------

    async def resolve(self, principal: Principal | None, name: str) -> Tool:
        """The tool ``name`` (``server__tool``) among the servers this caller may use; UnknownTool
        when there is none (another tenant's server included). Permission is :meth:`check`'s."""
        parts = split_name(name)
        upstream = self.registry.get(parts[0], principal) if parts else None
        if parts is None or upstream is None:
            raise UnknownTool(f"unknown tool {name[:200]!r}: tools are named <server>__<tool>; "
                              "see tools/list")
        tool_name = parts[1]
        async with asyncio.timeout(self.config.list_timeout_seconds + 1):
            tools = await self.server_tools(upstream, principal)
        for tool in tools:
            if tool["name"] == tool_name:
                return Tool(upstream, tool_name, name, tool)
        raise UnknownTool(f"unknown tool {name[:200]!r}: the server '{upstream.name}' has no such tool")

    def check(self, principal: Principal | None, tool: Tool) -> None:
        """ToolDenied unless every permission layer lets ``principal`` use ``tool``."""
        if not self.permissions.server_permits(tool.upstream.server, tool.name) or \
                not self.permissions.permits(self.permissions.rules(principal), tool.exposed):
            raise ToolDenied(f"you may not use the tool {tool.exposed!r}")

    def check_arguments(self, tool: Tool, arguments: Any) -> None:
        """Refuse arguments larger than ``mcp.max_argument_bytes`` or failing the tool's input
        schema, before anything is sent to the server."""
        if not isinstance(arguments, dict):
            raise InvalidArguments("arguments must be an object", param="arguments")
        size = len(orjson.dumps(arguments))
        if size > self.config.max_argument_bytes:
            raise ArgumentsTooLarge(f"the arguments are {size} bytes, more than the "
                                    f"{self.config.max_argument_bytes} allowed (mcp.max_argument_bytes)")
        schema = tool.definition.get("inputSchema")
        if not isinstance(schema, dict):
            return
        key = (tool.upstream.name, tool.name, id(schema))
        entry = self._validators.get(key)
        if entry is None or entry[0] is not schema:
            try:
                cls = JSONSCHEMA().validators.validator_for(schema)
                cls.check_schema(schema)
                # An empty registry: a server's schema may point anywhere (``$ref`` to a URL);
                # the gateway never fetches what a reference names. Its patterns are matched
                # against caller input under a timeout (a server's ``^(a|a)*$`` would hold the
                # gateway otherwise).
                validator = None if matches_unbounded(schema) else bounded(cls)(schema, registry=nothing())
            except Exception:  # a server's broken schema: nothing to validate against
                validator = None
            if len(self._validators) >= _CACHE_MAX:
                self._validators.clear()
            entry = self._validators[key] = (schema, validator)
        validator = entry[1]
        if validator is None:
            return
        try:
            with patterns_bounded():  # the schema's patterns share one bound
                error = JSONSCHEMA().exceptions.best_match(validator.iter_errors(arguments))
        # A reference outside the schema: the server checks what it names.
        except REFERENCING_ERRORS().Unresolvable:
            return
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise InvalidArguments(f"arguments do not match the input schema of {tool.exposed!r} at "
                                   f"{where}: {error.message[:500]}", param="arguments")

    async def call(self, tool: Tool, principal: Principal | None, arguments: Mapping[str, Any],
                   meta: Mapping[str, Any] | None = None, notify: Notify | None = None) -> dict[str, Any]:
        """Call the resolved tool upstream (no stages: the gateway's chain wraps this); the
        server's notifications (progress) go to ``notify``."""
        params: dict[str, Any] = {"name": tool.name, "arguments": arguments}
        if meta:
            params["_meta"] = meta
        result = await tool.upstream.request("tools/call", params, principal, notify=notify)
        content = result.get("content")
        if isinstance(content, list):
            result = dict(result, content=[_linked(tool.upstream.name, block) for block in content])
        return result

    async def call_tool(self, principal: Principal | None, name: str,
                        arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """:class:`Toolbox`'s call: through the gateway's stages when the gateway set a runner."""
        if self.runner is not None:
            return await self.runner(principal, name, arguments)
        tool = await self.resolve(principal, name)
        self.check(principal, tool)
        self.check_arguments(tool, arguments)
        return await self.call(tool, principal, arguments)


def _named(server: str, item: Any) -> Any:
    """A resource (its ``uri``) of ``server`` named as the gateway serves it."""
    if isinstance(item, dict) and isinstance(item.get("uri"), str):
        return dict(item, uri=f"{URI_PREFIX}{server}/{item['uri']}")
    return item


def _linked(server: str, block: Any) -> Any:
    """A content block of ``server``'s (a tool's result, a prompt's message) with the resource it
    links (``resource_link``) or embeds (``resource``) named as the gateway serves it: the client
    reads it through ``resources/read`` here, never from the server itself."""
    if not isinstance(block, dict):
        return block
    if block.get("type") == "resource_link":
        return _named(server, block)
    if block.get("type") == "resource" and isinstance(block.get("resource"), dict):
        return dict(block, resource=_named(server, block["resource"]))
    return block


def _server_key(upstream: Upstream) -> tuple[str | None, str, str | None]:
    """What tells one server's tool list from another's: two tenants may each have a server of
    one name, and a changed URL is another server, so the name alone would share lists."""
    server = upstream.server
    return server.tenant, server.name, server.url


def _notice(server: str, error: BaseException, wait: float) -> str:
    if isinstance(error, AuthorizationRequired | AuthorizationNeeded):
        url = (error.authorize_url if isinstance(error, AuthorizationRequired)
               else error.extra["authorize_url"])
        return f"{server}: needs your authorization: {url}"
    if isinstance(error, TimeoutError):
        return f"{server}: left out, no answer within {wait:g} s"
    if isinstance(error, GatewayError):
        return f"{server}: left out, {error.message}"
    return f"{server}: left out, {type(error).__name__}"
