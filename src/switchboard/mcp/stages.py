"""The stages of one ``tools/call`` (gateway.py ``mcp_stages()``) and its terminal.

A tool call runs the gateway's own stages like a model call: the tool is resolved first
(:class:`ToolStage`; an unknown tool is refused before anything else), then the record
(:class:`ToolRecordStage`: one usage-ledger row, operation ``mcp``, model ``<server>__<tool>``,
whatever the outcome), permissions and arguments (:class:`ToolCheckStage`: nothing is sent or
counted against limits for a call refused there), the request log's bodies (CaptureStage), the
rate limits (RateLimitStage: the key's rpm, and ``limits.models["<server>__<tool>"]`` as the
per-tool limit), the budgets (:class:`ToolBudgetStage`: the server's per-call price reserved,
then settled) and the terminal (:class:`ToolCall`: the call upstream).

The canonical request of a tool call (``ctx.request``) is ``{"model": "<server>__<tool>",
"tool": Tool, "arguments": {...}, "id": <json-rpc id>}``, and for a tool loop's call
``"tool_call_id"``: the id of the model's tool call it runs (on its span; never sent).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from switchboard.config.schema import BudgetsConfig
from switchboard.context import Reply, RequestContext, Result, Spent
from switchboard.errors import GatewayError, InvalidRequest
from switchboard.mcp.relay import CALLS, RELAY
from switchboard.mcp.toolbox import McpToolbox, Tool
from switchboard.mcp.upstream import tool_failed
from switchboard.pipeline.budgets import BudgetExceeded, BudgetUnavailable
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.settle import Settlement
from switchboard.spend.ledger import LedgerWriter

log = logging.getLogger("switchboard.mcp")

DEFAULT_TENANT = "default"
PROVIDER = "mcp"
# A tool's own error result (``isError``): the record's code, and the span's error.type (the MCP
# semantic conventions' value).
TOOL_ERROR = "tool_error"
_NANO = Decimal(10**9)
_HOLD = 3600.0


def price_nano(tool: Tool) -> int:
    """The tool's per-call price in billionths of a dollar (``tool_prices``, else
    ``price_per_call`` of its server)."""
    server = tool.upstream.server
    usd = server.tool_prices.get(tool.name, server.price_per_call)
    return int((Decimal(str(usd)) * _NANO).to_integral_value(ROUND_HALF_EVEN))


class ToolStage:
    """Resolve ``params.name`` among the caller's servers; fill the canonical request."""

    name = "mcp_tool"

    def __init__(self, toolbox: McpToolbox) -> None:
        self._toolbox = toolbox

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        params = ctx.request.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            raise InvalidRequest("tools/call needs params.name (a string)", param="name",
                                 code="invalid_params")
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if isinstance(token, bool | float | list | dict):
            # MCP's progress token is a string or an integer: the caller's mistake, refused here
            # rather than sent on and recorded as the server's error. An integer beyond 64 bits
            # is read (orjson) as a float: refused with 1.5.
            raise InvalidRequest("params._meta.progressToken must be a string or an integer",
                                 param="_meta.progressToken", code="invalid_params")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        tool = await self._toolbox.resolve(ctx.principal, params["name"])
        ctx.request["model"] = tool.exposed
        ctx.request["tool"] = tool
        ctx.request["arguments"] = arguments
        ctx.prompt_tokens = 0  # a tool call counts 0 tokens against token limits
        return await call_next(ctx)


class ToolCheckStage:
    """Permissions (mcp/permissions.py) and the arguments (size, input schema): a call refused
    here is recorded and nothing is sent or counted against limits and budgets."""

    name = "mcp_check"

    def __init__(self, toolbox: McpToolbox) -> None:
        self._toolbox = toolbox

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        tool: Tool = ctx.request["tool"]
        self._toolbox.check(ctx.principal, tool)
        self._toolbox.check_arguments(tool, ctx.request["arguments"])
        return await call_next(ctx)


class ToolRecordStage:
    """One usage-ledger row per tool call (the request log's row), however it ends."""

    name = "mcp_record"

    def __init__(self, writer: Callable[[], LedgerWriter | None]) -> None:
        self._writer = writer

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        tool: Tool = ctx.request["tool"]
        try:
            result = await call_next(ctx)
        except GatewayError as error:
            self._record(ctx, tool, error.status, error.code, 0)
            raise
        except Exception:  # a fault of the gateway's: the caller is answered 500
            self._record(ctx, tool, 500, "internal_error", 0)
            raise
        except BaseException:  # cancelled: the caller left or the gateway is stopping
            self._record(ctx, tool, 499, "cancelled", 0)
            raise
        body = result.body if isinstance(result, Reply) else {}
        outcome = body.get("result") if isinstance(body, dict) else None
        # Checked by the transport already (a non-boolean isError is no result): this cannot raise.
        failed = isinstance(outcome, dict) and tool_failed(tool.upstream.name, outcome)
        nano = price_nano(tool)
        ctx.spent = Spent(nano, 0)
        self._record(ctx, tool, 200, TOOL_ERROR if failed else None, nano)
        if failed and ctx.trace is not None:  # the trace stage (run before) ends the span with it
            ctx.trace.error = TOOL_ERROR
        return result

    def _record(self, ctx: RequestContext, tool: Tool, status: int, code: str | None, nano: int) -> None:
        writer = self._writer()
        if writer is None:
            return
        elapsed = time.perf_counter() - ctx.started
        p = ctx.principal
        tags: tuple[str, ...] = ()
        if p is None:
            tenant, key, team, user = DEFAULT_TENANT, None, None, None
        else:
            tenant, key, team, user, tags = (p.tenant_id or DEFAULT_TENANT, p.key_id, p.team_id, p.user_id,
                                             p.tags)
        metadata: dict[str, Any] = {"operation": "mcp", "server": tool.upstream.name, "tool": tool.name}
        if code == TOOL_ERROR:
            metadata["tool_error"] = True
        ms = round(elapsed * 1000)
        row = (
            ctx.request_id, tenant, key, team, user, tool.exposed, PROVIDER, status,
            0, 0, nano, ms, time.time_ns() // 1000 - round(elapsed * 1_000_000), metadata,
            0, 0, 0, 0, False, None, False, code if status >= 400 else None, tool.name, tags,
            0, 0, 0, 0, tool.upstream.name, None, None, None, ctx.record_id, ctx.entry_id(),
        )
        try:
            writer.spool(row)
        except Exception:  # accounting never fails the call it accounts for
            log.exception("request %s: tool call record not written", ctx.request_id)


class ToolBudgetStage:
    """Reserve the tool's per-call price on every budget in force, settle it after the call."""

    name = "mcp_budgets"

    def __init__(self, config: BudgetsConfig, book: Callable[[], Any]) -> None:
        self._config = config
        self._book = book
        self._warned = -math.inf

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        book = self._book()
        principal = ctx.principal
        if book is None or principal is None or principal.tenant_id is None:
            return await call_next(ctx)
        tool: Tool = ctx.request["tool"]
        try:
            budgets = book.in_force_now(principal)
            if budgets is None:
                budgets = await book.in_force(principal)
            if not budgets:
                return await call_next(ctx)
            nano = price_nano(tool)
            charges = book.charges(budgets, [nano if b.unit == "usd" else 0 for b in budgets],
                                   time.perf_counter() - ctx.started)  # the ledger record's period
            reserved_at = time.monotonic()
            reserved = await book.reserve(ctx.reservation_id(), budgets, charges, _HOLD)
        except GatewayError:
            raise
        except Exception as exc:
            if self._config.on_store_error == "closed":
                raise BudgetUnavailable("budgets cannot be checked right now; try again shortly") from None
            now = time.monotonic()
            if now - self._warned >= 10:
                self._warned = now
                log.warning("budgets unavailable (%s): tool calls are admitted", type(exc).__name__)
            return await call_next(ctx)
        if (i := reserved.refused) is not None:
            budget = budgets[i]
            raise BudgetExceeded(
                f"the {budget.scope} budget ({budget.id}, {budget.shown(budget.limit)} {budget.period}) is "
                f"exhausted: {budget.shown(reserved.used[i])} spent or reserved, this tool call costs "
                f"{budget.shown(charges[i].amount)}", headers={"x-switchboard-budget-scope": budget.scope})
        try:
            return await call_next(ctx)
        finally:
            ctx.after(Settlement.of_budgets(book, budgets, charges, reserved_at, _HOLD))


class ToolCall:
    """The terminal: the call upstream, answered as the JSON-RPC reply to the client."""

    def __init__(self, toolbox: McpToolbox) -> None:
        self._toolbox = toolbox

    async def __call__(self, ctx: RequestContext) -> Result:
        tool: Tool = ctx.request["tool"]
        params = ctx.request.get("params") or {}
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else None
        started = time.perf_counter()
        relay = RELAY.get()  # progress relayed to the client (mcp/relay.py)
        token = meta.get("progressToken") if meta is not None else None
        if relay is not None and (isinstance(token, bool) or not isinstance(token, str | int)):
            relay = None
        elif relay is not None:
            relay.token = token
        try:
            with CALLS.running(ctx.principal, ctx.request.get("id")):  # cancellable by the client
                result = await self._toolbox.call(tool, ctx.principal, ctx.request["arguments"], meta,
                                                  relay.notify if relay is not None else None)
        finally:
            ctx.upstream_seconds += time.perf_counter() - started
        return Reply({"jsonrpc": "2.0", "id": ctx.request.get("id"), "result": result})
