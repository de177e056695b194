"""The files and batches operations: the chain's terminal for /v1/files and /v1/batches, the
ownership records, and the poller that prices finished batches.

Every object created through the gateway is recorded with its owner (tenant, key, team, user);
a caller is answered only about its own, anything else is 404 as if it did not exist. Lists come
from the records (never the upstream's whole list). A new file goes to the provider the request
names through a model, else the tenant's configured one, else ``files.provider``; a batch goes
where its input file is; everything after that to the provider recorded with the object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qs

from switchboard.access.cache import principal_of
from switchboard.access.rules import model_allowed
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.background import stop_task
from switchboard.catalog import Catalog
from switchboard.config.schema import FilesConfig
from switchboard.context import Principal, Reply, RequestContext, Result, Spent, StreamReply
from switchboard.errors import GatewayError, InvalidRequest, NotFound, PayloadTooLarge, PermissionDenied
from switchboard.http.asgi import Receive
from switchboard.http.errors import StoreUnavailable
from switchboard.http.files import multipart
from switchboard.http.files.batch_access import BatchAccess
from switchboard.http.files.costing import BatchPricer, ModelTotals
from switchboard.http.files.expiry import EXPIRY_FIELDS, check_output_expiry, checked_field
from switchboard.http.files.unrecorded import Unrecorded, cancel, delete, recorded_or_undone
from switchboard.http.files.upstream import FILE_TYPES, Upstream, object_path, resolve
from switchboard.http.openai_api import parse_object
from switchboard.routing import prerouting
from switchboard.routing.live import LiveRouting
from switchboard.routing.router import Router
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.plan import nano
from switchboard.spend.cost import Prices
from switchboard.stores.protocols import (
    BATCH,
    BATCH_MODELS,
    FILE,
    MESSAGE_BATCH,
    FileStore,
    KeyStore,
    OwnedObject,
    UsageLedger,
    UsageRecord,
    utcnow,
)
from switchboard.upstream.request import file_pieces

log = logging.getLogger("switchboard.files")

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses"})
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
OUTPUT_PURPOSE = "batch_output"  # a batch's output or error file, recorded when first seen (_seen)
AZURE = "azure"  # a provider type
MODEL_HEADER = "x-switchboard-model"
DEFAULT_TENANT = "default"
MAX_FIELD_BYTES = 4096
MULTIPART_OVERHEAD = 64 * 1024  # the form's own bytes around the file, within the body limit
SPOOL_IN_MEMORY = 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")
_PURPOSE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a filter; stored purposes are cut to 64
_FORM_FIELDS = frozenset({"file", "purpose", "model", "expires_after[anchor]", "expires_after[seconds]"})
_NAMES = {FILE: "File", BATCH: "Batch", MESSAGE_BATCH: "Message Batch"}
_BATCH_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata",
                           "output_expires_after"})


@dataclass(slots=True)
class FilesContext(RequestContext):
    """A files or batches request: which action, its path parameter, and (uploads) the body
    stream, read by the terminal as it arrives instead of by the edge."""

    action: str = ""
    chain: str = ""  # which chain runs it: files, batches or message_batches (edge.py)
    object_id: str = ""
    receive: Receive | None = None
    params: dict[str, list[str]] = field(default_factory=dict)


# What a budget gates (pipeline/budget_gate.py): the requests that lead to a cost later.
GATED = frozenset({"upload", "create_batch", "create_message_batch"})


def budget_gated(ctx: RequestContext) -> bool:
    return isinstance(ctx, FilesContext) and ctx.action in GATED


def tenant_of(p: Principal) -> str:
    return p.tenant_id or DEFAULT_TENANT


def owner_of(p: Principal) -> str:
    return p.owner


class FileService:
    def __init__(self, settings: FilesConfig, routing: LiveRouting, router: Router, catalog: Catalog,
                 prices: Prices, refuse_unpriced: bool = False) -> None:
        self.settings = settings
        self._routing = routing
        self._router = router
        self._pricer = BatchPricer(catalog, routing, prices, settings.batch_price_factor,
                                   settings.max_output_bytes)
        # spend.refuse_unpriced: a batch running a model the ledger could not price is refused.
        self.unpriced = self._pricer.unpriced if refuse_unpriced else None
        # Each model's long-context threshold, by which a message batch's results are priced.
        self.thresholds = self._pricer.thresholds
        self._access = BatchAccess(routing, settings.max_upload_bytes, self.unpriced)
        self._store: FileStore | None = None
        self._ledger: UsageLedger | None = None
        self._budgets: Callable[[], BudgetBook | None] = lambda: None
        self._charged: Callable[[UsageRecord], None] | None = None  # the metrics' batch_charged
        self._keys: KeyStore | None = None
        self._poller: asyncio.Task[None] | None = None
        # Batches being priced by this instance, set when done: a second look waits for the first.
        self._settling: dict[str, asyncio.Event] = {}
        # Objects created upstream being recorded: carried on when their caller leaves (unrecorded.py).
        self.unrecorded = Unrecorded()
        # More rounds of the poller: the message batches' (message_batches.py).
        self.pollers: list[Callable[[], Awaitable[int]]] = []
        self.costed = 0  # batches this instance recorded in the ledger (tests, logs)

    # -- life --------------------------------------------------------------------------------

    def start(self, store: FileStore | None, ledger: UsageLedger,
              budgets: Callable[[], BudgetBook | None] | None = None, keys: KeyStore | None = None,
              subscriptions: Callable[[], SubscriptionCache | None] | None = None,
              charged: Callable[[UsageRecord], None] | None = None) -> None:
        self._store = store
        self._charged = charged
        if subscriptions is not None:
            self._access.use(subscriptions)
        self._ledger = ledger
        if budgets is not None:
            self._budgets = budgets
        self._keys = keys
        if store is not None:
            self._poller = asyncio.create_task(self._poll_forever(), name="batch-poller")

    async def close(self) -> None:
        await stop_task(self._poller)
        self._poller = None
        await self.unrecorded.close()

    @property
    def store(self) -> FileStore:
        if self._store is None:
            raise StoreUnavailable("files and batches need the database, which is not open yet; try again "
                                   "shortly")
        return self._store

    # -- the terminal ------------------------------------------------------------------------

    async def __call__(self, ctx: RequestContext) -> Result:
        assert isinstance(ctx, FilesContext) and ctx.principal is not None
        handler: Callable[[FilesContext, Principal], Any] = getattr(self, "_" + ctx.action)
        result: Result = await handler(ctx, ctx.principal)
        return result

    # -- files -------------------------------------------------------------------------------

    async def _upload(self, ctx: FilesContext, p: Principal) -> Result:
        assert ctx.receive is not None
        limit = self.settings.max_upload_bytes
        boundary = multipart.boundary_of(ctx.headers.get("content-type"))
        declared = ctx.headers.get("content-length")
        # ASCII digits only (isdigit takes "²", which int() refuses); the HTTP server's parser
        # refuses any other Content-Length first, this holds whichever server runs us. Leading
        # zeros may make it longer than int() reads (4300 digits): the reader's limit holds then.
        if (declared is not None and declared.isascii() and declared.isdigit() and len(declared) <= 18
                and int(declared) > limit + MULTIPART_OVERHEAD):
            raise PayloadTooLarge(f"the upload is {declared} bytes; files may be at most {limit} bytes")
        reader = multipart.MultipartReader(ctx.receive, boundary, limit + MULTIPART_OVERHEAD)
        fields: dict[str, str] = {}
        spooled: IO[bytes] | None = None
        file_part: multipart.Part | None = None
        try:
            while (part := await reader.next_part()) is not None:
                if part.name not in _FORM_FIELDS:
                    raise InvalidRequest(f"unknown form field '{part.name[:100]}'", param=part.name[:100],
                                         code="unknown_parameter")
                if part.name != "file":
                    if part.name in fields:
                        raise InvalidRequest(f"the form field '{part.name}' is given twice", param=part.name,
                                             code="duplicate_parameter")
                    fields[part.name] = checked_field(part.name, await reader.value(MAX_FIELD_BYTES))
                    continue
                if file_part is not None:
                    raise InvalidRequest("send one file per upload", param="file", code="duplicate_parameter")
                if part.filename is None:
                    raise multipart.MalformedMultipart("the 'file' part must be a file (with a filename)")
                file_part = part
                if "purpose" in fields:
                    break  # the common order (fields first): the file is piped as it arrives
                spooled = await _spool(reader.data(), limit)  # the file first: kept on disk meanwhile
            if file_part is None:
                raise InvalidRequest("the form has no 'file' part", param="file",
                                     code="missing_required_parameter")
            purpose = fields.get("purpose")
            if purpose is None:
                raise InvalidRequest("the form has no 'purpose' field", param="purpose",
                                     code="missing_required_parameter")
            if purpose not in PURPOSES:
                raise InvalidRequest(f"unknown purpose '{purpose[:100]}'; expected one of "
                                     f"{', '.join(sorted(PURPOSES))}", param="purpose", code="invalid_value")
            expiry = [name for name in EXPIRY_FIELDS if name in fields]
            if len(expiry) == 1:  # both or neither, before the file (fields after it are not sent)
                missing = next(name for name in EXPIRY_FIELDS if name not in fields)
                raise InvalidRequest(f"'{expiry[0]}' needs '{missing}' too, before the file", param=missing,
                                     code="missing_required_parameter")
            upstream = self._choose(ctx, p, fields.get("model"))
            sent = [("purpose", purpose)]
            sent += [(k, v) for k, v in fields.items() if k.startswith("expires_after")]
            boundary_out = multipart.new_boundary()
            failure: list[BaseException] = []
            data = file_pieces(spooled) if spooled is not None else _rest(reader, limit, set(fields))
            form = multipart.encode(boundary_out, sent, multipart.safe_filename(file_part.filename),
                                    multipart.safe_content_type(file_part.content_type), data)
            body = _watched(form, failure)
            try:
                obj = await upstream.upload(f"multipart/form-data; boundary={boundary_out}", body)
            except Exception:
                if not failure:
                    raise
                # Else the caller's body went wrong while it was being sent on: that is raised.
            if failure:
                # Outside the handler: the upload's error, caused by this one, would be its
                # context, a reference cycle; taken out of the list and raised unnamed, as its
                # traceback holds this frame, which holds the list.
                raise failure.pop()
        finally:
            reader.close()
            if spooled is not None:
                spooled.close()
        file_id = owned_id(obj, upstream)

        async def record() -> None:
            await self._own(FILE, obj, upstream, p, purpose)

        # Stored upstream: a file the store refuses is deleted there, not left to take space unseen.
        # (A caller that leaves while the provider answers does not cancel an upload: nothing
        # watches for it once the body is read, http/files/edge.py; the file is recorded.)
        await self.unrecorded.record(upstream, "file", file_id, delete(object_path("files", file_id)), record)
        return Reply(obj)

    def _choose(self, ctx: FilesContext, p: Principal, model: str | None) -> Upstream:
        """The provider of a new file: the named model's (its first OpenAI or Azure deployment
        inside the caller's regions), else the tenant's configured one, else ``files.provider``
        (a provider with a deployment inside them). The file's content goes there: a caller held
        to regions is refused (403 ``region_not_allowed``) rather than sent elsewhere, as a chat
        request is."""
        regions = p.allowed_regions
        model = model or ctx.headers.get(MODEL_HEADER) or query_value(ctx, "model")
        if model:
            if p.allowed_models is not None and not model_allowed(model, p.allowed_models):
                raise PermissionDenied(f"you may not use the model '{model[:200]}'", param="model",
                                       code="model_not_allowed")
            group = self._router.group(model)
            if group is None:
                raise NotFound(f"the model '{model[:200]}' does not exist or you do not have access to it",
                               param="model", code="model_not_found")
            filing = tuple(r for r in group.deployments if r.target.provider_type in FILE_TYPES)
            placed = prerouting.eligible(filing, regions, None)
            if filing and not placed:
                raise prerouting.outside_regions(f"the model '{model[:200]}'", regions, param="model")
            for route in placed:
                found = resolve(self._routing, route.target.provider)
                if found is not None:
                    return found
            raise InvalidRequest(f"the model '{model[:200]}' has no OpenAI or Azure deployment; files and "
                                 "batches go to one", param="model", code="unsupported_model")
        name = self.settings.tenant_providers.get(tenant_of(p)) or self.settings.provider
        if name is None:
            raise InvalidRequest(f"name the provider through a model: the form field 'model' or the header "
                                 f"'{MODEL_HEADER}' (no files.provider is configured)", param="model",
                                 code="missing_required_parameter")
        found = resolve(self._routing, name)
        if found is None:
            raise GatewayError(f"the files provider '{name}' is not an OpenAI or Azure provider that is "
                               "configured", status=503, code="files_provider_unavailable")
        # A provider is where its deployments are: inside the regions when one of them is.
        routes = self._routing.all_routes() if regions is not None else []
        if regions is not None and not any(prerouting.in_regions(r, regions) for r in routes
                                           if r.target.provider == name):
            raise prerouting.outside_regions(f"the files provider '{name}'", regions, param="model",
                                             hint="; name a model served in them (the form field 'model')")
        return found

    async def _list_files(self, ctx: FilesContext, p: Principal) -> Result:
        purpose = query_value(ctx, "purpose")
        if purpose is not None and not _PURPOSE.match(purpose):
            raise InvalidRequest("'purpose' is not a purpose", param="purpose", code="invalid_value")
        return Reply(await self._page(FILE, ctx, p, purpose))

    async def _get_file(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(FILE, ctx.object_id, p)
        obj = await upstream.call("GET", object_path("files", owned.id))
        await self.store.update(FILE, owned.id, obj, None)
        return Reply(obj)

    async def _delete_file(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(FILE, ctx.object_id, p)
        if owned.purpose == OUTPUT_PURPOSE:
            await self._settle_before_output_deleted(owned)
        try:
            obj = await upstream.call("DELETE", object_path("files", owned.id))
        except GatewayError as err:
            if err.status == 404:  # gone upstream already (expired): forgotten here too
                await self.store.delete(FILE, owned.id)
            raise
        await self.store.delete(FILE, owned.id)
        return Reply(obj)

    async def _settle_before_output_deleted(self, output: OwnedObject) -> None:
        """A finished batch is priced from its output file: one not priced yet is priced before
        its output goes (as a message batch is before its delete), else its cost could never be
        read again. When that fails, 503 and nothing is deleted: the delete may be tried again."""
        owned = await self.store.unpriced_batch_of_output(output.tenant_id, output.owner, output.id)
        upstream = resolve(self._routing, owned.provider) if owned is not None else None
        if owned is None or upstream is None:
            return
        obj = dict(owned.body)  # as last seen, when its output was
        if obj.get("status") not in TERMINAL:
            obj = await upstream.call("GET", object_path("batches", owned.id))
            await self._seen(owned, upstream, obj)
        if obj.get("status") not in TERMINAL or obj.get("output_file_id") != output.id:
            return
        await self.settle(owned, upstream, obj)
        again = await self.store.get(BATCH, owned.id)
        if again is not None and not again.costed:
            raise StoreUnavailable(f"this file is the output of the batch {owned.id}, whose cost could not "
                                   "be recorded yet (it is read from this file); try the delete again "
                                   "shortly")

    async def _file_content(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(FILE, ctx.object_id, p)
        stream = await upstream.open(object_path("files", owned.id, "/content"))
        ctype = stream.headers.get("content-type") or "application/octet-stream"
        ctx.response_headers["content-type"] = multipart.safe_content_type(ctype)
        length = stream.headers.get("content-length")
        # The length of what is relayed: not the upstream's when it came compressed (and is
        # decompressed on the way).
        # Passed on only as ASCII digits (both upstream parsers refuse another Content-Length
        # today; a header the gateway writes must not depend on it).
        if (length is not None and length.isascii() and length.isdigit()
                and not stream.headers.get("content-encoding")):
            ctx.response_headers["content-length"] = length

        async def relay() -> AsyncGenerator[list[dict[str, Any]], None]:
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for piece in chunks:
                    yield [{"data": piece}]

        return StreamReply(relay(), close=stream.close)

    # -- batches -----------------------------------------------------------------------------

    async def _create_batch(self, ctx: FilesContext, p: Principal) -> Result:
        body = parse_object(ctx.body)
        for name in body:
            if name not in _BATCH_FIELDS:
                raise InvalidRequest(f"unknown parameter '{str(name)[:100]}'", param=str(name)[:100],
                                     code="unknown_parameter")
        source, endpoint = body.get("input_file_id"), body.get("endpoint")
        window = body.get("completion_window")
        if not isinstance(source, str) or not source:
            raise InvalidRequest("'input_file_id' must be a file id", param="input_file_id",
                                 code="missing_required_parameter" if source is None else "invalid_type")
        if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:  # an array cannot be looked up
            raise InvalidRequest(f"'endpoint' must be one of {', '.join(sorted(ENDPOINTS))}",
                                 param="endpoint", code="invalid_value")
        if window != "24h":
            raise InvalidRequest("'completion_window' must be '24h'", param="completion_window",
                                 code="invalid_value")
        expiry = body.get("output_expires_after")
        if expiry is not None:
            check_output_expiry(expiry)
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or not all(
                isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                for k, v in metadata.items())):
            raise InvalidRequest("'metadata' must be at most 16 string pairs (keys up to 64 characters, "
                                 "values up to 512)", param="metadata", code="invalid_value")
        owned, upstream = await self._owned(FILE, source, p, param="input_file_id")
        # Its lines run as written: a caller with scoped model access may not reach past it, and
        # no caller may have the upstream read another's file.
        # An Azure line's model is a deployment, which its answer reports by the base model's id:
        # each line's is noted, to price its answer by the deployment that ran it.
        note = await self._access.check(p, upstream, owned.id, str(endpoint), self.check_owned,
                                        note=upstream.type == AZURE)
        # From the call on, carried to its end even when the caller leaves meanwhile: the
        # provider may create the batch all the same, which must not run there unrecorded.
        sent = {**body, "input_file_id": owned.id}
        created = self._batch_created(upstream, sent, p, str(endpoint), note)
        return Reply(await self.unrecorded.carried(created))

    async def _batch_created(self, upstream: Upstream, body: dict[str, Any], p: Principal,
                             endpoint: str, note: dict[str, Any] | None) -> dict[str, Any]:
        """The batch ``body`` created on ``upstream`` and recorded as ``p``'s (with ``note``,
        its lines' models, when given)."""
        obj = await upstream.call("POST", "/batches", body)
        batch_id = owned_id(obj, upstream)

        async def forget_note() -> None:
            await self.store.delete(BATCH_MODELS, batch_id)

        async def record() -> None:
            if note is not None:  # before the batch's own row: the poller prices what it finds
                await self.store.put(OwnedObject(
                    id=batch_id, kind=BATCH_MODELS, provider=upstream.provider, tenant_id=tenant_of(p),
                    owner=owner_of(p), key_id=p.key_id, team_id=p.team_id, user_id=p.user_id,
                    purpose=endpoint, body=note, costed=True))
            await self._own(BATCH, obj, upstream, p, endpoint)

        # Created upstream: a batch the store refuses is cancelled there, not left to run unseen.
        undo = cancel(object_path("batches", batch_id, "/cancel"))
        await recorded_or_undone(upstream, "batch", batch_id, undo, record,
                                 forget_note if note is not None else None)
        return obj

    async def _list_batches(self, ctx: FilesContext, p: Principal) -> Result:
        return Reply(await self._page(BATCH, ctx, p, None))

    async def _get_batch(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(BATCH, ctx.object_id, p)
        obj = await upstream.call("GET", object_path("batches", owned.id))
        await self._seen(owned, upstream, obj)
        if obj.get("status") in TERMINAL and not owned.costed:
            # Priced after the response is written: the caller does not wait for the output file.
            async def settle(_: RequestContext) -> None:
                await self.settle(owned, upstream, obj)

            ctx.after(settle)
        return Reply(obj)

    async def _cancel_batch(self, ctx: FilesContext, p: Principal) -> Result:
        owned, upstream = await self._owned(BATCH, ctx.object_id, p)
        obj = await upstream.call("POST", object_path("batches", owned.id, "/cancel"))
        await self._seen(owned, upstream, obj)
        return Reply(obj)

    # -- ownership ---------------------------------------------------------------------------

    async def check_owned(self, file_id: str, p: Principal, param: str) -> None:
        """404 unless ``file_id`` is one of the caller's files, as ``GET /v1/files/{id}`` answers:
        for a model request naming a file (http/files/references.py)."""
        await self._owned(FILE, file_id, p, param=param)

    async def _owned(self, kind: str, object_id: str, p: Principal,
                     param: str | None = None) -> tuple[OwnedObject, Upstream]:
        return await self.owned(kind, object_id, p, param)

    async def owned(self, kind: str, object_id: str, p: Principal, param: str | None = None,
                    resolver: Callable[[LiveRouting, str], Upstream | None] = resolve,
                    ) -> tuple[OwnedObject, Upstream]:
        """The caller's own object and its provider (found by ``resolver``); 404 for anything
        else (another key's too)."""
        found = await self.store.get(kind, object_id) if _ID.match(object_id) else None
        if found is None or found.tenant_id != tenant_of(p) or found.owner != owner_of(p):
            name = _NAMES.get(kind, "Batch")
            shown = object_id if _ID.match(object_id) else "(invalid)"
            raise NotFound(f"No such {name} object: {shown}", param=param or "id", code="not_found")
        upstream = resolver(self._routing, found.provider)
        if upstream is None:
            raise GatewayError(f"the provider '{found.provider}' of this {kind} is no longer configured",
                               status=503, code="files_provider_unavailable")
        return found, upstream

    async def _own(self, kind: str, obj: dict[str, Any], upstream: Upstream, p: Principal,
                   purpose: str) -> None:
        object_id = owned_id(obj, upstream)
        status = obj.get("status") if kind == BATCH and isinstance(obj.get("status"), str) else None
        await self.store.put(OwnedObject(
            id=object_id, kind=kind, provider=upstream.provider, tenant_id=tenant_of(p), owner=owner_of(p),
            key_id=p.key_id, team_id=p.team_id, user_id=p.user_id, purpose=purpose[:64], status=status,
            body=obj,
        ))

    async def _seen(self, owned: OwnedObject, upstream: Upstream, obj: dict[str, Any]) -> None:
        """A batch as the upstream now shows it; its output and error files become its owner's
        the first time they appear (``owned.body`` is the batch as last seen): a file its owner
        has deleted since is not put back."""
        for name in ("output_file_id", "error_file_id"):
            file_id = obj.get(name)
            if isinstance(file_id, str) and _ID.match(file_id) and owned.body.get(name) != file_id:
                await self.store.put(OwnedObject(
                    id=file_id, kind=FILE, provider=owned.provider, tenant_id=owned.tenant_id,
                    owner=owned.owner, key_id=owned.key_id, team_id=owned.team_id, user_id=owned.user_id,
                    purpose=OUTPUT_PURPOSE, body=await _file_object(upstream, file_id),
                ))
        # Recorded after its files: a failure above leaves them new for the next look.
        status = obj.get("status") if isinstance(obj.get("status"), str) else None
        await self.store.update(BATCH, owned.id, obj, status)

    async def _page(self, kind: str, ctx: FilesContext, p: Principal, purpose: str | None) -> dict[str, Any]:
        raw = query_value(ctx, "limit") or "20"
        top = 10_000 if kind == FILE else 100
        # isdigit alone takes '²' (int() then fails: a 500) and U+0665 (an Arabic-Indic 5): ASCII digits only.
        # At most 9 digits: int() refuses more than 4300 (sys.get_int_max_str_digits).
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= top:
            raise InvalidRequest(f"'limit' must be an integer from 1 to {top}", param="limit",
                                 code="invalid_value")
        after = query_value(ctx, "after")
        if after is not None and not _ID.match(after):
            raise InvalidRequest("'after' is not an id", param="after", code="invalid_value")
        # OpenAI's files list takes an order (the SDK's files.list(order=...)); its batches list does not.
        order = query_value(ctx, "order") if kind == FILE else None
        if order not in (None, "asc", "desc"):
            raise InvalidRequest("'order' must be 'asc' or 'desc'", param="order", code="invalid_value")
        limit = int(raw)
        try:
            rows = await self.store.list_owned(kind, tenant_of(p), owner_of(p), after=after, limit=limit + 1,
                                               purpose=purpose, newest_first=order != "asc")
        except ValueError:
            # Unknown, deleted or another caller's (one answer: nothing about its existence): an
            # empty page would end the caller's walk as if it had seen every object.
            message = f"'after': no {_NAMES[kind].lower()} '{str(after)[:100]}' in this list"
            raise InvalidRequest(message + " (pass the last_id of a page)", param="after",
                                 code="invalid_value") from None
        data = [dict(r.body) for r in rows[:limit]]
        return {"object": "list", "data": data, "has_more": len(rows) > limit,
                "first_id": data[0].get("id") if data else None,
                "last_id": data[-1].get("id") if data else None}

    # -- batch cost --------------------------------------------------------------------------

    async def settle(self, owned: OwnedObject, upstream: Upstream, batch: dict[str, Any],
                     count: Callable[[], Awaitable[dict[str, ModelTotals]]] | None = None) -> bool:
        """Record a finished batch's cost once (True when this call wrote it). Safe to run on
        every instance at once: the ledger keeps one row per batch id, the flag stops re-reads.
        ``count``: the tokens per model (a message batch's results); else the output file's."""
        if self._ledger is None:
            return False
        running = self._settling.get(owned.id)
        if running is not None:  # a delete must not go ahead of a pricing already under way
            await running.wait()
            return False
        done = self._settling[owned.id] = asyncio.Event()
        try:
            totals = await (count() if count is not None else self._output_totals(owned, upstream, batch))
            if totals or batch.get("status") == "completed" or getattr(totals, "missing", False):
                # Its creator as the key is now: the record's tags, then the budgets it counts in.
                owner = await self._owner(owned)
                record = self._pricer.record(owned, upstream, batch, totals, owner.tags)
                new = await self._ledger.append([record])
            else:
                new = 0  # failed, expired or cancelled with nothing done: nothing to charge
            await self.store.mark_costed(owned.id, owned.kind)
            if count is None and upstream.type == AZURE:  # read only to price it
                with contextlib.suppress(Exception):
                    await self.store.delete(BATCH_MODELS, owned.id)
            if new:
                self.costed += 1
                log.info("batch %s: cost recorded in the usage ledger", owned.id)
                if self._charged is not None:  # once, by the writer of the row, as the budgets
                    self._charged(record)
                await self._count_in_budgets(owner, owned, record)
            return bool(new)
        except Exception:
            log.exception("batch %s: cost not recorded yet (retried by the poller)", owned.id)
            return False
        finally:
            del self._settling[owned.id]
            done.set()

    async def _output_totals(self, owned: OwnedObject, upstream: Upstream,
                             batch: dict[str, Any]) -> dict[str, ModelTotals]:
        """A batch's tokens per model from its output; an Azure batch's by the deployment each
        line named (noted at its creation), which its answers report by the base model's id."""
        note = None
        if upstream.type == AZURE:
            noted = await self.store.get(BATCH_MODELS, owned.id)
            note = noted.body if noted is not None else None
        return await self._pricer.totals(upstream, batch, note)

    async def _count_in_budgets(self, principal: Principal, owned: OwnedObject, record: UsageRecord) -> None:
        """The batch's ledger row in its owner's (``principal``) budgets, once: only the writer
        of the row (the ledger keeps one per batch) counts it; a budget stage settles only model
        calls."""
        book = self._budgets()
        if book is None:
            return
        try:
            prompt, completion = record.prompt_tokens, record.completion_tokens
            spent = Spent(nano(record.cost_usd), prompt + completion, prompt, completion)
            await book.add(principal, owned.id, record.created_at, spent)
        except Exception:  # the ledger holds it: a counter rebuilt from it (next period, restart) counts it
            log.exception("batch %s: its cost is in the ledger but not in the budget counters", owned.id)

    async def _owner(self, owned: OwnedObject) -> Principal:
        """Who owns the batch, as its record and budgets see it: its key's record (with the
        key's tags and own budget) while the key exists, else the ids recorded with the batch."""
        if owned.key_id is not None and self._keys is not None:
            record = await self._keys.get(owned.tenant_id, owned.key_id)
            if record is not None:
                return principal_of(record)
        return Principal(id=owned.owner, role="member", key_id=owned.key_id, tenant_id=owned.tenant_id,
                         team_id=owned.team_id, user_id=owned.user_id,
                         key_lineage=owned.owner if owned.key_id is not None else None)

    async def poll_once(self) -> int:
        """Look at the open batches (least recently seen first, a bounded number) and price those
        that have finished; returns how many were priced now."""
        if self._store is None:
            return 0
        done = 0
        for owned in await self._store.open_batches(self.settings.poll_batches):
            upstream = resolve(self._routing, owned.provider)
            try:
                if upstream is None:
                    raise LookupError(f"the provider '{owned.provider}' is no longer configured")
                obj = await upstream.call("GET", object_path("batches", owned.id))
                await self._seen(owned, upstream, obj)
            except Exception as exc:
                log.warning("batch %s: poll failed: %s", owned.id, exc)
                # Seen now all the same: the next rounds look at the other open batches first.
                with contextlib.suppress(Exception):
                    await self._store.update(BATCH, owned.id, owned.body, owned.status)
                continue
            if obj.get("status") in TERMINAL:
                done += await self.settle(owned, upstream, obj)
        return done

    async def purge_once(self) -> int:
        """Drop one bounded batch of tombstones past their day (the deletes purge those of their
        own kind only: an owner that stops deleting would keep its last ones forever); returns
        how many were dropped."""
        if self._store is None:
            return 0
        return await self._store.purge(utcnow())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            for poll in (self.poll_once, *self.pollers, self.purge_once):
                try:
                    await poll()
                except Exception:
                    log.exception("batch poll failed")


async def _file_object(upstream: Upstream, file_id: str) -> dict[str, Any]:
    """A batch's output file as the upstream describes it (listed with every field a file
    object has); the bare id when that fails: the owner can still fetch it, which refreshes it."""
    try:
        return await upstream.call("GET", object_path("files", file_id))
    except GatewayError as exc:
        log.warning("batch output file %s: not described yet: %s", file_id, exc.message)
        return {"id": file_id, "object": "file", "purpose": "batch_output"}


def owned_id(obj: dict[str, Any], upstream: Upstream) -> str:
    """The id of an object ``upstream`` has just created, as the records hold ids; 502 else."""
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not _ID.match(object_id):
        raise GatewayError(f"provider '{upstream.provider}' answered without a usable id", status=502,
                           code="upstream_error")
    return object_id


def query_value(ctx: FilesContext, name: str) -> str | None:
    """The query parameter ``name`` of a request, None when absent. Given more than once it is a
    400 (the admin lists refuse it too): taking one of the values would answer something else
    than the caller may have meant (``?limit=1&limit=50``). Only the parameters an operation
    reads are checked: unknown ones stay ignored, as OpenAI and Anthropic ignore them."""
    values = ctx.params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"the query parameter '{name}' is given more than once", param=name,
                             code="duplicate_parameter")
    return values[0]


def query_params(query: str) -> dict[str, list[str]]:
    try:
        return parse_qs(query, keep_blank_values=True, max_num_fields=20) if query else {}
    except ValueError:
        # invalid_value, as the other routes that bound their parameters answer (MCP OAuth's).
        raise InvalidRequest("too many query parameters (at most 20)", code="invalid_value") from None


async def _spool(data: AsyncIterator[bytes], limit: int) -> IO[bytes]:
    """A file part read to a temporary file (memory up to 1 MiB, then disk), ``limit`` bytes at most."""
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the caller
    total = 0
    try:
        async for piece in data:
            total += len(piece)
            if total > limit:
                raise PayloadTooLarge(f"the file exceeds the limit of {limit} bytes")
            if total > SPOOL_IN_MEMORY:  # on disk by now: written off the event loop
                await asyncio.to_thread(spooled.write, piece)
            else:
                spooled.write(piece)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled


async def _rest(reader: multipart.MultipartReader, limit: int, given: set[str]) -> AsyncIterator[bytes]:
    """The file part's data as it arrives, then the rest of the form checked (no field may follow
    the file): a caller's error found meanwhile stops the upload. ``given``: the
    fields before the file; one of them again is refused as it is before the file, since the
    value sent on would not be the last one the caller wrote; so is a ``model`` or an expiry
    first given after it, which the upload can no longer use."""
    total = 0
    async for piece in reader.data():
        total += len(piece)
        if total > limit:
            raise PayloadTooLarge(f"the file exceeds the limit of {limit} bytes")
        yield piece
    part = await reader.next_part()  # None: the form's end, read as the last of the body
    if part is not None:
        if part.name == "file":
            raise InvalidRequest("send one file per upload", param="file", code="duplicate_parameter")
        if part.name not in _FORM_FIELDS:
            raise InvalidRequest(f"unknown form field '{part.name[:100]}'", param=part.name[:100],
                                 code="unknown_parameter")
        if part.name in given:
            raise InvalidRequest(f"the form field '{part.name}' is given twice", param=part.name,
                                 code="duplicate_parameter")
        # A model or an expiry: the file is on its way with the provider and expiry chosen
        # before it, and dropping this one would keep the file for ever, or on another provider.
        raise InvalidRequest(f"the form field '{part.name}' must come before the file (the file is sent on "
                             "as it arrives)", param=part.name, code="invalid_value")


async def _watched(body: AsyncIterator[bytes], failure: list[BaseException]) -> AsyncIterator[bytes]:
    """``body``, keeping what made it fail (the HTTP client reports it only as a broken request).
    Its cancellation is not a failure of the body: the HTTP client cancels the sending itself
    once an upstream that answered first (an early 413) has answered, and that answer is the one
    the caller gets."""
    try:
        async for piece in body:
            yield piece
    except Exception as exc:
        failure.append(exc)
        raise
