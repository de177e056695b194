"""Anthropic's Message Batches API (``/v1/messages/batches``): the terminal of those requests,
following the OpenAI batches' design (service.py) on ``anthropic`` providers.

Every batch is recorded with its owner (``owned_objects``, kind ``msgbatch``): a caller is
answered only about its own, any other id is 404 as if it did not exist, and the list comes from
the records. A batch's requests are checked (message_requests.py) and sent to the one Anthropic
provider that serves their models; everything after that goes to the provider recorded with it.
The upstream's ``results_url`` is never shown: the batch carries the gateway's own results path.
An ended batch is priced once (message_costing.py, at ``files.batch_price_factor``): after a
caller's GET that sees it ended, by the poller, or before it is deleted. Each result is priced by
the model its request was sent for, recorded at creation next to the batch (kind ``msgmodel``),
not by the (possibly dated) id the upstream reports.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import quote

from switchboard.access.subscriptions import SubscriptionCache
from switchboard.context import Principal, Reply, RequestContext, Result, StreamReply
from switchboard.errors import GatewayError, InvalidRequest
from switchboard.http.anthropic.request import check_headers
from switchboard.http.errors import StoreUnavailable
from switchboard.http.files import message_costing
from switchboard.http.files.costing import ModelTotals
from switchboard.http.files.message_requests import MessageRequests, release
from switchboard.http.files.message_upstream import BATCHES_PATH, resolve_anthropic
from switchboard.http.files.multipart import safe_content_type
from switchboard.http.files.service import (
    FilesContext,
    FileService,
    owned_id,
    owner_of,
    query_value,
    tenant_of,
)
from switchboard.http.files.unrecorded import cancel, recorded_or_undone
from switchboard.http.files.upstream import Upstream, object_path
from switchboard.pipeline.subscription import require_approved
from switchboard.routing.live import LiveRouting
from switchboard.routing.router import Router
from switchboard.routing.table import Route
from switchboard.stores.protocols import MESSAGE_BATCH, MESSAGE_BATCH_MODELS, OwnedObject

log = logging.getLogger("switchboard.files")

ENDED = "ended"
PURPOSE = "/v1/messages"  # a batch's record: the endpoint its requests run on
MAX_LIMIT = 1000  # Anthropic's bound on a list page
_PATH = BATCHES_PATH.lstrip("/")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")  # as the records' ids (service.py)


class MessageBatches:
    def __init__(self, files: FileService, routing: LiveRouting, router: Router) -> None:
        self._files = files
        self._routing = routing
        unpriced = files.unpriced
        self._requests = MessageRequests(router, self._approved, None if unpriced is None else (
            lambda route: unpriced(route.target.provider, route.target.provider_type, route.target.model)))
        self._subscriptions: Callable[[], SubscriptionCache | None] = lambda: None
        files.pollers.append(self.poll_once)

    def use(self, subscriptions: Callable[[], SubscriptionCache | None]) -> None:
        self._subscriptions = subscriptions  # built when the stores open

    async def __call__(self, ctx: RequestContext) -> Result:
        assert isinstance(ctx, FilesContext) and ctx.principal is not None
        handler = getattr(self, "_" + ctx.action)
        result: Result = await handler(ctx, ctx.principal)
        return result

    async def _approved(self, p: Principal, route: Route) -> None:
        cache = self._subscriptions()
        if cache is None:
            raise StoreUnavailable("subscriptions are not loaded yet; try again shortly")
        await require_approved(cache, p, route.target.name, f"the model '{route.target.name}'")

    async def _owned(self, ctx: FilesContext, p: Principal) -> tuple[OwnedObject, Upstream]:
        def resolver(routing: LiveRouting, provider: str) -> Upstream | None:
            return resolve_anthropic(routing, provider, ctx.headers)

        return await self._files.owned(MESSAGE_BATCH, ctx.object_id, p, resolver=resolver)

    # -- the operations ----------------------------------------------------------------------

    async def _create_message_batch(self, ctx: FilesContext, p: Principal) -> Result:
        check_headers(ctx.headers)  # a workspace or user profile of the shared account: as /v1/messages
        checked = await self._requests.check(ctx.body, p)
        upstream = resolve_anthropic(self._routing, checked.provider, ctx.headers)
        if upstream is None:
            raise GatewayError(f"the provider '{checked.provider}' is not usable now", status=503,
                               code="files_provider_unavailable")
        sent = checked.sent
        # From the call on, carried to its end even when the caller leaves meanwhile: the
        # provider may create the batch all the same, which must not run there unrecorded.
        obj = await self._files.unrecorded.carried(self._created(upstream, checked.requests, sent, p,
                                                                 len(ctx.body)))
        return Reply(obj)

    async def _created(self, upstream: Upstream, requests: list[dict[str, Any]], sent: dict[str, Any],
                       p: Principal, size: int) -> dict[str, Any]:
        """The batch created upstream and recorded as ``p``'s (``sent``: its models record;
        ``size``: the create body's, which the upstream body's is about)."""
        try:
            obj = shown(await upstream.call("POST", BATCHES_PATH, {"requests": requests}, size=size))
        finally:
            await release(requests)  # sent (or not): not needed any more, freed off the loop
        batch_id = owned_id(obj, upstream)

        async def forget_models() -> None:
            await self._files.store.delete(MESSAGE_BATCH_MODELS, batch_id)

        async def record() -> None:
            # Before the batch's own row: a batch is never seen without it (the poller prices it).
            await self._files.store.put(OwnedObject(
                id=batch_id, kind=MESSAGE_BATCH_MODELS, provider=upstream.provider, tenant_id=tenant_of(p),
                owner=owner_of(p), key_id=p.key_id, team_id=p.team_id, user_id=p.user_id, purpose=PURPOSE,
                body=sent, costed=True,
            ))
            await self._files.store.put(OwnedObject(
                id=batch_id, kind=MESSAGE_BATCH, provider=upstream.provider, tenant_id=tenant_of(p),
                owner=owner_of(p), key_id=p.key_id, team_id=p.team_id, user_id=p.user_id, purpose=PURPOSE,
                status=_status(obj), body=obj,
            ))

        # Created upstream: a batch the store refuses is cancelled there, not left to run unseen.
        await recorded_or_undone(upstream, "message batch", batch_id,
                                 cancel(object_path(_PATH, batch_id, "/cancel")), record, forget_models)
        return obj

    async def _get_message_batch(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(ctx, p)
        obj = await self._refresh(owned, upstream)
        if obj.get("processing_status") == ENDED and not owned.costed:
            # Priced after the response is written: the caller does not wait for the results.
            async def settle(_: RequestContext) -> None:
                await self._settle(owned, upstream, obj)

            ctx.after(settle)
        return Reply(obj)

    async def _list_message_batches(self, ctx: FilesContext, p: Principal) -> Result:
        raw = query_value(ctx, "limit") or "20"
        # ASCII digits only: isdigit also takes '²' (int() then fails: a 500) and U+0665 (a 5).
        # At most 9 digits: int() refuses more than 4300 (sys.get_int_max_str_digits).
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= MAX_LIMIT:
            raise InvalidRequest(f"limit: Input should be an integer from 1 to {MAX_LIMIT}", param="limit")
        before, after = query_value(ctx, "before_id"), query_value(ctx, "after_id")
        for name, value in (("before_id", before), ("after_id", after)):
            if value is not None and not _ID.match(value):
                raise InvalidRequest(f"{name}: not a batch id", param=name)
        if before is not None and after is not None:
            raise InvalidRequest("give before_id or after_id, not both", param="before_id")
        limit = int(raw)
        store = self._files.store
        # Newest first; before_id: the page of newer batches right before it (read upwards).
        try:
            rows = await store.list_owned(MESSAGE_BATCH, tenant_of(p), owner_of(p), after=before or after,
                                          limit=limit + 1, newest_first=before is None)
        except ValueError:
            # Unknown, deleted or another caller's, one answer: an empty page would read as the end.
            name, cursor = ("after_id", after) if before is None else ("before_id", before)
            raise InvalidRequest(f"{name}: no message batch '{str(cursor)[:100]}' in this list",
                                 param=name) from None
        more = len(rows) > limit
        page = rows[:limit]
        if before is not None:
            page.reverse()
        data = [dict(r.body) for r in page]
        return Reply({"data": data, "has_more": more, "first_id": data[0].get("id") if data else None,
                      "last_id": data[-1].get("id") if data else None})

    async def _cancel_message_batch(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(ctx, p)
        obj = shown(await upstream.call("POST", object_path(_PATH, owned.id, "/cancel")))
        await self._files.store.update(MESSAGE_BATCH, owned.id, obj, _status(obj))
        return Reply(obj)

    async def _delete_message_batch(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(ctx, p)
        if not owned.costed:
            # Its results go with it: an ended batch is priced first, else the delete waits.
            try:
                obj = await self._refresh(owned, upstream)
            except GatewayError as err:
                if err.status == 404:  # deleted there already (its results with it): forgotten here too
                    await self._forget(owned.id)
                raise
            if obj.get("processing_status") == ENDED:
                await self._settle(owned, upstream, obj)
                again = await self._files.store.get(MESSAGE_BATCH, owned.id)
                if again is not None and not again.costed:
                    raise StoreUnavailable("the batch's cost could not be recorded yet; try the delete again "
                                           "shortly")
        try:
            obj = await upstream.call("DELETE", object_path(_PATH, owned.id))
        except GatewayError as err:
            if err.status == 404:  # gone upstream already: forgotten here too
                await self._forget(owned.id)
            raise
        await self._forget(owned.id)
        return Reply(obj)

    async def _forget(self, batch_id: str) -> None:
        await self._files.store.delete(MESSAGE_BATCH, batch_id)
        await self._files.store.delete(MESSAGE_BATCH_MODELS, batch_id)

    async def _message_batch_results(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(ctx, p)
        stream = await upstream.open(message_costing.results_path(owned.id))
        ctype = stream.headers.get("content-type") or "application/binary"
        ctx.response_headers["content-type"] = safe_content_type(ctype)

        async def relay() -> AsyncGenerator[list[dict[str, Any]], None]:
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for piece in chunks:
                    yield [{"data": piece}]

        return StreamReply(relay(), close=stream.close)

    # -- state and cost ----------------------------------------------------------------------

    async def _refresh(self, owned: OwnedObject, upstream: Upstream) -> dict[str, Any]:
        """The batch fresh from the upstream (as callers see it), recorded as last seen."""
        obj = shown(await upstream.call("GET", object_path(_PATH, owned.id)))
        await self._files.store.update(MESSAGE_BATCH, owned.id, obj, _status(obj))
        return obj

    async def _settle(self, owned: OwnedObject, upstream: Upstream, obj: dict[str, Any]) -> bool:
        limit = self._files.settings.max_output_bytes

        async def count() -> dict[str, ModelTotals]:
            sent = await self._files.store.get(MESSAGE_BATCH_MODELS, owned.id)
            note = sent.body if sent else None
            return await message_costing.totals(upstream, owned.id, limit, note,
                                                self._files.thresholds(upstream, note))

        return await self._files.settle(owned, upstream, message_costing.as_finished(obj), count)

    async def poll_once(self) -> int:
        """The open message batches (least recently seen first, a bounded number): those that
        have ended are priced; returns how many were priced now."""
        try:
            store = self._files.store
        except StoreUnavailable:
            return 0
        done = 0
        for owned in await store.open_batches(self._files.settings.poll_batches, MESSAGE_BATCH):
            upstream = resolve_anthropic(self._routing, owned.provider)
            try:
                if upstream is None:
                    raise LookupError(f"the provider '{owned.provider}' is no longer configured")
                obj = await self._refresh(owned, upstream)
            except Exception as exc:
                log.warning("message batch %s: poll failed: %s", owned.id, exc)
                with contextlib.suppress(Exception):  # seen all the same: the others come first next
                    await store.update(MESSAGE_BATCH, owned.id, owned.body, owned.status)
                continue
            if obj.get("processing_status") == ENDED:
                done += await self._settle(owned, upstream, obj)
        return done


def shown(obj: dict[str, Any]) -> dict[str, Any]:
    """The batch as callers see it: its results at the gateway's own path, never the upstream's
    URL (relative: the SDKs resolve it against the base URL they were given)."""
    batch_id = obj.get("id")
    if obj.get("results_url") and isinstance(batch_id, str):
        return {**obj, "results_url": f"{BATCHES_PATH}/{quote(batch_id, safe='')}/results"}
    return obj


def _status(obj: dict[str, Any]) -> str | None:
    status = obj.get("processing_status")
    return status[:32] if isinstance(status, str) else None
