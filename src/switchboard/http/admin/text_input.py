"""Text and numbers no admin route accepts: a NUL character (U+0000) or an unpaired surrogate,
anywhere, and in a JSON body a number that is not finite or an integer past 64 bits.

PostgreSQL text holds neither character (a query or a write carrying one fails in the driver,
which would be a 500), and SQLite's ``LIKE`` stops at a NUL (``q=%00x`` would match every
record), so both are refused up front, the same on either backend: a 400 ``invalid_value``
naming the parameter. The JSON parser the admin app uses (Python's) also reads ``NaN``,
``Infinity`` and ``1e309`` (as infinity), which JSON does not have, and integers of any size;
written back as JSON (a key's metadata, a prompt's parameters and schemas, a provider's
options) they failed (orjson refuses integers past 64 bits, a JSON column a NaN): a 500,
wherever such a number was nested. So they are refused here too, by the same walk.
One check for every route (installed as an application-wide dependency, app.py), so a new route
or filter is covered without thinking of it: the query string (names and values), the path's
parameters and every string and number of a JSON body (its keys too). It runs before the
route's own checks; a body that is not JSON is left to the route to refuse. The body is walked
only when its bytes may hold such a value (_may_hold_bad), and then in one pass: a 32 MiB body
of small items held the event loop, every request of the gateway with it, for about 10 seconds.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from typing import Any

from fastapi import Request

from switchboard.errors import InvalidRequest
from switchboard.http.admin.body_types import declared_at, is_decimal
from switchboard.http.openai_api import too_deep_body
from switchboard.jsonio import too_deep

_BAD = re.compile("[\x00\ud800-\udfff]")
# In a UTF-8 JSON body's bytes, what may be one of those or a number no store holds
# (_may_hold_bad): an escape, a surrogate's lead byte, the parser's extra words, 19 digits in a
# row, a 3-digit exponent. Plain searches, each one pass (one regex of all: 3 times slower).
_MARKS = (b"\\u", b"\xed", b"NaN", b"Infinity")
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_BIG_EXPONENT = re.compile(rb"[eE][-+]?[0-9]{3}")
MAX_SHOWN = 64  # characters of a parameter's name in an error
# The integers every store can hold: a BIGINT column, and orjson's range for a JSON one.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1


def problem_with(text: str) -> str | None:
    """Why no store can hold ``text`` (None: it can)."""
    found = _BAD.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain a NUL character (U+0000)"
    return "must be valid Unicode (an unpaired surrogate)"


def number_problem(value: float) -> str | None:
    """Why no store can hold the JSON number ``value`` (None: it can). ``bool`` is an int to
    Python, and always fits."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (JSON has no NaN or Infinity; 1e309 is out of range)"
    if isinstance(value, int) and not MIN_INT <= value <= MAX_INT:
        return "must be an integer from -2^63 to 2^63-1"
    return None


def _refuse(param: str, problem: str) -> InvalidRequest:
    shown = _BAD.sub("?", param)[:MAX_SHOWN] or "?"
    return InvalidRequest(f"{shown}: {problem}", param=shown, code="invalid_value")


def _keys(where: tuple[Any, Any] | None) -> tuple[Any, ...]:
    """The keys of a location kept as a chain of (parent, key) pairs, outermost first."""
    keys: list[Any] = []
    while where is not None:
        where, key = where
        keys.append(key)
    return tuple(reversed(keys))


def _decimal_field(route: Any, where: tuple[Any, Any]) -> bool:
    """Whether the route's body model declares the location a decimal number (``_in_json``)."""
    return is_decimal(declared_at(route, _keys(where)))


def _named(where: tuple[Any, Any] | None) -> str:
    """A location kept as a chain of (parent, key) pairs, as validation errors name one:
    ``metadata.k``, ``messages[0].content``. Built only for the one value refused."""
    out = ""
    for key in _keys(where):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _in_json(body: Any, route: Any = None) -> tuple[str, str] | None:
    """The first (param, problem) of a parsed JSON body, outer fields first: a string or a key
    no store can hold, or a number. Iterative: a body as deep as the JSON parser allows does not
    exhaust the stack here. Scalars are checked in their container's loop and no location is
    built unless one is refused: a body of millions of small items costs one pass.
    An integer past 64 bits in a field the route's body model declares as a decimal number
    (``max_budget_usd``, ``timeouts.total``) is left to that model: it reads it as a number and
    answers in the field's own words, as for the same number written ``1e20`` ("Input should be
    less than or equal to 1000000000"), not as an integer it never was (every such field is
    bounded, by its model or its route, before anything is stored)."""
    if isinstance(body, str):
        problem = problem_with(body)
        return None if problem is None else ("body", problem)
    if not isinstance(body, dict | list):
        return None  # a bare number is no object: the route refuses it as such
    pending: deque[tuple[Any, tuple[Any, Any] | None]] = deque([(body, None)])
    while pending:
        value, where = pending.popleft()
        for key, item in value.items() if type(value) is dict else enumerate(value):
            if type(key) is str and _BAD.search(key) is not None:
                return _named((where, key)), problem_with(key) or ""
            kind = type(item)
            if kind is str:
                if _BAD.search(item) is not None:
                    return _named((where, key)), problem_with(item) or ""
            elif kind is int or kind is float:
                problem = number_problem(item)
                if problem is not None and not (kind is int and _decimal_field(route, (where, key))):
                    return _named((where, key)), problem
            elif kind is dict or kind is list:
                pending.append((item, (where, key)))
    return None


def _not_utf8(encoding: str) -> InvalidRequest:
    """A JSON body in UTF-16 or 32, or after a byte order mark: Python's parser reads them, the
    model API's (orjson) does not, and JSON is UTF-8 (RFC 8259); refused in the model API's words."""
    reason = "UTF-8 byte order mark (BOM) is not supported" if encoding == "utf-8-sig" else (
        "str is not valid UTF-8")
    return InvalidRequest(f"the request body is not valid JSON: {reason}", code="invalid_json")


def _may_hold_bad(raw: bytes) -> bool:
    """Whether a body's bytes may hold what the walk refuses. UTF-8 JSON can only write a NUL
    or an unpaired surrogate as an escape (or a surrogate as its three bytes), and a number no
    store holds with 19 digits or more, a 3-digit exponent, ``NaN`` or ``Infinity``: a body
    without any of these (nearly every one) skips the walk; one with them (an escaped accent, a
    long number in a string) is walked, so the search may err only on that side. The body is
    UTF-8 (another encoding is refused before)."""
    return (any(mark in raw for mark in _MARKS) or _LONG_DIGITS.search(raw) is not None
            or _BIG_EXPONENT.search(raw) is not None)


async def refuse_unstorable_input(request: Request) -> None:
    """The admin application's dependency: a 400 for the first bad parameter, else nothing."""
    for name, value in request.query_params.multi_items():
        problem = problem_with(name) or problem_with(value)
        if problem is not None:
            raise _refuse(name, problem)
    for name, value in request.path_params.items():
        problem = problem_with(value) if isinstance(value, str) else None
        if problem is not None:
            raise _refuse(name, problem)
    content_type = request.headers.get("content-type", "").lower()
    if (content_type and "json" not in content_type) or not await request.body():
        return  # no JSON body: whatever the route reads instead is its own to check
    raw = await request.body()
    if (encoding := json.detect_encoding(raw)) != "utf-8":
        raise _not_utf8(encoding)
    try:
        body = await request.json()  # cached: FastAPI parsed a route's JSON body so before us
    except (ValueError, RecursionError):
        return  # not JSON (or too deep): the route refuses it in its own words
    if _may_hold_bad(raw) and (found := _in_json(body, request.scope.get("route"))) is not None:
        raise _refuse(*found)
    if too_deep(body):  # the routes write it with orjson (stored, measured): refused as on the model API
        raise too_deep_body()
