"""JSON text as servers send it: parsed with orjson, a UTF-8 byte order mark before it ignored.

Some servers write their answers through a BOM-emitting encoder; RFC 8259 lets a parser ignore
the mark, and the providers' SDKs do. Every upstream answer the gateway reads (the providers'
bodies and events, the Vertex token endpoint's) goes through here, and the mock upstream takes
``BOM`` from here to send one. It sits at the bottom of the layers (imports nothing of the
gateway), so ``providers/``, ``upstream/`` and ``mock/`` may all use it. Also the depth a
caller's JSON may have (``too_deep``), checked where the model and admin APIs read a body.
"""

from __future__ import annotations

import codecs
import threading
from typing import Any

import orjson

BOM = codecs.BOM_UTF8

# How deep a caller's JSON may nest (arrays and objects, the outermost counted). orjson reads
# 1,024 levels but writes only 254, and the gateway writes what it read (the upstream body, a
# tool call's arguments, an error quoting a value, a stored prompt): a body between the two
# was read and then failed wherever it was written, as a 500. The margin below 254 is for what
# a translation or a record wraps around the caller's values (a tool schema sits a level or
# two deeper in Gemini's and Bedrock's bodies than in OpenAI's).
MAX_DEPTH = 128
_ORJSON_WRITES = 254  # orjson.dumps' recursion limit: a 255th level is refused


class _Nest(threading.local):
    """Lists nested ``_ORJSON_WRITES - MAX_DEPTH`` deep, the innermost left empty: a value put
    in it can be written only if it nests at most ``MAX_DEPTH`` levels. One per thread, since
    ``too_deep`` fills and empties it (bodies are also read in worker threads)."""

    def __init__(self) -> None:
        self.outer: list[Any] = []
        self.inner = self.outer
        for _ in range(_ORJSON_WRITES - MAX_DEPTH - 1):
            deeper: list[Any] = []
            self.inner.append(deeper)
            self.inner = deeper


_nest = _Nest()


def too_deep(value: Any) -> bool:
    """Whether parsed JSON nests deeper than ``MAX_DEPTH``. Written once by orjson inside the
    prepared nest (its writer is C and stops at the limit): about a tenth of the parse's time,
    where a walk in Python would cost more than the parse itself."""
    if not isinstance(value, (dict, list)):
        return False
    inner = _nest.inner
    inner.append(value)
    try:
        orjson.dumps(_nest.outer)
    except orjson.JSONEncodeError as exc:
        # Python's parser (the admin API's) also reads what orjson does not write (integers
        # past 64 bits, unpaired surrogates): not this function's to judge.
        return str(exc) == "Recursion limit reached"
    finally:
        inner.clear()
    return False


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
