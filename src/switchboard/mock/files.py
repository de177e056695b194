"""OpenAI's files and batches, in memory: ``/v1/files`` and ``/v1/batches`` (and Azure's
``/openai/files`` and ``/openai/batches`` with ``api-version``).

Follows https://platform.openai.com/docs/api-reference/files and /batches: the file and batch
objects, list pages (``data``, ``has_more``, ``first_id``, ``last_id``), deletion, and a batch's
life ``validating`` -> ``in_progress`` -> ``completed`` (or ``cancelling`` -> ``cancelled``).

A batch completes on demand, never by time: each GET of it advances it one step, and it is
``completed`` on the ``mock_gets_to_complete``-th GET (a metadata value, default 2); a GET with
the header ``x-mock-batch-complete: 1`` completes it at once. On completion the mock answers
every line of the input file (``{"custom_id", "method", "url", "body"}``) as the endpoint would,
and writes the output file, one line per request with the response's ``usage``: ``prompt_tokens``
10 + the line's number (from 0), ``completion_tokens`` 5, unless the request body's
``metadata.mock_prompt_tokens`` / ``mock_completion_tokens`` say otherwise; the answer reports
``metadata.mock_model`` as its model when given (OpenAI reports an alias by its dated snapshot).
With the batch's metadata ``mock_batch_usage: "1"`` the completed batch also carries ``model``
and the summed ``usage``, as OpenAI's batches made since September 2025 do. With
``mock_output_faults: "N"`` the first N reads of the completed batch's output file's content
answer 503 (an upstream failing while the gateway reads the output to price the batch).

A batch's input file is validated on the batch's first GET (OpenAI validates while the batch is
``validating``): an empty file, or any line that is not a request object for the batch's
endpoint, fails the batch (``status: failed``, ``failed_at``, and ``errors`` listing each bad
line with its code, message, param and line number), as OpenAI does; nothing is answered.

``mock:latency_ms=N`` in an uploaded file's text, or in a batch's metadata values, delays the
upload's or the create's answer, and the file or batch is made only once it is over (a caller
that leaves meanwhile makes none), as for a message batch.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import azure
from switchboard.mock.common import json_response, new_id, now, request_controls
from switchboard.mock.openai import check_key, error

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses"})
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_counter = itertools.count(1)


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=now)
    faults: int = 0  # reads of its content still answered 503 (mock_output_faults)

    def obj(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


@dataclass
class _Batch:
    body: dict[str, Any]
    gets: int = 0


# OpenAI's objects and Azure's apart: an id is found only through the API that made it.
_STORES: dict[str, tuple[dict[str, _File], dict[str, _Batch]]] = {"openai": ({}, {}), "azure": ({}, {})}


def _files(request: Request) -> dict[str, _File]:
    return _STORES["azure" if request.url.path.startswith("/openai/") else "openai"][0]


def _batches(request: Request) -> dict[str, _Batch]:
    return _STORES["azure" if request.url.path.startswith("/openai/") else "openai"][1]


def _gate(request: Request) -> Response | None:
    if request.url.path.startswith("/openai/"):
        return azure.check(request)
    return check_key(request)


def _page(items: list[dict[str, Any]], request: Request) -> Response:
    after = request.query_params.get("after")
    try:
        limit = max(1, min(10_000, int(request.query_params.get("limit", "20"))))
    except ValueError:
        return error(400, "limit must be an integer", param="limit")
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return json_response({"object": "list", "data": page, "has_more": len(items) > limit,
                          "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None})


def _form(request: Request, raw: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """name -> (filename, content) of a multipart/form-data body; None when it is not one."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data") or not _BOUNDARY.search(ctype):
        return None
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        return None
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        payload = part.get_payload(decode=True)
        out[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return out


async def upload(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    form = _form(request, await request.body())
    if form is None or "file" not in form or form["file"][0] is None:
        return error(400, "the request must be multipart/form-data with a 'file' part", param="file")
    purpose = form.get("purpose", (None, b""))[1].decode("utf-8", "replace")
    if purpose not in PURPOSES:
        return error(400, f"'{purpose}' is not one of {sorted(PURPOSES)} - 'purpose'", param="purpose")
    filename, data = form["file"]
    # The directives are in the file's text (a form has no JSON to hold them).
    controls = request_controls(request, data.decode("utf-8", "replace"))
    await controls.sleep(controls.latency_ms)  # stored only then (not at all if the caller left)
    f = _File(new_id("file-"), filename or "upload", purpose, data)
    _files(request)[f.id] = f
    return json_response(f.obj())


async def list_files(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    purpose = request.query_params.get("purpose")
    items = [f.obj() for f in reversed(_files(request).values()) if purpose is None or f.purpose == purpose]
    return _page(items, request)


def _file(request: Request) -> _File | Response:
    f = _files(request).get(request.path_params["file_id"])
    if f is None:
        return error(404, f"No such File object: {request.path_params['file_id']}", param="id")
    return f


async def get_file(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    f = _file(request)
    return f if isinstance(f, Response) else json_response(f.obj())


async def delete_file(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    f = _file(request)
    if isinstance(f, Response):
        return f
    del _files(request)[f.id]
    return json_response({"id": f.id, "object": "file", "deleted": True})


async def file_content(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    f = _file(request)
    if isinstance(f, Response):
        return f
    if f.faults > 0:
        f.faults -= 1
        return error(503, "mock: the output file cannot be read right now (mock_output_faults)")
    return Response(f.data, media_type="application/octet-stream")


async def create_batch(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    source = _files(request).get(str(body.get("input_file_id")))
    if source is None:
        return error(400, f"Invalid 'input_file_id': '{body.get('input_file_id')}'", param="input_file_id")
    if body.get("endpoint") not in ENDPOINTS:
        return error(400, f"Invalid 'endpoint': '{body.get('endpoint')}'", param="endpoint")
    if body.get("completion_window") != "24h":
        return error(400, "Invalid 'completion_window'", param="completion_window")
    controls = request_controls(request, body)  # directives: in the metadata's values
    await controls.sleep(controls.latency_ms)  # created only then (not at all if the caller left)
    lines = [line for line in source.data.splitlines() if line.strip()]
    batch = {
        "id": new_id("batch_"), "object": "batch", "endpoint": body["endpoint"], "errors": None,
        "input_file_id": source.id, "completion_window": "24h", "status": "validating",
        "output_file_id": None, "error_file_id": None, "created_at": now(), "in_progress_at": None,
        "expires_at": now() + 86_400, "finalizing_at": None, "completed_at": None, "failed_at": None,
        "expired_at": None, "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": body.get("metadata"),
    }
    _batches(request)[batch["id"]] = _Batch(batch)
    return json_response(batch)


MAX_ERRORS = 100  # bad lines listed in a failed batch's errors


def _line_error(number: int, line: bytes, endpoint: str) -> dict[str, Any] | None:
    """What OpenAI's validation says of one input line, or None when it is a request it runs."""
    def err(code: str, message: str, param: str | None = None) -> dict[str, Any]:
        return {"code": code, "message": message, "param": param, "line": number}

    try:
        request = orjson.loads(line)
    except orjson.JSONDecodeError:
        return err("invalid_json_line", "This line is not parseable as valid JSON.")
    if not isinstance(request, dict):
        return err("invalid_json_line", "This line is not a JSON object.")
    for name in ("custom_id", "method", "url", "body"):
        if request.get(name) is None:
            return err("missing_required_parameter", f"Missing required parameter: '{name}'.", name)
    if not isinstance(request["custom_id"], str):
        return err("invalid_value", "'custom_id' must be a string.", "custom_id")
    if request["method"] != "POST":
        return err("invalid_value", "Only the POST method is supported.", "method")
    if request["url"] != endpoint:
        return err("invalid_url", f"The URL provided for this request does not match the batch endpoint "
                   f"{endpoint}.", "url")
    if not isinstance(request["body"], dict):
        return err("invalid_value", "'body' must be a JSON object.", "body")
    return None


def _validation_errors(source: _File | None, endpoint: str) -> list[dict[str, Any]]:
    """The errors of a batch's input file (empty: it is valid)."""
    if source is None:
        return [{"code": "invalid_file", "message": "The input file no longer exists.",
                 "param": "input_file_id", "line": None}]
    errors = []
    for number, line in enumerate(source.data.splitlines(), 1):
        if line.strip() and (problem := _line_error(number, line, endpoint)) is not None:
            errors.append(problem)
            if len(errors) == MAX_ERRORS:
                break
    if not errors and not source.data.strip():
        errors.append({"code": "empty_file", "message": "The batch input file is empty.", "param": None,
                       "line": None})
    return errors


def _fail(batch: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    batch.update(status="failed", failed_at=now(), errors={"object": "list", "data": errors},
                 request_counts={"total": 0, "completed": 0, "failed": 0})


def _count(meta: Any, name: str, default: int) -> int:
    """A mock usage directive of a request's metadata; its default when absent or not a count."""
    value = meta.get(name) if isinstance(meta, dict) else None
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _answer(n: int, line: bytes, model_default: str) -> bytes:
    request = orjson.loads(line)  # validated before (_line_error): a request object with a body
    body = request["body"]
    meta = body.get("metadata")
    prompt = _count(meta, "mock_prompt_tokens", 10 + n)
    completion = _count(meta, "mock_completion_tokens", 5)
    model = body.get("model") or model_default
    reported = meta.get("mock_model") if isinstance(meta, dict) else None
    if isinstance(reported, str) and reported:  # as OpenAI reports an alias by its dated snapshot
        model = reported
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    message = {"role": "assistant", "content": "mock batch answer"}
    response = {"id": f"chatcmpl-mock-{next(_counter)}", "object": "chat.completion", "created": now(),
                "model": model, "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": usage}
    out = {"id": f"batch_req_{next(_counter)}", "custom_id": request.get("custom_id"),
           "response": {"status_code": 200, "request_id": new_id("req_"), "body": response}, "error": None}
    return orjson.dumps(out)


def _complete(files: dict[str, _File], batch: dict[str, Any]) -> None:
    source = files.get(batch["input_file_id"])
    if source is None:  # deleted while the batch ran
        _fail(batch, _validation_errors(None, batch["endpoint"]))
        return
    lines = [line for line in source.data.splitlines() if line.strip()]
    answers = [_answer(n, line, "gpt-4o-mini") for n, line in enumerate(lines)]
    output = b"\n".join(answers) + b"\n"
    meta = batch.get("metadata")
    out = _File(new_id("file-"), "batch_output.jsonl", "batch_output", output,
                faults=_count(meta, "mock_output_faults", 0))
    files[out.id] = out
    t = now()
    batch.update(status="completed", output_file_id=out.id, in_progress_at=batch["in_progress_at"] or t,
                 finalizing_at=t, completed_at=t,
                 request_counts={"total": len(lines), "completed": len(lines), "failed": 0})
    if isinstance(meta, dict) and meta.get("mock_batch_usage") == "1":
        batch.update(_batch_usage(answers))


def _batch_usage(answers: list[bytes]) -> dict[str, Any]:
    """The batch object's ``model`` and summed ``usage``, as OpenAI reports them on batches made
    since September 2025 (the first answer's model)."""
    bodies = [orjson.loads(a)["response"]["body"] for a in answers]
    prompt = sum(b["usage"]["prompt_tokens"] for b in bodies)
    completion = sum(b["usage"]["completion_tokens"] for b in bodies)
    return {"model": bodies[0]["model"] if bodies else None, "usage": {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion}}


def _batch(request: Request) -> _Batch | Response:
    b = _batches(request).get(request.path_params["batch_id"])
    if b is None:
        return error(404, f"No batch found with id '{request.path_params['batch_id']}'.", param="id")
    return b


async def get_batch(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    b = _batch(request)
    if isinstance(b, Response):
        return b
    batch = b.body
    b.gets += 1
    if batch["status"] == "validating" and (
            errors := _validation_errors(_files(request).get(batch["input_file_id"]), batch["endpoint"])):
        _fail(batch, errors)
    elif batch["status"] in ("validating", "in_progress"):
        needed = _count(batch.get("metadata"), "mock_gets_to_complete", 2)
        if request.headers.get("x-mock-batch-complete") == "1" or b.gets >= needed:
            _complete(_files(request), batch)
        else:
            batch.update(status="in_progress", in_progress_at=batch["in_progress_at"] or now())
    elif batch["status"] == "cancelling":
        batch.update(status="cancelled", cancelled_at=now())
    return json_response(batch)


async def cancel_batch(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    b = _batch(request)
    if isinstance(b, Response):
        return b
    if b.body["status"] in ("validating", "in_progress"):
        b.body.update(status="cancelling", cancelling_at=now())
    return json_response(b.body)


async def list_batches(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    return _page([b.body for b in reversed(_batches(request).values())], request)


def routes() -> list[Route]:
    out: list[Route] = []
    for base in ("/v1", "/openai"):
        out += [
            Route(f"{base}/files", upload, methods=["POST"]),
            Route(f"{base}/files", list_files, methods=["GET"]),
            Route(f"{base}/files/{{file_id}}", get_file, methods=["GET"]),
            Route(f"{base}/files/{{file_id}}", delete_file, methods=["DELETE"]),
            Route(f"{base}/files/{{file_id}}/content", file_content, methods=["GET"]),
            Route(f"{base}/batches", create_batch, methods=["POST"]),
            Route(f"{base}/batches", list_batches, methods=["GET"]),
            Route(f"{base}/batches/{{batch_id}}", get_batch, methods=["GET"]),
            Route(f"{base}/batches/{{batch_id}}/cancel", cancel_batch, methods=["POST"]),
        ]
    return out
