"""Every admin error in the OpenAI error shape, like the rest of the gateway."""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from switchboard.errors import GatewayError
from switchboard.http.errors import MethodNotAllowed, unknown_url
from switchboard.http.openai_api import too_deep_body

_CODES = {"missing": "missing_required_parameter", "extra_forbidden": "unknown_parameter",
          "json_invalid": "invalid_json",
          # a field that exists but may not be changed (PATCH /admin/v1/keys/{id})
          "immutable_parameter": "immutable_parameter",
          # a field of the configuration file's that the API does not take (mcp servers' command)
          "unknown_parameter": "unknown_parameter"}


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(request: Request, status: int, body: dict[str, Any]) -> Response:
    """The error answer; its code and type are left in the request's state for the bridge
    (http/admin/bridge.py), so the metrics and the failure log name them as for any error."""
    error = body["error"]
    request.state.error_code = error.get("code")
    request.state.error_type = error.get("type")
    return _json(status, body)


# Characters of a ``param`` at most: the longest name a body may use (an MCP tool's price,
# ``tool_prices.<256 characters>``) fits; an unknown key of a megabyte is cut, not echoed twice.
MAX_PARAM = 300
# Names pydantic adds to a location for the member of a union that failed (``metadata.k.str``).
_UNION_TAG = re.compile(r"^(?:constrained-)?(?:str|int|float|bool|none|list|dict)$|\[")


def param_of(loc: tuple[Any, ...]) -> str | None:
    """A validation error's location as the error's ``param``: ``metadata.k``, ``split[0].percent``.
    FastAPI starts a location with the request part (``body``, ``query``, ``path``): only that
    first word goes, so a field or key of the same name (``metadata.path``) keeps its place."""
    if loc and loc[0] in ("body", "query", "path"):
        loc = loc[1:]
    parts = [str(p) for p in loc]
    while len(parts) > 1 and _UNION_TAG.search(parts[-1]):
        parts.pop()
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else ("." if out else "") + part
    return out[:MAX_PARAM] or None


def _body_error(first: dict[str, Any]) -> dict[str, Any] | None:
    """The error of a body that is not a JSON object at all (or is empty), in the model API's
    words (http/validate.py): pydantic's names it by a position (``[1]``), as a field type, or
    as a required field with no name."""
    kind, loc = first.get("type"), tuple(first.get("loc", ()))
    if kind == "json_invalid":  # loc ("body", <offset>): the offset is no parameter
        reason = (first.get("ctx") or {}).get("error")
        message = "the request body is not valid JSON" + (f": {reason}" if reason else "")
    elif kind == "model_attributes_type" and loc == ("body",):  # [], 3, "x", null
        message = "the request body must be a JSON object"
    elif kind == "missing" and loc == ("body",):  # no body at all: pydantic's bare "Field required"
        message = "the request body is empty; send a JSON object"
    else:
        return None
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": "invalid_json"}}


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"type": "invalid", "msg": "invalid request", "loc": ()}
    if (whole := _body_error(first)) is not None:
        return _error(request, 400, whole)
    param = param_of(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    body = {"error": {"message": f"{param}: {message}" if param else message,
                      "type": "invalid_request_error", "param": param,
                      "code": _CODES.get(str(first.get("type")), "invalid_value")}}
    return _error(request, 400, body)


def _unparsable_body(exc: HTTPException) -> dict[str, Any] | None:
    """FastAPI's own 400 for a body its JSON parser gave up on with something else than a
    decode error, as ``invalid_json`` (the model API's code), not a bare 400 ``api_error``.
    Python's parser recurses: a body nested deeper than its stack allows raises a RecursionError,
    at a depth that depends on the Python version (about 1,000 levels on 3.11 and 3.12, about
    10,000 on 3.13); a shallower body past the bound is refused by text_input.py. Both say the
    same (the bound), so the answer does not depend on the depth or on the version."""
    if exc.status_code != 400 or exc.__cause__ is None:
        return None
    if isinstance(exc.__cause__, RecursionError):
        return too_deep_body().to_openai()
    return {"error": {"message": "the request body is not valid JSON",
                      "type": "invalid_request_error", "param": None, "code": "invalid_json"}}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path
    if (whole := _unparsable_body(exc)) is not None:
        return _error(request, 400, whole)
    if exc.status_code == 404:
        return _error(request, 404, unknown_url(method, path).to_openai())
    if exc.status_code == 405:
        return _error(request, 405, MethodNotAllowed(f"method {method} is not allowed on {path}").to_openai())
    return _error(request, exc.status_code, GatewayError(str(exc.detail), status=exc.status_code).to_openai())


async def gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    response = _error(request, exc.status, exc.to_openai())
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(GatewayError, gateway_error)
