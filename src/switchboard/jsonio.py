"""JSON text as servers send it: parsed with orjson, a UTF-8 byte order mark before it ignored.

Some servers write their answers through a BOM-emitting encoder; RFC 8259 lets a parser ignore
the mark, and the providers' SDKs do. Every upstream answer the gateway reads (the providers'
bodies and events, the Vertex token endpoint's) goes through here, and the mock upstream takes
``BOM`` from here to send one. It sits at the bottom of the layers (imports nothing of the
gateway), so ``providers/``, ``upstream/`` and ``mock/`` may all use it.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson

BOM = codecs.BOM_UTF8


def loads(body: bytes) -> Any:
    """JSON text, parsed; orjson.JSONDecodeError when it is not JSON. The byte order mark is
    looked for only once orjson has refused the body, so a well-formed body costs nothing more."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if body[:3] != BOM:
            raise
        return orjson.loads(body[3:])


def loads_object(body: bytes) -> dict[str, Any] | None:
    """A JSON object's text, parsed; None when it is no JSON or no object."""
    # ``loads`` inlined: this runs for every event of several providers' streams.
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        if body[:3] != BOM:
            return None
        try:
            value = orjson.loads(body[3:])
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None
