"""A finished batch's cost: its output file's per-line usage priced from the catalog (with the
model entry's own prices when a served model names that upstream model), times the Batch API's
discount (``files.batch_price_factor``), as ONE usage-ledger record whose request id is the
batch id. The ledger's key (request id, created_at) makes the record idempotent: created_at is
the batch's own completion time, so every instance and every retry writes the same row."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

from switchboard.catalog import Catalog, ModelInfo, normalise, stripped
from switchboard.errors import GatewayError
from switchboard.http.files.upstream import Upstream, object_path
from switchboard.routing.live import LiveRouting
from switchboard.spend.cost import Cost, Prices, Tokens, cost, is_unpriced, split
from switchboard.spend.units import with_units
from switchboard.stores.protocols import OwnedObject, UsageRecord

log = logging.getLogger("switchboard.files")

MAX_LINE_BYTES = 16 * 1024 * 1024
_NANO = Decimal("0.000000001")
_TIMES = ("completed_at", "failed_at", "expired_at", "cancelled_at", "finalizing_at")
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


# A model's long-context threshold (its catalog record's, None: none), by the model a line names.
Threshold = Callable[[str], int | None]


@dataclass
class ModelTotals:
    tokens: list[int] = field(default_factory=lambda: [0] * 10)
    requests: int = 0
    # Of ``tokens``, those of the requests whose own prompt was over the model's long-context
    # threshold: each request of a batch is billed on its own, so only these cost the
    # long-context prices, however long the batch's prompts are together.
    long: list[int] = field(default_factory=lambda: [0] * 10)
    # Units billed apart from the tokens (spend/units.py): a message batch's web searches.
    units: dict[str, int | float] = field(default_factory=dict)

    def add(self, counted: Tokens, threshold: int | None = None,
            units: dict[str, int | float] | None = None) -> None:
        self.requests += 1
        for i, n in enumerate(counted):
            self.tokens[i] += n
        for key, count in (units or {}).items():
            self.units[key] = self.units.get(key, 0) + count
        if threshold is not None and counted.prompt > threshold:
            for i, n in enumerate(counted):
                self.long[i] += n


class OutputTooLarge(Exception):
    pass


class Totals(dict[str, ModelTotals]):
    """Tokens per model; ``cut``: counted from the output file's first ``files.max_output_bytes``
    only (the upstream reported no usage of its own for the whole batch); ``missing``: none, the
    output file being gone at the provider (and no usage of the batch's own either); ``served``:
    the model entry each model's requests were routed to (:func:`served_of`)."""

    cut = False
    missing = False
    served: dict[str, Any] | None = None


async def lines(chunks: AsyncGenerator[bytes, None], limit: int) -> AsyncIterator[bytes]:
    """The JSONL lines of a stream, read as they arrive, ``limit`` bytes in all: the whole lines
    within the limit are given before :class:`OutputTooLarge` is raised."""
    buf = bytearray()
    total = 0
    async with aclosing(chunks) as source:
        async for piece in source:
            over = total + len(piece) > limit
            if over:
                piece = piece[:limit - total]
            total += len(piece)
            buf += piece
            while (i := buf.find(b"\n")) >= 0:
                line = bytes(buf[:i])
                del buf[:i + 1]
                if line.strip():
                    yield line
            if over:
                raise OutputTooLarge(f"the batch output is over {limit} bytes (files.max_output_bytes)")
            if len(buf) > MAX_LINE_BYTES:
                raise OutputTooLarge("a batch output line is over 16 MiB")
    if buf.strip():
        yield bytes(buf)


# The model entry a request was routed to: (its name, the deployment).
Served = tuple[str, str]


def sent_models(rows: Iterable[tuple[str, str] | tuple[str, str, Served]]) -> dict[str, Any]:
    """What a batch's requests, ``(custom_id, model)`` or ``(custom_id, model, served)`` each,
    were sent for: ``{"models": [most used, ...], "requests": {custom_id: index}}``, ``requests``
    holding only the custom_ids not sent for the most used model (a one-model batch notes one
    id). With ``served``, also ``"served": {model: [entry, deployment]}``, by which each is
    priced: an upstream id sent for two entries is then noted once an entry, as
    ``"<id> (<entry>)"``."""
    sent = [(r[0], r[1], r[2] if len(r) > 2 else None) for r in rows]
    entries: dict[str, set[Served]] = {}
    for _, model, served in sent:
        if served is not None:
            entries.setdefault(model, set()).add(served)

    def label(model: str, served: Served | None) -> str:
        return model if served is None or len(entries[model]) == 1 else f"{model} ({served[0]})"

    labelled = [(custom_id, label(model, served), served) for custom_id, model, served in sent]
    counts = Counter(model for _, model, _ in labelled)
    models = [m for m, _ in counts.most_common()]
    index = {m: i for i, m in enumerate(models)}
    others = {custom_id: index[model] for custom_id, model, _ in labelled if model != models[0]}
    out: dict[str, Any] = {"models": models, "requests": others}
    served_by = {model: list(served) for _, model, served in labelled if served is not None}
    if served_by:
        out["served"] = served_by
    return out


def served_of(note: Any) -> dict[str, Served]:
    """The model entry each model of ``note`` (:func:`sent_models`) was routed to; none for a
    note written before entries were noted (priced by the upstream id, as then)."""
    served = note.get("served") if isinstance(note, dict) else None
    if not isinstance(served, dict):
        return {}
    return {m: (s[0], s[1]) for m, s in served.items()
            if isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s)}


def sent_model(custom_id: Any, reported: str, note: Any) -> str:
    """The model request ``custom_id`` was sent for (``note``: :func:`sent_models`);
    ``reported`` when not known (no note: a batch created before such notes were kept)."""
    models = note.get("models") if isinstance(note, dict) else None
    if not isinstance(models, list) or not models:
        return reported
    mapped = note.get("requests")
    i = mapped.get(custom_id, 0) if isinstance(mapped, dict) and isinstance(custom_id, str) else 0
    found = models[i] if isinstance(i, int) and 0 <= i < len(models) else None
    return found if isinstance(found, str) else reported  # None: a model priced as reported


def line_usage(line: bytes, note: Any = None) -> tuple[str, dict[str, Any]] | None:
    """(model, usage) of one output line answered with a 2xx; None for failures and noise. The
    model is the one the line's request was sent for when ``note`` (:func:`sent_models`) says,
    else the one the answer reports."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    response = obj.get("response") if isinstance(obj, dict) else None
    if not isinstance(response, dict):
        return None
    status = response.get("status_code")
    body = response.get("body")
    if not isinstance(body, dict) or (isinstance(status, int) and status >= 300):
        return None
    usage = body.get("usage")
    model = body.get("model")
    if not isinstance(usage, dict) or not isinstance(model, str):
        return None
    if "prompt_tokens" not in usage and "input_tokens" in usage:  # a Responses API line
        usage = {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
                 "prompt_tokens_details": {"cached_tokens": (usage.get("input_tokens_details") or {})
                                           .get("cached_tokens")},
                 "completion_tokens_details": usage.get("output_tokens_details")}
    return sent_model(obj.get("custom_id"), model, note), usage


class BatchPricer:
    def __init__(self, catalog: Catalog, routing: LiveRouting, prices: Prices, factor: float,
                 max_output_bytes: int) -> None:
        self._catalog = catalog
        self._routing = routing
        self._prices = prices
        self._factor = Decimal(repr(factor))
        self._max_output = max_output_bytes

    def info(self, upstream: Upstream, model: str, served: Served | None = None) -> ModelInfo | None:
        """A served model's record when one of its deployments is this provider's ``model``
        (its ``info:`` prices apply), else the catalog's record for the provider type.

        An output line reports the model that answered, which for an alias is its dated
        snapshot (``gpt-4o-mini`` answers as ``gpt-4o-mini-2024-07-18``): no deployment names
        that, so the deployment whose upstream id is ``model`` without its date or version
        suffix is the one the line asked for (a snapshot a deployment names itself matched
        first), unless the catalog prices that snapshot on its own.

        ``served``: the model entry and deployment the line's request was routed to, whose record
        it is while the model table still has it (two entries may name one upstream id)."""
        if served is not None:
            for route in self._routing.all_routes():
                if (route.target.provider == upstream.provider and route.target.name == served[0]
                        and route.deployment == served[1]):
                    found = self._prices.of_route(route)
                    if found is not None:
                        return found
        return self._info(upstream.provider, upstream.type, model)

    def thresholds(self, upstream: Upstream, note: Any = None) -> Threshold:
        """The long-context threshold of each model a batch's lines name, looked up once a model
        (``note``: :func:`sent_models`, the entries they were routed to)."""
        found: dict[str, int | None] = {}
        served = served_of(note)

        def threshold(model: str) -> int | None:
            if model not in found:
                info = self.info(upstream, model, served.get(model))
                found[model] = None if info is None else info.long_context_threshold()
            return found[model]

        return threshold

    def unpriced(self, provider: str, provider_type: str, model: str) -> bool:
        """Whether a batch's requests for ``model`` on ``provider`` would be recorded unpriced:
        with ``spend.refuse_unpriced`` such a batch is refused when it is created."""
        return is_unpriced(self._info(provider, provider_type, model))

    def _info(self, provider: str, provider_type: str, model: str) -> ModelInfo | None:
        routes = [r for r in self._routing.all_routes() if r.target.provider == provider]
        keys: tuple[str, ...] = (model,)
        known = self._catalog.find(provider_type, model)
        if known is None or known.kind != "exact" or is_unpriced(known.info):
            # A snapshot the catalog prices on its own (gpt-4o-2024-05-13 is not gpt-4o's price)
            # is that model, which a line may name itself: only another snapshot is the alias's.
            keys = (model, *stripped(normalise(model)))
        for key in keys:
            for route in routes:
                if route.target.model == key or normalise(route.target.model) == key:
                    found = self._prices.of_route(route)
                    if found is not None:
                        return found
        return self._catalog.lookup(provider_type, model)

    def _priceable(self, upstream: Upstream, note: Any) -> Any:
        """``note`` without the models nothing prices on this provider (None in their place): a
        line may name a deployment no model entry lists, or one without prices or base_model,
        and its answer is then priced as the model it reports (the catalog's base model), not
        recorded unpriced at $0."""
        models = note.get("models") if isinstance(note, dict) else None
        if not isinstance(models, list):
            return note
        kept = [m if isinstance(m, str) and not is_unpriced(self._info(upstream.provider, upstream.type, m))
                else None for m in models]
        return {**note, "models": kept}

    async def totals(self, upstream: Upstream, batch: dict[str, Any], note: Any = None) -> Totals:
        """Tokens per model: from the output file's lines, else the batch's own ``usage``. An
        output over ``files.max_output_bytes`` (or with a line over 16 MiB) is priced by the
        batch's own ``usage`` when the upstream gives one, else by the lines read up to there
        (``cut``): never left unpriced, which would let a large enough batch run for free.
        ``note``: the model each line was sent for (:func:`sent_models`, an Azure batch's), by
        which its usage is priced instead of the model the answer reports."""
        out = Totals()
        note = self._priceable(upstream, note)
        threshold = self.thresholds(upstream, note)
        out.served = served_of(note)
        output = batch.get("output_file_id")
        if isinstance(output, str) and output:
            try:
                stream = await upstream.open(object_path("files", output, "/content"))
            except GatewayError as exc:
                if exc.status != 404:
                    raise  # retried later
                # Expired or deleted at the provider: it will not come back, so the batch is
                # recorded with what is known rather than retried every round for ever.
                reported = _reported(batch, note)
                if reported is not None:
                    return reported
                log.warning("batch %s: its output file %s is gone at the provider; its cost cannot be "
                            "read and is recorded unpriced", batch.get("id"), output)
                out.missing = True
                return out
            try:
                async for line in lines(stream.chunks(), self._max_output):
                    found = line_usage(line, note)
                    if found is not None:
                        out.setdefault(found[0], ModelTotals()).add(split(found[1]), threshold(found[0]))
            except OutputTooLarge as exc:
                reported = _reported(batch, note)
                if reported is not None:
                    return reported
                log.warning("batch %s: %s; priced by the lines read up to there", batch.get("id"), exc)
                out.cut = True
            finally:
                await stream.close()
        elif (reported := _reported(batch, note)) is not None:
            return reported
        return out

    def record(self, owned: OwnedObject, upstream: Upstream, batch: dict[str, Any],
               totals: dict[str, ModelTotals], tags: tuple[str, ...] = ()) -> UsageRecord:
        """The batch's one ledger record; ``tags``: its creator's key's, as a model call's
        record carries them (spend and analytics by tag)."""
        summed = [0] * 10
        usd = Decimal(0)
        unpriced = False
        per_model: dict[str, Any] = {}
        served = getattr(totals, "served", None) or {}
        for model, t in totals.items():
            counted = Tokens(*t.tokens)
            info = self.info(upstream, model, served.get(model))
            # The requests under the threshold at the standard prices, even when their prompts
            # together are over it; those over it at the long-context prices.
            short = cost(_standard(info), Tokens(*(a - b for a, b in zip(t.tokens, t.long, strict=True))))
            long = cost(info, Tokens(*t.long))
            # Units at their own prices, not at the batch's discount (it is the tokens').
            units = with_units(Cost(0, 0, False), info, counted, {"units": t.units}) if t.units else None
            unpriced = unpriced or short.unpriced or long.unpriced or (units is not None and units.unpriced)
            model_usd = (short.usd + long.usd) * self._factor + (units.usd if units is not None else 0)
            usd += model_usd
            per_model[model] = {"requests": t.requests, "prompt_tokens": counted.prompt,
                                "completion_tokens": counted.completion,
                                "cost_usd": str(model_usd.quantize(_NANO, ROUND_HALF_EVEN))}
            if t.units:
                per_model[model]["units"] = t.units
            summed = [a + b for a, b in zip(summed, t.tokens, strict=True)]
        tokens = Tokens(*summed)
        main = max(totals, key=lambda m: totals[m].requests) if totals else "batch"
        status = batch.get("status")
        requests = sum(t.requests for t in totals.values())
        flags: dict[str, Any] = {}
        if isinstance(totals, Totals) and totals.cut:
            flags["output_cut"] = True
        if isinstance(totals, Totals) and totals.missing:  # its cost unknown: the requests the batch reports
            flags["output_missing"] = True
            unpriced = True
            requests = _completed(batch) or 0
        return UsageRecord(
            request_id=owned.id, tenant_id=owned.tenant_id, model=main, key_id=owned.key_id,
            team_id=owned.team_id, user_id=owned.user_id, provider=owned.provider, status=200,
            prompt_tokens=tokens.prompt, completion_tokens=tokens.completion,
            cost_usd=usd.quantize(_NANO, ROUND_HALF_EVEN), latency_ms=0, created_at=finished_at(owned, batch),
            metadata={"operation": "batch", "endpoint": owned.purpose, "batch_status": status,
                      "requests": requests, "price_factor": str(self._factor), "models": per_model,
                      **flags},
            cache_read_tokens=tokens.cache_read, cache_write_5m_tokens=tokens.cache_write_5m,
            cache_write_1h_tokens=tokens.cache_write_1h, reasoning_tokens=tokens.reasoning,
            unpriced=unpriced, upstream_model=main if totals else None, tags=tags,
            image_input_tokens=tokens.image_input, audio_input_tokens=tokens.audio_input,
            image_output_tokens=tokens.image_output, audio_output_tokens=tokens.audio_output,
        )


def _standard(info: ModelInfo | None) -> ModelInfo | None:
    """``info`` without its long-context threshold: priced at the standard prices, whatever the
    prompt."""
    if info is None or info.long_context_threshold() is None:
        return info
    return info.model_copy(update={"long_context_threshold_tokens": None})


def _reported(batch: dict[str, Any], note: Any = None) -> Totals | None:
    """The batch's own ``usage`` (OpenAI reports it on batches created since September 2025) as
    the tokens of its ``model`` (of the one model its lines were sent for, when ``note`` says
    so); None when it has none."""
    usage, model = batch.get("usage"), batch.get("model")
    if not isinstance(usage, dict) or not isinstance(model, str) or not model:
        return None
    sent = note.get("models") if isinstance(note, dict) else None
    if isinstance(sent, list) and len(sent) == 1:
        model = sent_model(None, model, note)
    inputs, outputs = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    canonical = {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
                 "prompt_tokens_details": inputs if isinstance(inputs, dict) else None,
                 "completion_tokens_details": outputs if isinstance(outputs, dict) else None}
    totals = ModelTotals()
    totals.add(split(canonical))
    if done := _completed(batch):
        totals.requests = done  # the batch's requests, not the one usage
    out = Totals()
    out[model] = totals
    return out


def _completed(batch: dict[str, Any]) -> int | None:
    """How many of the batch's requests completed, as it reports (None when it does not)."""
    counts = batch.get("request_counts")
    done = counts.get("completed") if isinstance(counts, dict) else None
    return done if isinstance(done, int) and not isinstance(done, bool) and done > 0 else None


def finished_at(owned: OwnedObject, batch: dict[str, Any]) -> datetime:
    """When the batch ended, as the upstream says (the same on every instance), to the second.
    A time past year 9999 (milliseconds where seconds belong, say) is no date: without this
    check the batch's pricing failed on every read, and its cost was never recorded."""
    for name in _TIMES:
        value = batch.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _LAST_SECOND:
            return datetime.fromtimestamp(value, UTC)
    return owned.created_at
