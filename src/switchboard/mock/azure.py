"""Azure OpenAI's wire format: OpenAI's bodies on ``/openai/deployments/{deployment}/...``.

Strict where Azure is (https://learn.microsoft.com/azure/ai-services/openai/reference):
``api-version`` is required (without it Azure answers 404 ``Resource not found``), the key
goes in the ``api-key`` header (a bearer token is accepted too, like an Entra ID token),
``stream_options`` is refused before API version 2024-09-01-preview, and errors use Azure's
bodies: ``{"error": {"code": "429", ...}}`` with ``retry-after`` and ``retry-after-ms``, content
filtering as code ``content_filter`` with an ``innererror``. Streams start with a
``prompt_filter_results`` chunk that has no choices, as Azure's do.

The answers themselves come from :mod:`switchboard.mock.openai`, called with the request
re-addressed to it. Directive ``mock:error_code=content_filter`` without a status filters the
completion instead (200 with ``finish_reason: content_filter``).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message

from switchboard.mock import openai
from switchboard.mock import responses as native_responses
from switchboard.mock.common import before_answer, json_response, new_id, now, read_json, request_controls
from switchboard.mock.controls import Controls

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_FILTER_OK = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
_FILTER_HIT = {**_FILTER_OK, "violence": {"filtered": True, "severity": "high"}}
_MESSAGES = {
    400: "Invalid request.",
    401: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource.",
    404: "Resource not found",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The service is temporarily unable to process your request. Please try again later.",
}


_FILTERED = ("The response was filtered due to the prompt triggering Azure OpenAI's content management "
             "policy. Please modify your prompt and retry.")
_CONTEXT = ("This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 "
            "tokens. Please reduce the length of the messages.")


def error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
          extra: dict[str, Any] | None = None) -> Response:
    body = {"error": {"code": code or str(status), "message": message, **(extra or {})}}
    return json_response(body, status, headers)


def _content_filter_error() -> Response:
    inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": _FILTER_HIT}
    return error(400, _FILTERED, "content_filter",
                 extra={"param": "prompt", "type": None, "status": 400, "innererror": inner})


def _rate_limited(c: Controls, operation: str, version: str) -> Response:
    # Sent as given (a date, or garbage, for the gateway's handling of them), as the OpenAI
    # mock does; retry-after-ms as given too, else the same delay when it is a number of seconds.
    seconds = c.retry_after or "1"
    headers = {"retry-after": seconds}
    if ms := c.retry_after_ms or _milliseconds(seconds):
        headers["retry-after-ms"] = ms
    message = (f"Requests to the {operation} Operation under Azure OpenAI API version {version} have "
               "exceeded token rate limit of your current AIServices S0 pricing tier. "
               f"Please retry after {seconds} seconds.")
    return error(429, message, headers=headers)


def _milliseconds(seconds: str) -> str:
    """``seconds`` in milliseconds when it is a finite number, else ""."""
    try:
        value = float(seconds)
    except ValueError:
        return ""
    return str(int(value * 1000)) if math.isfinite(value) else ""


def injected(c: Controls, operation: str, version: str) -> Response | None:
    if not c.status:
        return None
    if c.status == 429:
        return _rate_limited(c, operation, version)
    if c.error_code == "content_filter":
        return _content_filter_error()
    if c.error_code == "context_length_exceeded":  # OpenAI's own body, as Azure passes it on
        return openai.error(c.status, _CONTEXT, "context_length_exceeded", "messages")
    return error(c.status, _MESSAGES.get(c.status, f"mock: injected error {c.status}"), c.error_code or None)


def check(request: Request) -> Response | None:
    """Azure's gatekeeping, in its order: the route needs api-version, then a valid key."""
    version = request.query_params.get("api-version", "")
    if not _VERSION.match(version):
        return error(404, _MESSAGES[404])
    key = request.app.state.api_key
    given = request.headers.get("api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if key and given != key:
        return error(401, _MESSAGES[401])
    return None


def _as_openai(request: Request, body: dict[str, Any]) -> Request:
    """The same request, addressed to the OpenAI mock: bearer auth and the deployment as model."""
    key = request.app.state.api_key
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"authorization", b"api-key")]
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    raw = orjson.dumps(body)

    async def receive() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


# Chat fields added in API version 2024-09-01-preview (Microsoft's API version changelog).
_SINCE_2024_09 = ("stream_options", "max_completion_tokens", "parallel_tool_calls")


def _too_old_for(body: dict[str, Any], version: str) -> Response | None:
    for name in _SINCE_2024_09:
        if body.get(name) is not None and version[:10] < "2024-09-01":
            return error(400, f"Unrecognized request argument supplied: {name}", "BadRequest")
    return None


async def _prepared(request: Request, operation: str) -> tuple[dict[str, Any], Controls] | Response:
    if (problem := check(request)) is not None:
        return problem
    body = await read_json(request)
    if not isinstance(body, dict):
        return error(400, "We could not parse the JSON body of your request.", "BadRequest")
    version = request.query_params["api-version"]
    if (problem := _too_old_for(body, version)) is not None:
        return problem
    c = request_controls(request, body)
    if (fault := injected(c, operation, version)) is not None:
        return fault
    body["model"] = request.path_params["deployment"]
    return body, c


def _filtered_completion(body: dict[str, Any]) -> Response:
    return json_response({
        "id": new_id("chatcmpl-"), "object": "chat.completion", "created": now(), "model": body["model"],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER_OK}],
        "choices": [{"index": 0, "finish_reason": "content_filter", "logprobs": None,
                     "content_filter_results": _FILTER_HIT,
                     "message": {"role": "assistant", "content": None}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}})


async def _with_filter_chunk(events: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
             "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER_OK}]}
    yield b"data: " + orjson.dumps(first) + b"\n\n"
    try:
        async for event in events:
            yield event if isinstance(event, bytes) else str(event).encode()
    finally:
        close = getattr(events, "aclose", None)  # a client gone mid-stream ends the inner stream now
        if close is not None:
            await close()


def _azure_flavoured(response: Response) -> Response:
    if isinstance(response, StreamingResponse):
        return StreamingResponse(_with_filter_chunk(response.body_iterator), response.status_code,
                                 media_type="text/event-stream")
    if response.status_code != 200:
        return response
    obj = orjson.loads(response.body)
    obj["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTER_OK}]
    for choice in obj.get("choices") or ():
        choice["content_filter_results"] = _FILTER_OK
    return json_response(obj)


async def chat(request: Request) -> Response:
    prepared = await _prepared(request, "ChatCompletions_Create")
    if isinstance(prepared, Response):
        return prepared
    body, c = prepared
    if c.error_code == "content_filter":
        await before_answer(c)
        return _filtered_completion(body)
    return _azure_flavoured(await openai.chat(_as_openai(request, body)))


async def completions(request: Request) -> Response:
    prepared = await _prepared(request, "Completions_Create")
    if isinstance(prepared, Response):
        return prepared
    return _azure_flavoured(await openai.completions(_as_openai(request, prepared[0])))


async def embeddings(request: Request) -> Response:
    prepared = await _prepared(request, "Embeddings_Create")
    if isinstance(prepared, Response):
        return prepared
    return await openai.embeddings(_as_openai(request, prepared[0]))


async def responses(request: Request) -> Response:
    """The Responses API, natively (mock/responses.py); the deployment is the body's model."""
    version = request.query_params.get("api-version", "")
    return await native_responses.answer(
        request, check, lambda c: injected(c, "Responses_Create", version), error
    )


def routes() -> list[Route]:
    base = "/openai/deployments/{deployment}"
    return [
        Route("/openai/responses", responses, methods=["POST"]),
        Route(f"{base}/chat/completions", chat, methods=["POST"]),
        Route(f"{base}/completions", completions, methods=["POST"]),
        Route(f"{base}/embeddings", embeddings, methods=["POST"]),
    ]
