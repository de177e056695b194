"""The usage stage: what a model call cost, in a header and in the usage ledger.

Placed after the route is known. Before the upstream call it refuses a model that cannot be
priced when ``spend.refuse_unpriced`` is set. After it:

- a complete reply: the cost goes into ``x-switchboard-cost-usd`` and its record is spooled
  before the response is written, so a client that got an answer always has a record;
- a stream: the record is spooled when the upstream's stream has ended, before the client's
  final event (a header cannot carry the cost of a stream); estimated as below if it ended with
  only a usage so far (Anthropic's message_start, no message_delta);
- anything else (an error, a stream the client abandoned, a cut at shutdown): the record is
  spooled after the response, with the status the client got and the tokens actually produced;
  when the upstream's final usage never came, the tokens are estimated with the offline counter
  (``switchboard.tokens``): the prompt as the upstream reported it so far (Anthropic's
  message_start), else as limits and budgets estimate it, the output from the text relayed to
  the client (or the upstream's count so far, if larger); the record says so
  (``metadata.estimated``), and so does ``ctx.spent``, which the rate limits settle to;
- a chat or completions answer (a reply, or a stream that ended) with no usage at all, from a
  host that reports none: estimated the same way (the output from the reply's text), never free.

A translated stream's text is read from its canonical chunks; a same-dialect stream's from what
its decoder marked as output (``providers.base.OUTPUT``): kept as it passes, and unparsed events
(Anthropic's) read by the route's adapter (``output_text``) only when an estimate needs them.

Spooling is one local ``write`` (``spend/ledger.py``); the database is written behind it. The
record is built straight from the context as the ledger's row (``USAGE_ROW``), its cost in whole
billionths of a dollar from the exact integer cost (``spend/cost.py``): no Decimal and no record
object per request beyond the ``Spent`` that budgets settle from.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from switchboard import tokens
from switchboard.catalog import ModelInfo
from switchboard.context import (
    Chunk,
    RawReply,
    Reply,
    RequestContext,
    Result,
    Spent,
    StreamReply,
    milliseconds,
    round_float,
)
from switchboard.errors import InvalidRequest
from switchboard.pipeline.chain import Handler, map_result
from switchboard.providers import counts
from switchboard.providers.base import OUTPUT, ProviderAdapter
from switchboard.providers.counts import TOKENS_MAX
from switchboard.spend.cost import Cost, Prices, Tokens, cost, format_nano_usd, is_unpriced, split
from switchboard.spend.ledger import LedgerWriter
from switchboard.spend.units import units_of, with_units
from switchboard.stores.protocols import UsageRow

if TYPE_CHECKING:
    from switchboard.routing.table import Route

log = logging.getLogger("switchboard.spend")
# A Spent built without the named tuple's generated ``__new__`` (a Python function's call): once
# a request. Every field is given, in order.
_new = tuple.__new__

COST_HEADER = "x-switchboard-cost-usd"
UNPRICED_HEADER = "x-switchboard-cost-unpriced"
DEFAULT_TENANT = "default"
# The status recorded for a client that left before any status was sent.
CLIENT_CLOSED = 499


class ModelUnpriced(InvalidRequest):
    code = "model_unpriced"


# Of a stream's output, at most this much (characters of text, or bytes of same-dialect events)
# is kept for an estimate; beyond it only its size is counted and the estimate scaled. Bounds
# both the memory a long stream holds and the counting done on the event loop when it is cut
# (the offline counter takes ~0.3 s a million characters).
KEPT_MAX = 256 * 1024
_CHECK_EVERY = 64  # pieces collected between two looks at the size kept


class _Call:
    """One request's accounting state."""

    __slots__ = ("checked", "done", "dropped", "info", "kept", "reading", "text")

    def __init__(self, info: ModelInfo | None) -> None:
        self.info = info
        # Marked when the upstream reports a count that is no count (providers/counts.py).
        self.reading = counts.reading()
        # What a stream relayed to the client, for an estimate: text, or a same-dialect event's
        # bytes to read only then (providers.base.OUTPUT).
        self.text: list[str | bytes] = []
        self.kept = 0  # the size of text[:checked]
        self.checked = 0
        self.dropped = 0  # the size of what was relayed past KEPT_MAX and not kept
        self.done = False  # the record was spooled

    def collect(self, batch: list[Chunk], collect: Callable[[list[Chunk], list[str | bytes]], None]) -> None:
        """Keep a relayed batch's output (``collect`` reads it), within KEPT_MAX."""
        if self.dropped:  # past KEPT_MAX: only the size is counted from here on
            rest: list[str | bytes] = []
            collect(batch, rest)
            self.dropped += sum(len(t) for t in rest)
            return
        collect(batch, self.text)
        if len(self.text) - self.checked >= _CHECK_EVERY:
            self.bound()

    def bound(self) -> None:
        """Keep at most KEPT_MAX of the output; count the size of the rest."""
        text = self.text
        for i in range(self.checked, len(text)):
            size = len(text[i])
            if self.kept + size > KEPT_MAX:
                self.dropped += sum(len(t) for t in text[i:])
                del text[i:]
                break
            self.kept += size
        self.checked = len(text)


def _relayed_output(batch: list[Chunk], out: list[str | bytes]) -> None:
    """A same-dialect stream's output, as its decoder marked it: kept, not read."""
    for chunk in batch:
        if (output := chunk.get(OUTPUT)) is not None:
            out.append(output)


def _relayed_text(batch: list[Chunk], out: list[str | bytes]) -> None:
    # Run on every chunk of a stream: an empty delta or value is passed over by its truth
    # before any type test, and the two text fields are read without a loop over their names.
    for chunk in batch:
        for choice in chunk.get("choices") or ():
            if delta := choice.get("delta"):
                if (value := delta.get("content")) and isinstance(value, str):
                    out.append(value)
                if (value := delta.get("reasoning_content")) and isinstance(value, str):
                    out.append(value)
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    for key in ("name", "arguments"):
                        value = fn.get(key)
                        if isinstance(value, str) and value:
                            out.append(value)
            if (text := choice.get("text")) and isinstance(text, str):  # completions
                out.append(text)


def _estimated_prompt(ctx: RequestContext, call: _Call) -> int:
    """The prompt's tokens as limits and budgets estimated them, with the offline counter."""
    try:
        return ctx.prompt_tokens_estimate(call.info)
    except Exception:  # a request the counter cannot read: its size, ~4 bytes a token
        return -(-len(ctx.body) // 4)


def _estimated_output(ctx: RequestContext, call: _Call) -> int:
    """The tokens of the text relayed to the client, with the offline counter."""
    route = ctx.route
    model = call.info.model if call.info is not None else (route.target.model if route else "")
    call.bound()
    # Unparsed events are read by the adapter of the route that streamed them: the last one.
    read = route.adapter.output_text if route is not None else ProviderAdapter().output_text
    text = "".join(t if isinstance(t, str) else read(t) for t in call.text)
    encoding = tokens.encoding_for(model)
    output = tokens.count_text(text, encoding or "o200k_base")
    if call.dropped and call.kept:  # what was not kept counts at the rate of what was
        output = math.ceil(output * (call.kept + call.dropped) / call.kept)
    if encoding is None:
        output = math.ceil(output * tokens.OTHER_PROVIDER_FACTOR)
    return output


def _cut_short(ctx: RequestContext, call: _Call) -> Tokens:
    """The tokens of a stream cut before its final usage: the prompt as the upstream reported it
    so far (exact, with its cache reads and writes), else estimated; the output the larger of
    the upstream's count so far and the estimate from the text relayed."""
    so_far = split(ctx.partial_usage)
    output = max(_estimated_output(ctx, call), so_far.output)
    if so_far.prompt:
        return so_far._replace(output=output)
    return so_far._replace(input=_estimated_prompt(ctx, call), output=output)


def _reply_output(body: Any, out: list[str | bytes]) -> None:
    """A canonical reply's output text (message content, reasoning, tool calls; completions'
    text), read as a stream's deltas are."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if isinstance(choices, list):
        _relayed_text([{"choices": [{"delta": c.get("message") or {}, "text": c.get("text")}
                                    for c in choices if isinstance(c, dict)]}], out)


def _unreported_usage(ctx: RequestContext, result: Result, call: _Call) -> bool:
    """True when a chat or completions call answered without any usage (some OpenAI-compatible
    hosts report none, or none in a stream): it is then recorded as a cut stream is, estimated,
    never as a free call. Media calls are priced by their own units and embeddings apart."""
    if ctx.usage or ctx.operation not in _TOKEN_CALLS:
        return False
    if isinstance(result, Reply) and not result.native:  # a stream collected its output as it went
        _reply_output(result.body, call.text)
    return True


_TOKEN_CALLS = frozenset({"chat", "completions"})


def _unreported_input(ctx: RequestContext, call: _Call, counted: Tokens) -> tuple[Tokens, bool]:
    """The tokens of an embeddings answer that reported no input tokens (Gemini's
    ``batchEmbedContents`` reports none, a Cohere model on Bedrock without its token count
    header): the provider bills the
    input all the same, so it is recorded, priced and settled at the estimate limits and budgets
    reserved, flagged ``estimated``, never as a free call. An input that counts 0 stays 0.

    A host that reports only ``total_tokens`` (Voyage AI's usage) counted the input all the same:
    an embedding has no output, so that total is the input, recorded as counted (the token limits
    settle to it too, ``limits/estimate.py``)."""
    if ctx.usage and (total := counts.count(ctx.usage.get("total_tokens")) - counted.completion) > 0:
        return counted._replace(input=total), False
    estimate = _estimated_prompt(ctx, call)
    if estimate <= 0:
        return counted, False
    return counted._replace(input=estimate), True


class UsageStage:
    name = "usage"

    def __init__(
        self, prices: Prices, writer: Callable[[], LedgerWriter | None], *, refuse_unpriced: bool
    ) -> None:
        self._prices = prices
        self._writer = writer
        self._refuse = refuse_unpriced
        self.unpriced_calls: dict[str, int] = {}  # by model name, for metrics
        self._clamped_from: set[str] = set()  # providers whose counts were clamped, logged once each
        self._invalid_from: set[str] = set()  # providers that sent a count that is none, logged once each

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        route = ctx.route
        assert route is not None, "the route stage runs first"
        info, priced = self._prices.priced(route)
        call = _Call(info)
        ctx.after(lambda c: self._after(c, call))  # recorded however the call ends, refused too
        if not priced:
            if self._refuse and is_unpriced(info):
                # Refused when no deployment of the group has a price; else the attempts stage
                # leaves out those without one (``refused``), retries and fallbacks alike.
                if not any(not self.refused(c) for c in ctx.candidates or ()):
                    raise ModelUnpriced(f"the model '{route.target.name}' has no price; calls to it are "
                                        "refused", param="model")
            else:
                self._note_unpriced(route.target.name, info)
        result = await call_next(ctx)
        if ctx.route is not route and ctx.route is not None:  # answered by a retry or fallback
            info = call.info = self._prices.of_route(ctx.route)
        if isinstance(result, Reply | RawReply):  # raw: a media answer (text, subtitles)
            counted = split(ctx.usage)
            estimated = False
            if not counted.prompt:  # reported no input: the estimate (a call is never free)
                if ctx.operation == "embeddings":
                    counted, estimated = _unreported_input(ctx, call, counted)
                elif result.status < 400 and _unreported_usage(ctx, result, call):
                    counted, estimated = _cut_short(ctx, call), True
            price = with_units(cost(info, counted, ctx.service_tier), info, counted, ctx.usage)
            nano = price.nano_usd  # a property: worked out once, for the header and the record
            ctx.response_headers[COST_HEADER] = format_nano_usd(nano)
            if price.unpriced:  # never a silent 0: the cost left some tokens out
                ctx.response_headers[UNPRICED_HEADER] = "true"
            self._spool(ctx, call, result.status, counted, price, estimated=estimated, nano=nano)
            return result
        if isinstance(result, StreamReply):
            return self._streamed(ctx, call, info, result)
        return result

    def _streamed(self, ctx: RequestContext, call: _Call, info: ModelInfo | None,
                  result: StreamReply) -> Result:
        """A stream's text collected as it is relayed, and its record spooled when it ends. A
        method of its own: its closures made their variables cells of ``__call__`` on every
        request, streamed or not."""
        collect = _relayed_output if result.native else _relayed_text

        def relayed(batch: list[Chunk]) -> list[Chunk]:
            call.collect(batch, collect)
            return batch

        def ended(error: BaseException | None) -> None:
            if error is None:
                # Ended without its final usage, with a usage so far (Anthropic's
                # message_stop with no message_delta) or none at all (a host that reports
                # none in a stream): estimated, as a cut stream is.
                cut = ctx.usage is None and (ctx.partial_usage is not None
                                             or _unreported_usage(ctx, result, call))
                done = _cut_short(ctx, call) if cut else split(ctx.usage)
                price = with_units(cost(info, done, ctx.service_tier), info, done, ctx.usage)
                self._spool(ctx, call, 200, done, price, estimated=cut)

        return map_result(result, batch=relayed, done=ended)

    def refused(self, route: Route) -> bool:
        """Whether ``route`` may not be sent to: it has no price and ``spend.refuse_unpriced`` is
        set (the attempts stage's filter of candidates and fallbacks)."""
        if not self._refuse:
            return False
        info, priced = self._prices.priced(route)
        return not priced and is_unpriced(info)

    def _note_unpriced(self, name: str, info: ModelInfo | None) -> None:
        """Count calls to models lacking a price; say so in the log once per model."""
        if not is_unpriced(info):
            return
        self.unpriced_calls[name] = seen = self.unpriced_calls.get(name, 0) + 1
        if seen == 1:
            log.warning("model %r has no price in the catalog: its calls are recorded as unpriced "
                        "(set info: prices on the model entry, or spend.refuse_unpriced)", name)

    def _note_clamped(self, ctx: RequestContext) -> None:
        """Say once per provider that it reported a count past the bound."""
        route = ctx.route
        provider = route.target.provider if route is not None else ""
        if provider in self._clamped_from:
            return
        self._clamped_from.add(provider)
        log.warning("provider %r reported a token count above %d (request %s): recorded as %d and "
                    "flagged usage_clamped; later ones from it are flagged without this warning",
                    provider, TOKENS_MAX, ctx.request_id, TOKENS_MAX)

    def _note_invalid(self, ctx: RequestContext) -> None:
        """Say once per provider that it reported a count that is none (negative, not a number)."""
        route = ctx.route
        provider = route.target.provider if route is not None else ""
        if provider in self._invalid_from:
            return
        self._invalid_from.add(provider)
        log.warning("provider %r reported a token count that is not a whole number from 0 (request %s): "
                    "counted as 0 and flagged usage_invalid; later ones from it are flagged without "
                    "this warning", provider, ctx.request_id)

    def _after(self, ctx: RequestContext, call: _Call) -> None:
        # A plain callback: nothing here waits (an awaited coroutine would cost every request).
        if call.done:
            return
        counts.reading(call.reading)  # run after the response, maybe in another task
        outcome = ctx.outcome
        status = outcome.status or CLIENT_CLOSED
        if outcome.client_disconnected and not outcome.stream:
            status = CLIENT_CLOSED
        estimated = False
        if ctx.usage:
            counted = split(ctx.usage)
        elif call.text or ctx.partial_usage:
            # The upstream's final usage never came (the client left, the stream broke): what
            # was produced, estimated from the text relayed and the usage so far.
            counted = _cut_short(ctx, call)
            estimated = True
        else:
            counted = Tokens()
        price = with_units(cost(call.info, counted, ctx.service_tier), call.info, counted, ctx.usage)
        self._spool(ctx, call, status, counted, price, estimated=estimated)

    def _spool(
        self, ctx: RequestContext, call: _Call, status: int, counted: Tokens, price: Cost, *,
        estimated: bool = False, nano: int | None = None,
    ) -> None:
        """``nano``: ``price.nano_usd`` when the caller has it already."""
        call.done = True
        prompt, completion = counted.prompt, counted.completion
        # A count past the bound (providers/counts.py) was recorded as the bound: say so.
        clamped = prompt >= TOKENS_MAX or completion >= TOKENS_MAX
        if clamped:
            self._note_clamped(ctx)
        # A count that was none (negative, not a number) was read as 0: say so too.
        invalid = call.reading.invalid
        if invalid:
            self._note_invalid(ctx)
        if nano is None:
            nano = price.nano_usd
        ctx.spent = _new(Spent, (nano, prompt + completion, prompt, completion, estimated))
        writer = self._writer()
        if writer is None:
            return
        try:
            writer.spool(_row(ctx, status, counted, prompt, completion, nano, price.unpriced, estimated,
                              clamped, invalid))
        except Exception:  # accounting never fails the request it accounts for
            log.exception("request %s: usage record not written", ctx.request_id)


def _row(
    ctx: RequestContext, status: int, counted: Tokens, prompt: int, completion: int, nano: int,
    unpriced: bool, estimated: bool, clamped: bool, invalid: bool,
) -> UsageRow:
    """The ledger's row (``USAGE_ROW``) of this call, built from the context."""
    route = ctx.route
    assert route is not None
    target = route.target
    outcome = ctx.outcome
    elapsed = time.perf_counter() - ctx.started
    first = outcome.first_byte_at if outcome.stream else None
    metadata: dict[str, Any] = {"operation": ctx.operation}
    if estimated:
        metadata["estimated"] = True
    if clamped:
        metadata["usage_clamped"] = True
    if invalid:
        metadata["usage_invalid"] = True
    if ctx.usage and "units" in ctx.usage and (units := units_of(ctx.usage)):  # media units (spend/units.py)
        metadata["units"] = units
    if ctx.service_tier is not None:  # the OpenAI tier that served it, which priced it
        metadata["service_tier"] = ctx.service_tier
    if outcome.client_disconnected:
        metadata["client_disconnected"] = True
        if outcome.stream:  # left a stream that began: its status stays the one sent (200)
            metadata["abandoned"] = True
    if ctx.usage_metadata:
        metadata.update(ctx.usage_metadata)
    error = outcome.error_code if status >= 400 else None
    p = ctx.principal
    tags: tuple[str, ...] = ()
    if p is None:
        tenant, key, team, user = DEFAULT_TENANT, None, None, None
    else:
        tenant, key, team, user, tags = p.tenant_id or DEFAULT_TENANT, p.key_id, p.team_id, p.user_id, p.tags
    if ctx.route_tags:  # e.g. the arm of a split
        tags = (*tags, *ctx.route_tags)
    return (
        ctx.request_id, tenant, key, team, user, target.name, target.provider, status,
        prompt, completion, nano, round_float(elapsed * 1000),
        # created_at: when the request started, in microseconds since the epoch
        time.time_ns() // 1000 - round_float(elapsed * 1_000_000), metadata,
        counted.cache_read, counted.cache_write_5m, counted.cache_write_1h, counted.reasoning,
        unpriced, round_float((first - ctx.started) * 1000) if first is not None else None,
        ctx.stream, error if isinstance(error, str) else None, target.model, tags,
        *counted[6:],  # image_input, audio_input, image_output, audio_output
        route.deployment or None, _attempts(ctx), *_timings(ctx), ctx.record_id, ctx.entry_id(),
    )


def _timings(ctx: RequestContext) -> tuple[int | None, int | None]:
    """The gateway's own milliseconds and the upstream's: the values of the response's
    ``x-switchboard-overhead-ms`` and ``x-switchboard-upstream-ms`` (ctx.split_time, fixed by
    whichever comes first, the headers or this record), rounded to whole milliseconds."""
    overhead, upstream = ctx.split_time()
    return round_float(milliseconds(overhead)), round_float(milliseconds(upstream))


def _attempts(ctx: RequestContext) -> list[dict[str, Any]] | None:
    """Every attempt of the request (pipeline/attempts.py), for the ledger's ``attempts``."""
    if not ctx.attempts:
        return None
    return [{"deployment": a.deployment, "group": a.group, "status": a.status, "code": a.code, "ms": a.ms}
            for a in ctx.attempts]
