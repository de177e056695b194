"""Text no admin route accepts: a NUL character (U+0000) or an unpaired surrogate, anywhere.

PostgreSQL text holds neither (a query or a write carrying one fails in the driver, which would
be a 500), and SQLite's ``LIKE`` stops at a NUL (``q=%00x`` would match every record), so both
are refused up front, the same on either backend: a 400 ``invalid_value`` naming the parameter.
One check for every route (installed as an application-wide dependency, app.py), so a new route
or filter is covered without thinking of it: the query string (names and values), the path's
parameters and every string of a JSON body (its keys too). It runs before the route's own
checks; a body that is not JSON is left to the route to refuse.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from fastapi import Request

from switchboard.errors import InvalidRequest

_BAD = re.compile("[\x00\ud800-\udfff]")
MAX_SHOWN = 64  # characters of a parameter's name in an error


def problem_with(text: str) -> str | None:
    """Why no store can hold ``text`` (None: it can)."""
    found = _BAD.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain a NUL character (U+0000)"
    return "must be valid Unicode (an unpaired surrogate)"


def _refuse(param: str, problem: str) -> InvalidRequest:
    shown = _BAD.sub("?", param)[:MAX_SHOWN] or "?"
    return InvalidRequest(f"{shown}: {problem}", param=shown, code="invalid_value")


def _in_json(body: Any) -> tuple[str, str] | None:
    """The first (param, problem) of a parsed JSON body, its param named as validation errors
    name one (``metadata.k``, ``messages[0].content``), outer fields first. Iterative: a body as
    deep as the JSON parser allows does not exhaust the stack here."""
    pending: deque[tuple[str, Any]] = deque([("", body)])
    while pending:
        path, value = pending.popleft()
        if isinstance(value, str):
            problem = problem_with(value)
            if problem is not None:
                return path or "body", problem
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


async def refuse_unstorable_text(request: Request) -> None:
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
