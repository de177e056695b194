"""Per-request state carried through the pipeline, the results a chain returns, and the inbound
API seam. This is the core every layer above the routing table shares; it imports nothing from
them (the route is only named for type checking).

The lifecycle of a request: the edge (``http/endpoint.py``) builds a :class:`RequestContext`,
runs the operation's stage chain, writes the :class:`Reply` or :class:`StreamReply` in the
inbound API's wire format while filling in ``ctx.outcome``, and then, as the one owner of
post-response work, runs every callback registered with :meth:`RequestContext.after`. That
happens on success, on error and when the client disconnects, always after the last byte was
written, so accounting and logging add no latency to the response.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from switchboard import tokens
from switchboard.errors import GatewayError

if TYPE_CHECKING:
    from switchboard.providers.target import Target
    from switchboard.routing.groups import Group
    from switchboard.routing.router import Needs
    from switchboard.routing.table import Route

log = logging.getLogger("switchboard.lifecycle")

# Bodies above this size are token-counted off the event loop (count_prompt_tokens).
LARGE_BODY_BYTES = 128 * 1024


# round() of a float, without round()'s look-up and binding of ``__round__`` on every call: the
# request path rounds its timings several times a request.
round_float: Callable[[float], int] = float.__round__


def milliseconds(seconds: float) -> float:
    """``seconds`` as milliseconds to the microsecond: what the overhead headers show (three
    decimals) and, rounded to whole milliseconds, what the usage record stores."""
    return round_float(seconds * 1_000_000) / 1000


@dataclass(slots=True)
class Principal:
    """Who is calling, as authentication established it.

    The master key is a platform admin with no tenant; keys issued by the gateway carry their own
    id, the tenant, team and user (or service account) that own them, and a role.
    """

    id: str
    role: str = "platform_admin"  # see access/roles.py
    key_id: str | None = None
    tenant_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    # None: every model; otherwise model names or ``*`` patterns this caller may use.
    allowed_models: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = ()  # the key's tags, copied to its usage records
    # The key's own rate limits (requests and tokens per minute); None: none on the key.
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    # The key's own budget (POST /admin/v1/keys max_budget_usd, budget_period); None: none.
    max_budget_usd: Decimal | None = None
    budget_period: str | None = None
    # Where its requests may be served (data residency): the intersection of the tenant's, the
    # team's and the key's allowed regions; None: anywhere.
    allowed_regions: frozenset[str] | None = None
    # MCP tool permissions of the key and of its team ({"allow": [...], "deny": [...]} each).
    mcp_tools: tuple[Mapping[str, Any], ...] = ()
    # The key's own rule of those (None: none): a key this caller issues or changes through the
    # admin API gets no wider one (access/tool_rules.py).
    key_mcp_tools: Mapping[str, Any] | None = None
    # The key's own expiry and regions (None: none): a key this caller issues or changes gets
    # none later and none wider (http/admin/keys.py, as its rate limits and budget above).
    key_expires_at: datetime | None = None
    key_regions: tuple[str, ...] | None = None
    # The key's visible prefix (sk-sb-…), shown where a person must recognise the key.
    key_prefix: str | None = None
    # The first key id of the key's rotation chain; None: ``key_id``. The key's budgets and rate
    # limits are counted under it, so a rotated key keeps what its predecessors spent.
    key_lineage: str | None = None

    @property
    def owner(self) -> str:
        """Who owns what this caller creates (files, batches, stored responses): the key's
        lineage, so a rotated key keeps its objects (a lineage starts at the first key's id, so
        rows recorded under a key id still match), else the principal's id."""
        return self.key_lineage or self.key_id or self.id


class Attempt(NamedTuple):
    """One try of one deployment (pipeline/attempts.py): recorded in the usage ledger."""

    deployment: str
    group: str
    status: int  # the HTTP status it ended with (200 when it answered)
    code: str | None  # the error code, None when it answered
    ms: int  # how long it took


class Spent(NamedTuple):
    """What a model call cost, as the usage stage recorded it: budgets settle to this."""

    nano_usd: int  # whole billionths of a dollar, rounded half-even as in the ledger
    tokens: int  # prompt + completion
    prompt: int = 0  # the input and output tokens as recorded (metrics count them)
    completion: int = 0
    estimated: bool = False  # not the upstream's final usage: a cut stream's estimate


# The status recorded for a client that left before an answer was sent (nginx's convention).
CLIENT_CLOSED = 499


@dataclass(slots=True)
class Outcome:
    """What the client was sent, filled in by the edge as it writes the response."""

    status: int = 0
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None  # the error's message as sent (a stream's last event)
    error_param: str | None = None  # its param, as the caller's API names it
    stream: bool = False
    bytes_sent: int = 0
    chunks_sent: int = 0  # canonical chunks written (streams)
    first_byte_at: float | None = None  # perf_counter() when the first body byte was written
    finished_at: float | None = None
    client_disconnected: bool = False

    def failed(self, error: GatewayError) -> None:
        self.status = error.status
        self.error_code = error.code
        self.error_type = error.type
        self.error_message = error.message
        self.error_param = error.param

    def recorded_status(self) -> int:
        """The status the ledger, the metrics and the failure log record: what was sent, or 499
        for a client that left a non-stream request (or before any status was sent)."""
        if not self.status or (self.client_disconnected and not self.stream):
            return CLIENT_CLOSED
        return self.status


# A post-response callback: a coroutine function, or a plain one that returns None when it has
# nothing to wait for (an awaited coroutine that never suspends costs some 700 instructions).
AfterResponse = Callable[["RequestContext"], Awaitable[None] | None]


# Ids unique per process start (a prefix made again in a forked child: a preloading process
# manager would repeat its parent's) and per call: no randomness per request.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)


def _new_id_prefix() -> None:
    global _ID_PREFIX
    _ID_PREFIX = secrets.token_hex(6)


os.register_at_fork(after_in_child=_new_id_prefix)


def unique_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    operation: str  # chat | embeddings | completions | media calls | count_tokens | admin | mcp | ...
    inbound: InboundAPI
    headers: dict[str, str]
    body: bytes
    started: float  # perf_counter()
    method: str = "POST"
    path: str = ""
    query: str = ""
    client: str = ""  # the peer's address, as the ASGI server reports it
    # perf_counter() time by which the whole request must be done; retries and fallbacks stop
    # trying once it has passed.
    deadline: float = float("inf")
    request: dict[str, Any] = field(default_factory=dict)  # canonical request
    principal: Principal | None = None
    # The group the model name resolved to, its deployments in the order they will be tried
    # (pipeline/route.py), and the deployment of the attempt under way (pipeline/attempts.py).
    group: Group | None = None
    candidates: list[Route] | None = None
    needs: Needs | None = None  # what the serving deployment must offer (regions, context)
    # Why the plan is empty when no other group may serve the request either (a pinned
    # deployment outside the caller's regions or too small): the attempts stage raises it as is.
    refusal: GatewayError | None = None
    # The caller's ``metadata`` object where its inbound API keeps it out of the canonical request
    # (Responses: echoed and stored, never sent upstream; Anthropic: only ``user_id``, sent as
    # ``user``), for the routing rules' ``metadata`` condition; None: the canonical request's own.
    request_metadata: Mapping[str, Any] | None = None
    # The gateway added to the prompt what the client's body does not hold (a stored conversation,
    # a registry prompt, a prompt API's template, session turns): the body's size then says
    # nothing of the prompt's, and the route stage counts its tokens (pipeline/route.py).
    expanded: bool = False
    # The bytes of what it added (a stored conversation's JSON) where they can be large: counted
    # with the body's for the steps whose cost grows with the prompt (large()).
    added_bytes: int = 0
    # A deployment of the group to try first (a split's arm), and tags for the usage record
    # (pipeline/rules.py).
    prefer_deployment: str | None = None
    route_tags: tuple[str, ...] | None = None
    # The model name the client asked for when a rule, split or semantic router sent the request
    # to another group (``request["model"]`` is then that group's): the metrics' and the trace's
    # requested model. None: ``request["model"]``.
    requested_model: str | None = None
    route: Route | None = None
    # The deployment whose limits the rate-limit stage took (its first pick, pipeline/limits.py):
    # an attempt sent to another one takes that one's limits first; what those takes hold
    # (deployments and models taken, a refusal, the attempt's token reservation) is in
    # ``limits_taken``, made by the first of them. None: none.
    limited: Target | None = None
    limited_model: str | None = None  # the model whose caller limits that stage took
    limits_taken: Any = None
    # Every attempt made, in order (pipeline/attempts.py); None before the first.
    attempts: list[Attempt] | None = None
    # The tool loop's model calls (mcp/loop.py), each call's own attempts: ``attempts`` holds them
    # all, and a call's first attempt is no retry of the call before. None: one call.
    calls: tuple[list[Attempt], ...] | None = None
    # What the client asked for, kept before adapters touch the request.
    stream: bool = False
    client_wants_usage: bool = False
    # The call's usage (a stream's: its final usage event's), in the canonical shape.
    usage: dict[str, Any] | None = None
    # A stream's usage so far, before its final usage event (Anthropic's message_start): what a
    # stream cut before that event is estimated from (pipeline/usage.py).
    partial_usage: dict[str, Any] | None = None
    # The OpenAI service tier the answer says served the call (``service_tier``: a reply's, a
    # stream's with its final usage), which prices it (spend/cost.py); None: not said.
    service_tier: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # The caller's own provider credential (pipeline/caller_credentials.py); None: the provider's
    # stored credential is used. upstream_credentials: as the current attempt's upstream headers.
    caller_credential: str | None = None
    upstream_credentials: dict[str, str] | None = None
    # The first object of the provider account the request names, as its field's path (an
    # Anthropic Files API source: http/anthropic/content.py); each attempt judges it for its own
    # deployment (pipeline/native.py). None: none.
    account_object: str | None = None
    # Where each canonical message came from in the caller's body (http/sources.py), recorded by
    # an inbound API that translates messages and keeps them here (Anthropic's, Gemini's), read only to
    # name a refusal of a message by the caller's field. None: not recorded.
    message_sources: list[Any] | None = None
    outcome: Outcome = field(default_factory=Outcome)
    # Named moments of the request (perf_counter()), e.g. "upstream_headers"; created on first use.
    timings: dict[str, float] | None = None
    # Callbacks registered with after(); None until the first (most requests register none).
    post_response: list[AfterResponse] | None = None
    # What a complete reply's bytes wait for, set by the inbound API's encode (the Responses API
    # with several processes serving: the stored response's write, so any of them finds it next).
    reply_waits: Callable[[], Awaitable[None]] | None = None
    # The pre-call prompt-token estimate, computed on first use (prompt_tokens_estimate()).
    prompt_tokens: int | None = None
    # Set by the usage stage once the call's cost is known (pipeline/usage.py); None: no cost.
    spent: Spent | None = None
    # Seconds spent inside upstream exchanges, every attempt summed (pipeline/invoke.py): a
    # complete exchange, or a stream's until its first chunk arrived.
    upstream_seconds: float = 0.0
    # (overhead, upstream) in seconds, fixed once by split_time() when the response headers
    # are written (or the usage record is made, whichever comes first).
    split: tuple[float, float] | None = None
    # Headers added to the upstream call of the attempt under way (the attempt span's
    # ``traceparent``, pipeline/trace.py); None: none.
    upstream_headers: dict[str, str] | None = None
    # When traces are on: the request's span and its open attempt spans (pipeline/trace.py).
    trace: Any = None
    # What a pass-through exchange sends when the inbound API prepares it rather than forwarding
    # ``body`` (pipeline/native.py; the Responses API: the client's request and the stored
    # conversation it continues). None: not prepared.
    native_body: Any = None
    # Added to the usage record's metadata (the registry prompt used, pipeline/prompt.py; the
    # prompt API and version served, http/apis/).
    usage_metadata: dict[str, Any] | None = None
    # A later stage's store work sent ahead, with an earlier stage's store call (the budget
    # stage's reservation, made with the rate limits: pipeline/limits.py's ``Rider``); taken by
    # that later stage. None: none.
    ahead: Any = None
    # The gateway's own id of the request's usage record, which its stored bodies carry too
    # (request_id is the caller's X-Request-Id when it sent one); made (log_id()) only when a
    # body is captured (BodyCapture.decide), None otherwise: a record without a body needs none.
    record_id: str | None = None

    # The id of the request's budget reservation (reservation_id()); None until it is asked for.
    reservation: str | None = None
    # The id of the request's usage record (entry_id()); None until it is asked for.
    entry: str | None = None
    # While the call is under way, the budget stage's reservation (its book, budgets and hold),
    # for another upstream call made within the request to reserve its own most possible cost
    # (a prompt API's repair try: BudgetStage.reserve_again); None: no budget applies. Those
    # further reservations, (id, charges) each, settled with the request's own (pipeline/settle.py).
    budgets_held: Any = None
    budgets_more: list[Any] | None = None

    def reservation_id(self) -> str:
        """The request id made unique to this request: a budget reservation is held under it, and
        a caller may send one X-Request-Id with several requests at once (under the same id the
        second reservation would replace the first, and both calls be charged against one)."""
        if self.reservation is None:
            self.reservation = f"{self.request_id}#{self.entry_id()}"  # one unique id for both
        return self.reservation

    def log_id(self) -> str:
        """The id joining the request's usage record and its stored bodies: random, never the
        caller's (a colleague may send the same X-Request-Id). Made on first use."""
        if self.record_id is None:
            self.record_id = secrets.token_hex(12)
        return self.record_id

    def entry_id(self) -> str:
        """The id of the request's usage record, the ledger's key with its start time: never the
        caller's X-Request-Id, which requests starting in the same microsecond may share. The
        log id when a body was captured by then, else a new one; made on first use (the record,
        or the budget reservation, which carries it too) and kept, so a request costs one id."""
        if self.entry is None:
            self.entry = self.record_id or unique_id()
        return self.entry

    def prompt_tokens_estimate(self, model_info: tokens.ModelInfoLike | None = None) -> int:
        """The request's prompt tokens before the call (switchboard.tokens.estimate), computed
        once on first use and shared by every stage that asks (limits, budgets, count_tokens).

        The model is ``model_info``'s (the catalog record) if given, else the route's (its
        ``counted_as``: the entry's base_model, else the upstream id), else the requested name;
        only the first call's choice counts.
        """
        if self.prompt_tokens is None:
            model = self.route.counted_as if self.route is not None else None
            self.prompt_tokens = tokens.estimate(self.request, self.operation, model_info, model=model)
        return self.prompt_tokens

    def large(self) -> bool:
        """Whether the prompt is large enough that counting or translating it runs in a worker
        thread: a body over LARGE_BODY_BYTES, or one continuing a stored conversation that makes
        it so (a few bytes naming megabytes of earlier turns)."""
        return len(self.body) + self.added_bytes > LARGE_BODY_BYTES

    async def count_prompt_tokens(self, model_info: tokens.ModelInfoLike | None = None) -> int:
        """:meth:`prompt_tokens_estimate` for async stages: a large prompt is counted in a worker
        thread (tiktoken releases the GIL), so a megabyte prompt does not stall the event loop."""
        if self.prompt_tokens is None and self.large():
            return await asyncio.to_thread(self.prompt_tokens_estimate, model_info)
        return self.prompt_tokens_estimate(model_info)

    def after(self, callback: AfterResponse) -> None:
        """Run ``callback(ctx)`` once the response has been written (or the client has gone).

        Callbacks run in registration order; one that raises is logged and the rest still run.
        They must be quick (append to a buffer, settle a counter): heavy writes belong to a
        batching writer of the stores.
        """
        if self.post_response is None:
            self.post_response = [callback]
        else:
            self.post_response.append(callback)

    def mark(self, name: str, at: float) -> None:
        if self.timings is None:
            self.timings = {name: at}
        else:
            self.timings[name] = at

    def split_time(self) -> tuple[float, float]:
        """(the gateway's own seconds, the upstream's seconds) so far, fixed on the first call so
        the response headers, the usage record and the metrics all carry the same values."""
        split = self.split
        if split is None:
            upstream = self.upstream_seconds
            self.split = split = (max(0.0, time.perf_counter() - self.started - upstream), upstream)
        return split

    def remaining(self, now: float) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - now

    def run_after_response(self) -> Awaitable[None] | None:
        """Run the registered callbacks, in order; called once, by the edge that owns the
        request, which awaits what is returned: the callbacks still to run once one that waits
        is done (None: all ran). Most requests' callbacks wait for nothing: no coroutine then."""
        callbacks, self.post_response = self.post_response, None
        i = 0
        for callback in callbacks or ():
            i += 1  # where the rest starts if this one waits (no enumerate: an object per request)
            try:
                waits = callback(self)
            except Exception:
                log.exception("request %s: post-response callback failed", self.request_id)
                continue
            if waits is not None:
                assert callbacks is not None
                return self._after_waits(waits, callbacks, i)
        return None

    async def _after_waits(self, waits: Awaitable[None], callbacks: list[AfterResponse], i: int) -> None:
        """``run_after_response`` from a callback that waits (``waits``), then ``callbacks[i:]``."""
        try:
            await waits
        except Exception:
            log.exception("request %s: post-response callback failed", self.request_id)
        for callback in callbacks[i:]:
            try:
                waits_too = callback(self)
                if waits_too is not None:
                    await waits_too
            except Exception:
                log.exception("request %s: post-response callback failed", self.request_id)


def answered_model(ctx: RequestContext, reported: Any = None) -> str:
    """The model an inbound API names in its answer: the model id the upstream reported
    (``reported``, from the canonical body or the stream's first chunk), else the deployment's
    upstream model id, else the name asked for. The group that answered and its deployment are
    in the ``x-switchboard-model`` and ``x-switchboard-deployment`` headers."""
    if isinstance(reported, str) and reported:
        return reported
    if ctx.route is not None:
        return ctx.route.target.model
    model = ctx.request.get("model")
    return model if isinstance(model, str) else ""


@dataclass(slots=True)
class Reply:
    """A complete response: canonical, or already in the client's dialect (``native``)."""

    body: dict[str, Any]
    status: int = 200
    # True when ``body`` is the upstream's reply in the inbound API's own wire format (a
    # same-dialect pass-through, pipeline/native.py): the encoder writes it as it is.
    native: bool = False
    # True when the upstream's answer was large (over LARGE_BODY_BYTES): the edge encodes it for
    # the client in a worker thread, not on the event loop (an embeddings batch: up to 150 MB).
    large: bool = False


@dataclass(slots=True)
class RawReply:
    """A complete response already in wire form (status, headers, bytes), from a terminal that is
    an ASGI application of its own (the admin API). The edge adds its headers and writes it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


Chunk = dict[str, Any]


async def _nothing() -> None:
    return None


BatchMap = Callable[[list[Chunk]], list[Chunk]]
StreamDone = Callable[[BaseException | None], None]


class Batches:
    """A stream's batches, with what the stages do to them applied as they pass.

    A stage that acts on a stream adds a batch map and an end callback here (``pipeline.chain.
    map_result``) instead of wrapping the stream in an async generator of its own: every layer
    of generators costs each batch a resumption, and each generator a registration with the
    event loop, on every streamed request. Maps run in the order they were added (the innermost
    stage's first); a map returning an empty list drops the batch. The end callbacks run once,
    in the same order, when the stream ends: with None when it ran to the end, with the
    exception that ended it, or with GeneratorExit when it is closed after it started and
    before its end; one added after the end (a stage that read ahead met it) runs at once (with
    None once the stream is closed: the error that ended it is not kept past that). A stream
    closed before it started calls none of them.
    """

    __slots__ = ("_done", "_ended", "_head", "_head_maps", "_maps", "_outcome", "_source", "_started")

    def __init__(self, source: AsyncGenerator[list[Chunk], None]) -> None:
        self._source = source
        self._maps: list[BatchMap] = []
        self._done: list[StreamDone] = []
        self._head: list[Chunk] | None = None
        self._head_maps = 0  # how many of the maps the read-ahead batch has been through
        self._started = False
        self._ended = False
        self._outcome: BaseException | None = None

    def add(self, batch: BatchMap | None = None, done: StreamDone | None = None) -> None:
        if batch is not None:
            self._maps.append(batch)
        if done is not None:
            if self._ended and self._started:
                done(self._outcome)
            else:
                self._done.append(done)

    def unread(self, batch: list[Chunk]) -> None:
        """Give back a batch read ahead (a stage that waited for the first one): the next read
        returns it, through the maps added since."""
        self._head = batch
        self._head_maps = len(self._maps)

    def __aiter__(self) -> Batches:
        return self

    async def __anext__(self) -> list[Chunk]:
        if self._ended:
            raise StopAsyncIteration
        self._started = True
        try:
            head = self._head
            if head is not None:
                self._head = None
                batch = self._mapped(head, self._head_maps)
                if batch:
                    return batch
            maps = self._maps
            while True:
                batch = await self._source.__anext__()
                # The maps applied here rather than by _mapped: a call less per batch.
                for batch_map in maps:
                    batch = batch_map(batch)
                    if not batch:
                        break
                if batch:
                    return batch
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise

    def _mapped(self, batch: list[Chunk], start: int) -> list[Chunk]:
        maps = self._maps
        for i in range(start, len(maps)):
            batch = maps[i](batch)
            if not batch:
                break
        return batch

    async def aclose(self) -> None:
        try:
            await self._source.aclose()
        finally:
            self._head = None
            if self._started and not self._ended:  # no exception made for a stream already ended
                self._end(GeneratorExit())
            self._ended = True
            self._done = []  # never told now (a stream closed unread): let go of them (see _end)
            self._maps = []
            # The error that ended it: its traceback holds __anext__'s frame, which holds this.
            self._outcome = None

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._outcome = error
        done_list, self._done = self._done, []
        # Let go of the stages' maps and callbacks once told: they close over the reply that
        # holds this object, a cycle left per stream for the cyclic collector, whose pass over
        # a few hundred streams' worth stalls the loop for milliseconds.
        self._maps = []
        for done in done_list:
            done(error)


class StreamReply:
    """A canonical chunk stream, consumed at most once by the edge, and always closed.

    ``chunks`` yields non-empty batches: the chunks decoded from one upstream read. A stage that
    acts on the stream adds a map of batches to it, which may change, drop or add chunks within
    them (see ``pipeline.chain.map_result``). ``close`` releases what the stream holds (the
    upstream response) even if ``chunks`` was never started: closing a generator that has not
    started does not run its ``finally``.
    """

    __slots__ = ("chunks", "close", "closed", "native")

    def __init__(
        self,
        chunks: AsyncGenerator[list[Chunk], None] | Batches,
        close: Callable[[], Awaitable[None]] = _nothing,
        native: bool = False,
    ) -> None:
        self.chunks = chunks if isinstance(chunks, Batches) else Batches(chunks)
        self.close = close
        self.closed = False
        # True when each chunk carries an upstream event already in the inbound API's wire
        # format (its bytes under providers.base.WIRE, beside what stages may read: id, model,
        # usage, the finish reason): the encoder writes those bytes as they are. Stages that
        # act on the stream keep the flag.
        self.native = native

    async def aclose(self) -> None:
        """Close the chunks and what they read from, at once; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        try:
            await self.chunks.aclose()
        finally:
            await self.close()


Result = Reply | StreamReply | RawReply


class InboundAPI(Protocol):
    """How one client-facing wire format is decoded and encoded.

    An InboundAPI turns the raw body into the canonical request (``decode``) and canonical
    results back into its own wire format (``encode``, ``encode_stream``, ``encode_error``). The
    pipeline never sees wire formats; adding an inbound API means one new class.
    """

    operation: str
    # The wire format this API speaks, named as the provider type whose upstream speaks it
    # ("openai", "anthropic"): an attempt on such a provider may pass the body through
    # (pipeline/native.py).
    dialect: str

    def decode(self, ctx: RequestContext) -> None:
        """Parse and validate ``ctx.body`` into ``ctx.request``; set ``ctx.stream``. Raises InvalidRequest."""
        ...

    def encode(self, ctx: RequestContext, body: dict[str, Any], native: bool = False) -> bytes:
        """The wire bytes of a complete reply; ``native``: ``body`` is already in this API's
        format (Reply.native) and is written as it is."""
        ...

    def encode_stream(
        self, ctx: RequestContext, batches: AsyncIterator[list[dict[str, Any]]], native: bool = False
    ) -> AsyncGenerator[bytes, None]:
        """Wire bytes for each batch of canonical chunks (one write per batch); a GatewayError
        raised mid-stream becomes the API's error event. ``native``: the chunks carry this API's
        own events (StreamReply.native), relayed as they are."""
        ...

    def name_error(self, error: GatewayError, ctx: RequestContext) -> None:
        """Name ``error``'s param (and its mentions in the message) as this API's caller spells
        it, in place: a refused message by what the caller sent (http/sources.py), a canonical
        parameter by the API's own field. The edge calls it once per error, on the error path,
        before it records and encodes the error, so what is recorded is what the client is told."""
        ...

    def encode_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        """The error's wire bytes (named by :meth:`name_error` already)."""
        ...

    def encode_stream_error(self, error: GatewayError, ctx: RequestContext | None = None) -> bytes:
        """The error event that ends a stream already under way (e.g. cut at shutdown); ``ctx``:
        the stream's request, for an API whose events continue the stream's numbering."""
        ...


class CanonicalNames:
    """The :meth:`InboundAPI.name_error` of an API whose callers spell parameters the canonical
    (OpenAI) way: errors keep their names."""

    __slots__ = ()

    def name_error(self, error: GatewayError, ctx: RequestContext) -> None:
        return None
