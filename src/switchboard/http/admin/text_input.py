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
route's own checks; a body that is not JSON is left to the route to refuse.
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Any

from fastapi import Request

from switchboard.errors import InvalidRequest

_BAD = re.compile("[\x00\ud800-\udfff]")
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


def _in_json(body: Any) -> tuple[str, str] | None:
    """The first (param, problem) of a parsed JSON body, its param named as validation errors
    name one (``metadata.k``, ``messages[0].content``), outer fields first: a string or a key
    no store can hold, or a number. Iterative: a body as deep as the JSON parser allows does not
    exhaust the stack here."""
    pending: deque[tuple[str, Any]] = deque([("", body)])
    while pending:
        path, value = pending.popleft()
        if isinstance(value, str):
            problem = problem_with(value)
            if problem is not None:
                return path or "body", problem
        elif isinstance(value, int | float) and path:  # a bare number is no object: the route's
            problem = number_problem(value)
            if problem is not None:
                return path, problem
        elif isinstance(value, dict):
            for key, item in value.items():
                here = f"{path}.{key}" if path else str(key)
                problem = problem_with(str(key))
                if problem is not None:
                    return here, problem
                pending.append((here, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


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
    try:
        body = await request.json()  # cached: FastAPI parsed a route's JSON body so before us
    except (ValueError, RecursionError):
        return  # not JSON (or too deep): the route refuses it in its own words
    found = _in_json(body)
    if found is not None:
        raise _refuse(*found)
