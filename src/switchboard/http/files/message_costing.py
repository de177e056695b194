"""An ended message batch's usage: its results file read line by line (bounded as a batch's
output file is, costing.lines), the ``usage`` of every succeeded request summed per model.

The record itself is the OpenAI batches' (costing.BatchPricer.record): one usage-ledger row,
request id = the batch id, at the batch price factor, created at the batch's ``ended_at``.

A result is priced by the upstream model id its request was sent with, not by the ``model`` the
result reports: Anthropic answers an alias (``claude-sonnet-4-5``, ``...-latest``) with its dated
id, which no served model names, so its price would come from another catalog entry. The sent
ids are recorded at creation next to the batch (kind ``msgmodel``, :func:`sent_models`): the
distinct ids, the most used first, and the custom_ids sent with another one (so a one-model batch
notes one id, and the note is bounded by the batch's own bounds on requests and custom_ids), with
the model entry (and deployment) each was routed to: two entries may name one upstream id at
their own prices."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

import orjson

from switchboard.errors import GatewayError
from switchboard.http.files import costing
from switchboard.http.files.costing import ModelTotals, OutputTooLarge, Threshold, Totals, lines, sent_model
from switchboard.http.files.message_upstream import BATCHES_PATH
from switchboard.http.files.upstream import Upstream, object_path
from switchboard.providers.anthropic.response import usage as canonical_usage
from switchboard.routing.table import Route
from switchboard.spend.cost import split
from switchboard.spend.units import units_of

log = logging.getLogger("switchboard.files")


def results_path(batch_id: str) -> str:
    """The results of a batch at its provider: the gateway builds it (the upstream's
    ``results_url`` is never followed, so nothing but the provider is sent the credential)."""
    return object_path(BATCHES_PATH.lstrip("/"), batch_id, "/results")


def sent_models(sent: list[tuple[str, Route]]) -> dict[str, Any]:
    """What a batch's requests, ``(custom_id, the deployment it was routed to)`` each, were sent
    for (costing.sent_models): the upstream id and the model entry, whose ``info:`` prices it
    (two entries may name one upstream id at different prices)."""
    return costing.sent_models((c, r.target.model, (r.target.name, r.deployment)) for c, r in sent)


def line_usage(line: bytes, note: Any = None) -> tuple[str, dict[str, Any]] | None:
    """(model, canonical usage) of a succeeded result line, the model the one its request was
    sent for (``note``: :func:`sent_models`); None for the others and noise."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    result = obj.get("result") if isinstance(obj, dict) else None
    if not isinstance(result, dict) or result.get("type") != "succeeded":
        return None
    message = result.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("model"), str):
        return None
    return sent_model(obj.get("custom_id"), message["model"], note), canonical_usage(message.get("usage"))


async def totals(upstream: Upstream, batch_id: str, limit: int, note: Any = None,
                 threshold: Threshold | None = None) -> Totals:
    """Tokens per model of the succeeded results; results over ``limit`` (files.max_output_bytes)
    are priced by the lines read up to there (``cut``: Anthropic reports no usage of the whole
    batch), never left unpriced, which would let a large enough batch run for free. ``threshold``:
    each model's long-context threshold, past which a result's own prompt is priced at the
    long-context prices (costing.ModelTotals)."""
    out = Totals()
    out.served = costing.served_of(note)
    try:
        stream = await upstream.open(results_path(batch_id))
    except GatewayError as exc:
        if exc.status != 404:
            raise  # retried later
        # Gone at the provider (results expire 29 days after the batch's creation): they will not
        # come back, so the batch is recorded with what is known (as_finished's request counts)
        # rather than retried every round for ever, its owner's delete refused meanwhile.
        log.warning("message batch %s: its results are gone at the provider; its cost cannot be read "
                    "and is recorded unpriced", batch_id)
        out.missing = True
        return out
    try:
        async for line in lines(stream.chunks(), limit):
            found = line_usage(line, note)
            if found is not None:
                long = threshold(found[0]) if threshold is not None else None
                out.setdefault(found[0], ModelTotals()).add(split(found[1]), long, units_of(found[1]))
    except OutputTooLarge as exc:
        log.warning("message batch %s: %s; priced by the results read up to there", batch_id, exc)
        out.cut = True
    finally:
        await stream.close()
    return out


def as_finished(batch: dict[str, Any]) -> dict[str, Any]:
    """The fields of an ended message batch the OpenAI batches' pricer reads: its status, when it
    ended, in seconds (``ended_at`` is RFC 3339), and how many of its requests succeeded."""
    ended = batch.get("ended_at")
    shown: dict[str, Any] = {"status": batch.get("processing_status")}
    counts = batch.get("request_counts")
    if isinstance(counts, dict):  # its succeeded requests: what a batch whose results are gone records
        shown["request_counts"] = {"completed": counts.get("succeeded")}
    if isinstance(ended, str):
        with contextlib.suppress(ValueError):
            shown["completed_at"] = int(datetime.fromisoformat(ended.replace("Z", "+00:00")).timestamp())
    return shown
