"""Anthropic's Message Batches, in memory: ``/v1/messages/batches`` (create, retrieve, cancel,
delete, results), after https://platform.claude.com/docs/en/api/creating-message-batches.

A batch ends on demand, never by time: it is ``in_progress`` until its second GET (or a GET with
the header ``x-mock-batch-complete: 1``), then ``ended``, every request answered as
``POST /v1/messages`` would answer it (mock/anthropic.py; a request that API refuses is
``errored``; a model id ending ``-latest`` is reported as ``-20250219``, a dated snapshot).
A cancelled batch is ``canceling`` until its next GET, then ``ended`` with every
request ``canceled``. Results are JSONL at ``results_url`` (absolute, on this mock); a batch
is deleted only once it has ended. ``mock:latency_ms=N`` in a request delays the create's answer
(the batch is created once it is over). A batch created with ``mock:capture=<marker>`` in a request
has its later calls recorded under that marker too (capture.py). ``mock:results_gone=1`` in a
request: the ended batch's results answer 404, as Anthropic's do once they have expired (29 days).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import anthropic as A
from switchboard.mock.capture import Captures
from switchboard.mock.common import json_response, new_id, read_json, request_controls
from switchboard.mock.controls import Controls, controls_for

COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")
LATEST, SNAPSHOT = "-latest", "-20250219"  # a "-latest" model's results report a dated id


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class _Batch:
    obj: dict[str, Any]
    requests: list[dict[str, Any]]
    gets: int = 0
    results: list[bytes] = field(default_factory=list)
    results_gone: bool = False


_BATCHES: dict[str, _Batch] = {}


def _result(request: dict[str, Any], canceled: bool) -> dict[str, Any]:
    if canceled:
        return {"type": "canceled"}
    params = request["params"]
    try:
        body = A.validate(params)
    except A.Invalid as exc:
        return {"type": "errored", "error": A.error_body("invalid_request_error", str(exc))}
    controls = controls_for(Controls(), {}, body)  # the request's own directives (web_searches)
    reply = A.answer(body, controls)
    message = A._message(body, reply, A.reported_usage(body, reply, controls))
    if message["model"].endswith(LATEST):  # as Anthropic does: the alias's dated snapshot reports
        message["model"] = message["model"][:-len(LATEST)] + SNAPSHOT
    return {"type": "succeeded", "message": message}


def _end(batch: _Batch, request: Request, canceled: bool) -> None:
    counts = dict.fromkeys(COUNTS, 0)
    for r in batch.requests:
        result = _result(r, canceled)
        counts[result["type"]] += 1
        batch.results.append(orjson.dumps({"custom_id": r["custom_id"], "result": result}) + b"\n")
    batch_id = batch.obj["id"]
    batch.obj.update(processing_status="ended", request_counts=counts, ended_at=_time(datetime.now(UTC)),
                     results_url=f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{batch_id}/results")


async def create(request: Request) -> Response:
    if (problem := A.check_headers(request)) is not None:
        return problem
    body = await read_json(request)
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return A.error(400, "requests: Field required")
    ids = [r.get("custom_id") if isinstance(r, dict) else None for r in requests]
    if any(not isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        return A.error(400, "requests: every custom_id must be a unique string")
    if any(not isinstance(r.get("params"), dict) for r in requests):
        return A.error(400, "requests: every request needs params")
    controls = request_controls(request, body)
    await controls.sleep(controls.latency_ms)  # created only then (not at all if the caller left)
    created, batch_id = datetime.now(UTC), new_id("msgbatch_")
    obj: dict[str, Any] = {"id": batch_id, "type": "message_batch", "processing_status": "in_progress",
           "request_counts": {**dict.fromkeys(COUNTS, 0), "processing": len(requests)},
           "ended_at": None, "created_at": _time(created), "expires_at": _time(created + timedelta(hours=24)),
           "archived_at": None, "cancel_initiated_at": None, "results_url": None}
    _BATCHES[batch_id] = _Batch(obj, requests, results_gone=bool(controls.results_gone))
    if marker := controls.capture:
        captures: Captures = request.app.state.captures
        captures.follow(f"/v1/messages/batches/{batch_id}", marker)
    return json_response(obj)


def _found(request: Request) -> _Batch | Response:
    if (problem := A.check_headers(request)) is not None:
        return problem
    batch = _BATCHES.get(request.path_params["batch_id"])
    if batch is None:
        return A.error(404, f"Message batch {request.path_params['batch_id']} not found")
    return batch


async def retrieve(request: Request) -> Response:
    batch = _found(request)
    if isinstance(batch, Response):
        return batch
    status = batch.obj["processing_status"]
    batch.gets += 1
    if status == "canceling":
        _end(batch, request, canceled=True)
    elif status == "in_progress" and (batch.gets >= 2 or request.headers.get("x-mock-batch-complete") == "1"):
        _end(batch, request, canceled=False)
    return json_response(batch.obj)


async def cancel(request: Request) -> Response:
    batch = _found(request)
    if isinstance(batch, Response):
        return batch
    if batch.obj["processing_status"] == "in_progress":
        batch.obj.update(processing_status="canceling", cancel_initiated_at=_time(datetime.now(UTC)))
    return json_response(batch.obj)


async def delete(request: Request) -> Response:
    batch = _found(request)
    if isinstance(batch, Response):
        return batch
    if batch.obj["processing_status"] != "ended":
        return A.error(400, "Message batches can only be deleted once they have finished processing")
    del _BATCHES[batch.obj["id"]]
    return json_response({"id": batch.obj["id"], "type": "message_batch_deleted"})


async def results(request: Request) -> Response:
    batch = _found(request)
    if isinstance(batch, Response):
        return batch
    if batch.obj["processing_status"] != "ended":
        return A.error(400, "the batch has not ended yet: no results")
    if batch.results_gone:
        return A.error(404, f"Message batch {batch.obj['id']} has no results any more: they have expired")
    return Response(b"".join(batch.results), media_type="application/binary")


def routes() -> list[Route]:
    return [
        Route("/v1/messages/batches", create, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}", retrieve, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", delete, methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", results, methods=["GET"]),
    ]
