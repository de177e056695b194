"""The state of the Responses API: each request's call, stored responses and their readers.

A ``POST /v1/responses`` is decoded into a :class:`Call` (kept here, keyed by its context, until
the request is over). :class:`HistoryStage` runs right after decoding: with
``previous_response_id`` it reads the stored response (one primary-key read) and puts its
conversation before this turn's input. Once the response has been written to the client, a
post-response callback stores it (``store`` defaults to true): the write is off the response's
path. Until that write is done the response is held in memory (``pending``), so a client that
continues it at once finds it on this instance. With several processes serving (instances or
workers sharing Redis), the next request may reach another one, which only the database tells:
there the write starts as the reply is ready and the reply waits for it (``reply_waits``, at most
``SHARED_WRITE_SECONDS``), so a client that has the response finds it on every one of them.

Stored responses belong to the caller's tenant and owner (the key's lineage, so a rotated key
keeps them, else the principal id); anyone else is answered 404, as if it did not exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import orjson

from switchboard.background import stop_task
from switchboard.config.schema import ResponsesConfig
from switchboard.context import Principal, Reply, RequestContext, Result
from switchboard.errors import GatewayError, InvalidRequest, NotFound, unraised
from switchboard.http.responses.request import Translated
from switchboard.http.responses.response import JSON, assistant_messages, new_id
from switchboard.pipeline.access import refuse_unless_allowed
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.invoke import invoke as chat_invoke
from switchboard.pipeline.native import exchange_for
from switchboard.stores.protocols import ResponseStore, StoredResponse

log = logging.getLogger("switchboard.responses")

# The stored responses, with or without /v1 (as the chat endpoints take both).
PREFIX = ("/v1/responses/", "/responses/")
MAX_ID = 64
# With several processes serving: the longest a reply waits for its stored response's write. A
# healthy database takes milliseconds; one that does not answer holds the reply this long at
# most, and the write goes on behind it (the after-response callback waits for it).
SHARED_WRITE_SECONDS = 2.0


def owner_of(principal: Principal | None) -> tuple[str | None, str]:
    if principal is None:
        return None, ""
    return principal.tenant_id, principal.owner


@dataclass(slots=True)
class Call:
    """One Responses request under way."""

    id: str
    created_at: int
    translated: Translated
    history: list[JSON] = field(default_factory=list)
    response: JSON | None = None  # the Response object sent, once complete
    # Why a translated deployment cannot serve it (a feature only native deployments have).
    refused: GatewayError | None = None
    # Why a native deployment cannot serve it on the gateway's own credential (it names objects of
    # the provider account: request.account_objects).
    shared: GatewayError | None = None
    native: bool = False  # the attempt under way went to a native deployment
    # The stream's encoder (api.py): an error event written apart from it continues its numbering.
    events: Any = None


_ITEM_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}


def _part(part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    if part.get("type") == "output_text":
        return {"annotations": [], **part}
    if part.get("type") == "input_image":
        return {"detail": "auto", **part}
    return part


def _items(items: list[JSON]) -> list[JSON]:
    """Input items as ``input_items`` lists them (the openai SDK's item types): each with an id,
    a type and a status, message content as parts."""
    out = []
    for item in items:
        kind = item.get("type", "message")
        entry = {"id": item.get("id") or new_id(_ITEM_PREFIX.get(kind, "item_")), **item, "type": kind}
        if kind == "message":
            content = entry.get("content")
            if isinstance(content, str):
                part = "output_text" if entry.get("role") == "assistant" else "input_text"
                content = [{"type": part, "text": content}]
            if isinstance(content, list):
                entry["content"] = [_part(p) for p in content]
        if kind != "reasoning":
            entry.setdefault("status", "completed")
        out.append(entry)
    return out


class Responses:
    """Calls under way, stored responses, the reading endpoints and the purge of expired ones."""

    def __init__(self, config: ResponsesConfig, store: Callable[[], ResponseStore | None]) -> None:
        self.config = config
        self._store = store
        self._calls: dict[int, Call] = {}
        self.pending: dict[str, StoredResponse] = {}
        # Several processes serve (Redis shared; set at start): a reply waits for its write.
        self.shared = False
        self._writes: dict[str, asyncio.Task[None]] = {}  # those writes, by response id
        self._purge: asyncio.Task[None] | None = None

    # -- calls -----------------------------------------------------------------------------------

    def begin(self, ctx: RequestContext, translated: Translated) -> Call:
        call = Call(new_id("resp_"), int(time.time()), translated)
        self._calls[id(ctx)] = call
        ctx.after(self._finish)
        return call

    def call(self, ctx: RequestContext) -> Call:
        return self._calls[id(ctx)]

    def found(self, ctx: RequestContext) -> Call | None:
        """The request's call, if it is still under way."""
        return self._calls.get(id(ctx))

    async def invoke(self, ctx: RequestContext) -> Result:
        """The terminal of POST /v1/responses: as is to a native deployment (the pass-through
        exchange of pipeline/native.py), else translated; decided per attempt."""
        call = self._calls.get(id(ctx))
        if call is None:  # a model call of the MCP tool loop (mcp/loop.py): the canonical request
            return await chat_invoke(ctx)
        route = ctx.route
        call.native = route is not None and exchange_for(ctx, route) is not None
        if route is not None and call.native:
            # Objects of the account: on the caller's own one, or one whose provider entry lets
            # every caller name them (allow_account_objects, Target.own_account).
            if call.shared is not None and ctx.caller_credential is None and not route.target.own_account:
                raise unraised(call.shared)  # copies: the call keeps its refusals
            ctx.native_body = (call.translated.body, call.history)
        elif call.refused is not None:
            raise unraised(call.refused)
        return await chat_invoke(ctx)

    def count(self, terminal: Handler) -> Handler:
        """The terminal of POST /v1/responses/input_tokens: ``terminal`` (the count), once what the
        count cannot see (``Call.refused``, kept by its decoding) is refused, as ``invoke`` refuses
        it for a create: after the key's model access and routing."""

        async def counted(ctx: RequestContext) -> Result:
            call = self._calls.get(id(ctx))
            if call is not None and call.refused is not None:
                raise unraised(call.refused)
            return await terminal(ctx)

        return counted

    def complete(self, ctx: RequestContext, response: JSON) -> None:
        """The response as sent; kept (``pending``) until it is stored after the response (before
        it, with several processes serving: ``reply_waits``)."""
        call = self._calls.get(id(ctx))
        if call is None or call.response is not None:  # (the first final response is the one sent)
            return
        call.response = response
        if not call.translated.store:
            return
        tenant, owner = owner_of(ctx.principal)
        now = datetime.now(UTC)
        conversation = [
            *call.history,
            *call.translated.turn,
            *assistant_messages(response.get("output") or []),
        ]
        self.pending[call.id] = StoredResponse(
            id=call.id,
            tenant_id=tenant,
            owner=owner,
            created_at=now,
            expires_at=now + timedelta(days=self.config.retention_days),
            response=response,
            input_items=_items(call.translated.items),
            conversation=conversation,
        )
        if self.shared:  # (called off the loop for a large reply: the write starts on it)
            ctx.reply_waits = partial(self._written, call.id)

    async def _written(self, response_id: str) -> None:
        """Start the write of the pending response and wait for it, within the bound."""
        record = self.pending.get(response_id)
        if record is None:
            return
        write = self._writes[response_id] = asyncio.get_running_loop().create_task(self._write(record))
        await asyncio.wait((write,), timeout=SHARED_WRITE_SECONDS)

    async def _finish(self, ctx: RequestContext) -> None:
        call = self._calls.pop(id(ctx), None)
        if call is None:
            return
        write = self._writes.pop(call.id, None)
        record = self.pending.get(call.id)
        try:
            if write is not None:
                await write  # started before the reply left; its failure is logged here
            elif record is not None:
                await self._write(record)
        finally:
            self.pending.pop(call.id, None)

    async def _write(self, record: StoredResponse) -> None:
        size = len(orjson.dumps([record.response, list(record.input_items), list(record.conversation)]))
        store = self._store()
        if size > self.config.max_stored_bytes:
            log.warning(
                "response %s not stored: %d bytes, more than responses.max_stored_bytes", record.id, size
            )
        elif store is not None:
            await store.put(record)

    # -- reading ---------------------------------------------------------------------------------

    async def find(self, response_id: str, principal: Principal | None) -> StoredResponse | None:
        """The caller's stored response ``response_id``; None when missing, expired or another's."""
        if not response_id or len(response_id) > MAX_ID or "\x00" in response_id:
            return None  # no stored id holds a NUL (PostgreSQL could not even compare one)
        record = self.pending.get(response_id)
        if record is None:
            store = self._store()
            record = await store.get(response_id) if store is not None else None
        if record is None or (record.tenant_id, record.owner) != owner_of(principal):
            return None
        return record

    async def history(self, ctx: RequestContext) -> None:
        call = self.call(ctx)
        previous = call.translated.previous_response_id
        if previous is None:
            _not_empty(ctx.request["messages"])
            return
        record = await self.find(previous, ctx.principal)
        if record is None:
            # Read before the key's model access (model_access, later in the chain): a key is
            # told 403 for a model it may not use first, as for any other request.
            principal = ctx.principal
            if principal is not None and principal.allowed_models is not None:
                refuse_unless_allowed(ctx.request.get("model"), principal.allowed_models)
            raise InvalidRequest(
                f"Previous response with id '{previous[:100]}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        call.history = [dict(m) for m in record.conversation]
        ctx.expanded = True
        # Its size, which the body's does not tell: a long conversation is counted and translated
        # off the event loop, as a large body is (RequestContext.large).
        ctx.added_bytes += len(orjson.dumps(call.history))
        messages = ctx.request["messages"]
        # A call the previous response was cut in (left out of its conversation): this turn's
        # output for it would be a tool message without its call, which upstreams refuse.
        cut = _cut_calls(record.response)
        if cut:
            messages[:] = _without_outputs(messages, cut)
            call.translated.turn[:] = _without_outputs(call.translated.turn, cut)
            # A native deployment is sent the client's own input: left out there too.
            given = call.translated.body.get("input")
            if isinstance(given, list):
                call.translated.body = {**call.translated.body, "input": _without_output_items(given, cut)}
        at = (
            1
            if messages and messages[0].get("role") == "system" and call.translated.echo.get("instructions")
            else 0
        )
        messages[at:at] = call.history
        _not_empty(messages)

    # -- GET / DELETE /v1/responses/{id}, GET .../input_items, POST .../cancel -----------------------

    def _parts(self, ctx: RequestContext) -> list[str]:
        for prefix in PREFIX:
            if ctx.path.startswith(prefix):
                return ctx.path[len(prefix) :].split("/")
        return []

    async def _record(self, ctx: RequestContext, response_id: str) -> StoredResponse:
        record = await self.find(response_id, ctx.principal)
        if record is None:
            raise NotFound(
                f"Response with id '{response_id[:100]}' not found.",
                param="response_id",
                code="response_not_found",
            )
        return record

    async def retrieve(self, ctx: RequestContext) -> Result:
        parts = self._parts(ctx)
        if ctx.method != "DELETE" and len(parts) == 2 and parts[1] == "input_items":  # GET, HEAD
            return await self.input_items(ctx, parts[0])
        if ctx.method == "POST" and len(parts) == 2 and parts[1] == "cancel":
            await self._record(ctx, parts[0])  # another caller's, or none: 404 as for GET
            # Only a background response can be cancelled (as OpenAI answers), and the gateway
            # runs none: every response it stored was complete before it was stored.
            raise InvalidRequest(
                "Only responses created with background=true can be cancelled; the gateway answers "
                "every response within its request (background mode is not supported), so this "
                "one is already finished.",
            )
        if len(parts) != 1:
            raise NotFound(f"Unknown URL: {ctx.method} {ctx.path[:200]}", code="unknown_url")
        record = await self._record(ctx, parts[0])
        if ctx.method != "DELETE" and _query(ctx.query).get("stream", "false") != "false":
            # OpenAI streams again only a background response (created with stream: true), which
            # the gateway never runs: answering the JSON body instead would hand the SDK's
            # retrieve(stream=True) a stream without one event.
            raise InvalidRequest(
                "This response cannot be streamed: only background responses can be, and the gateway "
                "answers every response within its request; retrieve it without 'stream'.",
                param="stream",
                code="unsupported_parameter",
            )
        if ctx.method == "DELETE":
            self.pending.pop(record.id, None)
            store = self._store()
            if store is not None:
                await store.delete(record.id)
            return Reply({"id": record.id, "object": "response", "deleted": True})
        return Reply(dict(record.response))

    async def input_items(self, ctx: RequestContext, response_id: str) -> Result:
        query = _query(ctx.query)
        limit_text = query.get("limit", "20")
        # ASCII digits only: isdigit also takes '²', which int() refuses (a 500); and few of
        # them: int() refuses more than 4300 digits (sys.get_int_max_str_digits), another 500.
        digits = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 9
        if not digits or not 1 <= int(limit_text) <= 100:
            raise InvalidRequest(
                "Invalid 'limit': expected an integer between 1 and 100.", param="limit", code="invalid_value"
            )
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest(
                "Invalid 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value"
            )
        record = await self._record(ctx, response_id)
        items = list(record.input_items)
        if order == "desc":
            items.reverse()
        after = query.get("after")
        if after:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise InvalidRequest(
                    f"Invalid 'after': no input item '{after[:100]}'.", param="after", code="invalid_value"
                )
            items = items[ids.index(after) + 1 :]
        limit = int(limit_text)
        page = items[:limit]
        return Reply(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            }
        )

    # -- retention -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._purge is None:
            self._purge = asyncio.create_task(self._purging(), name="responses-purge")

    async def _purging(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval_seconds)
            await self.purge_once()

    async def purge_once(self) -> int:
        store = self._store()
        if store is None:
            return 0
        total = 0
        try:
            while (deleted := await store.purge(datetime.now(UTC))) > 0:
                total += deleted
        except Exception:
            log.exception("purging expired responses failed")
        return total

    async def close(self) -> None:
        task, self._purge = self._purge, None
        await stop_task(task)


def _not_empty(messages: list[JSON]) -> None:
    if not any(m.get("role") != "system" for m in messages):
        raise InvalidRequest(
            "Invalid 'input': there is nothing to respond to (no input items).",
            param="input",
            code="invalid_value",
        )


def _query(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True))


class HistoryStage:
    """Right after decoding a Responses request: the stored conversation it continues."""

    name = "responses_history"

    def __init__(self, responses: Responses) -> None:
        self._responses = responses

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        await self._responses.history(ctx)
        return await call_next(ctx)


def _without_outputs(messages: list[JSON], calls: set[str]) -> list[JSON]:
    return [m for m in messages if not (m.get("role") == "tool" and m.get("tool_call_id") in calls)]


def _without_output_items(items: list[Any], calls: set[str]) -> list[Any]:
    return [i for i in items if not (isinstance(i, dict) and i.get("type") == "function_call_output"
                                     and i.get("call_id") in calls)]


def _cut_calls(response: Mapping[str, Any]) -> set[str]:
    """The call ids of a stored response's function calls left ``incomplete`` (cut by a failure
    or by ``max_output_tokens``)."""
    output = response.get("output")
    return {item["call_id"] for item in output or () if isinstance(item, dict)
            and item.get("type") == "function_call" and item.get("status") == "incomplete"
            and isinstance(item.get("call_id"), str)} if isinstance(output, list) else set()
