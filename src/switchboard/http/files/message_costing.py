"""An ended message batch's usage: its results file read line by line (bounded as a batch's
output file is, costing.lines), the ``usage`` of every succeeded request summed per model.

The record itself is the OpenAI batches' (costing.BatchPricer.record): one usage-ledger row,
request id = the batch id, at the batch price factor, created at the batch's ``ended_at``."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import orjson

from switchboard.http.files.costing import ModelTotals, lines
from switchboard.http.files.message_upstream import BATCHES_PATH
from switchboard.http.files.upstream import Upstream, object_path
from switchboard.providers.anthropic.response import usage as canonical_usage
from switchboard.spend.cost import split


def results_path(batch_id: str) -> str:
    """The results of a batch at its provider: the gateway builds it (the upstream's
    ``results_url`` is never followed, so nothing but the provider is sent the credential)."""
    return object_path(BATCHES_PATH.lstrip("/"), batch_id, "/results")


def line_usage(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """(model, canonical usage) of a succeeded result line; None for the others and noise."""
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
    return message["model"], canonical_usage(message.get("usage"))


async def totals(upstream: Upstream, batch_id: str, limit: int) -> dict[str, ModelTotals]:
    out: dict[str, ModelTotals] = {}
    stream = await upstream.open(results_path(batch_id))
    try:
        async for line in lines(stream.chunks(), limit):
            found = line_usage(line)
            if found is not None:
                out.setdefault(found[0], ModelTotals()).add(split(found[1]))
    finally:
        await stream.close()
    return out


def as_finished(batch: dict[str, Any]) -> dict[str, Any]:
    """The fields of an ended message batch the OpenAI batches' pricer reads: its status and
    when it ended, in seconds (``ended_at`` is RFC 3339)."""
    ended = batch.get("ended_at")
    shown: dict[str, Any] = {"status": batch.get("processing_status")}
    if isinstance(ended, str):
        with contextlib.suppress(ValueError):
            shown["completed_at"] = int(datetime.fromisoformat(ended.replace("Z", "+00:00")).timestamp())
    return shown
