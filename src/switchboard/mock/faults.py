"""Fault injection per deployment: a share of the requests carrying an ``x-mock-faults`` header
fail, for retry and fallback tests.

A provider entry's ``headers:`` sends the header on every request to that deployment, so one
deployment of a group can be made unreliable while the other is not::

    x-mock-faults: rate=0.5;kinds=429,500,timeout,reset;retry_after=1

``rate`` is the share of requests that fail (0 to 1); ``kinds`` the faults used in turn:

    429      HTTP 429 with Retry-After (``retry_after`` seconds, default 1)
    500      HTTP 500
    503      HTTP 503
    400      HTTP 400 (a bad request: never retried)
    content_policy  HTTP 400 with code ``content_policy_violation`` (a refusal)
    timeout  no answer at all (until the caller gives up)
    stall    the status line and headers (200), then nothing: a first-byte timeout
    reset    the status line (200), then the connection is dropped before any body

Which requests fail is deterministic: requests with the same header value are counted, and the
n-th fails when ``floor((n+1)*rate) > floor(n*rate)`` (so rate 0.5 fails every other one); the
faults take ``kinds`` in turn. ``seed=N`` instead draws each request's fate from a random
generator seeded with N. Every fault happens before the first byte of a body.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Any

import orjson

HEADER = "x-mock-faults"
KINDS = frozenset({"400", "429", "500", "503", "content_policy", "timeout", "stall", "reset"})
_HANG_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Faults:
    rate: float
    kinds: tuple[str, ...]
    retry_after: str = "1"
    seed: int | None = None


def parse(value: str) -> Faults | None:
    """The header's settings; None when it is malformed (then no fault is injected)."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, raw = part.partition("=")
        if sep:
            fields[name.strip()] = raw.strip()
    try:
        rate = float(fields.get("rate", "0"))
        seed = int(fields["seed"]) if "seed" in fields else None
    except ValueError:
        return None
    kinds = tuple(k.strip() for k in fields.get("kinds", "500").split(",") if k.strip())
    if not 0 <= rate <= 1 or not kinds or any(k not in KINDS for k in kinds):
        return None
    return Faults(rate, kinds, fields.get("retry_after", "1"), seed)


class FaultPlan:
    """Per header value: how many requests were seen, and the random generator when seeded."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._faults: dict[str, int] = {}
        self._random: dict[str, random.Random] = {}

    def decide(self, value: str) -> str | None:
        """The fault for the next request carrying ``value``, or None when it is served."""
        faults = parse(value)
        if faults is None or faults.rate <= 0:
            return None
        n = self._seen.get(value, 0)
        self._seen[value] = n + 1
        if faults.seed is not None:
            rng = self._random.setdefault(value, random.Random(faults.seed))
            if rng.random() >= faults.rate:
                return None
        elif math.floor((n + 1) * faults.rate) <= math.floor(n * faults.rate):
            return None
        k = self._faults.get(value, 0)
        self._faults[value] = k + 1
        return faults.kinds[k % len(faults.kinds)]

    def retry_after(self, value: str) -> str:
        faults = parse(value)
        return faults.retry_after if faults is not None else "1"


def _error(status: int, retry_after: str | None, code: str | None = None,
           ) -> tuple[list[tuple[bytes, bytes]], bytes]:
    kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
    code = code or ("rate_limit_exceeded" if status == 429 else None)
    body = orjson.dumps({"error": {"message": f"mock: injected fault {status}", "type": kind,
                                   "param": None, "code": code}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    return headers, body


async def inject(kind: str, retry_after: str, send: Any) -> bool:
    """Answer (or not) as the fault ``kind`` says, as an ASGI application would; True when the
    caller must now drop the connection (``reset``)."""
    if kind in ("400", "429", "500", "503", "content_policy"):
        status = 400 if kind == "content_policy" else int(kind)
        code = "content_policy_violation" if kind == "content_policy" else None
        headers, body = _error(status, retry_after if status == 429 else None, code)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return False
    if kind == "timeout":
        await asyncio.sleep(_HANG_SECONDS)  # ends when the caller leaves (the handler is cancelled)
        return False
    headers = [(b"content-type", b"text/event-stream"), (b"content-length", b"1000")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if kind == "stall":
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(_HANG_SECONDS)
        return False
    return True
