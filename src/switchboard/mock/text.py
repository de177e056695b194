"""Deterministic mock content shared by every provider format."""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import struct
from typing import Any

from switchboard.mock.controls import text_of


def count_tokens(value: Any) -> int:
    """A rough, stable token count: words and punctuation runs."""
    return max(1, len(text_of(value).split()))


def reply_text(prompt: str, controls_reply: str) -> str:
    if controls_reply:
        return controls_reply
    said = " ".join(prompt.split())[:200]
    return (
        f"Hello from the Switchboard mock. You said: {said}" if said else "Hello from the Switchboard mock."
    )


def words(text: str) -> list[str]:
    """Split into stream pieces that concatenate back to ``text`` exactly."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    if max_tokens is None:
        return text, False
    pieces = words(text)
    if len(pieces) <= max_tokens:
        return text, False
    return "".join(pieces[:max_tokens]), True


# The widest vector the providers' embedding models return (text-embedding-3-large,
# gemini-embedding-001). A request's own dimensions are checked against it before a vector is
# built: 10**8 of them held gigabytes (the built-in mock runs inside the gateway), 2**64 failed.
MAX_DIMENSIONS = 3072
# Inputs one embeddings request may hold (OpenAI: an array of at most 2,048).
MAX_EMBEDDING_INPUTS = 2048
DEFAULT_DIMENSIONS = 8


def dimensions(value: Any) -> int | None:
    """The dimensions a request asks for (absent: the mock's default), None when no provider
    would take them: a whole number from 1 to MAX_DIMENSIONS (not a boolean, nor 8.0)."""
    if value is None:
        return DEFAULT_DIMENSIONS
    if type(value) is not int or not 1 <= value <= MAX_DIMENSIONS:
        return None
    return value


def embedding(text: str, dims: int) -> list[float]:
    """A unit bag-of-words vector: each word a fixed pseudo-random direction, so texts sharing
    words are similar (cosine) and equal texts are equal, as semantic routing tests need."""
    total = [0.0] * dims
    for word in _WORD.findall(text.lower()) or [text]:
        for i, x in enumerate(_word_vector(word, dims)):
            total[i] += x
    norm = math.sqrt(sum(x * x for x in total)) or 1.0
    return [round(x / norm, 6) for x in total]


_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=4096)
def _word_vector(word: str, dims: int) -> tuple[float, ...]:
    digest = hashlib.sha256(word.encode()).digest()
    while len(digest) < dims:
        digest += hashlib.sha256(digest).digest()
    return tuple((b - 127.5) / 127.5 for b in digest[:dims])


def embedding_b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def typed_embedding(vector: list[float], kind: str) -> list[Any]:
    """A vector in one of the compressed types Cohere's embedding_types and Mistral's output_dtype
    name: int8/uint8 one integer per dimension, binary/ubinary the signs packed 8 to a byte."""
    if kind == "float":
        return vector
    if kind in ("int8", "uint8"):
        offset = 0 if kind == "int8" else 128
        return [max(-128, min(127, round(x * 127))) + offset for x in vector]
    bits = [1 if x > 0 else 0 for x in vector]
    packed = [int("".join(map(str, bits[i:i + 8])).ljust(8, "0"), 2) for i in range(0, len(bits), 8)]
    return packed if kind == "ubinary" else [b - 128 for b in packed]


def arguments_for(parameters: Any) -> dict[str, Any]:
    """Arguments satisfying a JSON schema's required properties, for mock tool calls."""
    if not isinstance(parameters, dict):
        return {}
    props, names = _properties(parameters)
    samples = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {},
               "null": None}
    out: dict[str, Any] = {}
    for name in names:
        spec = props.get(name)
        spec = spec if isinstance(spec, dict) else {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            out[name] = spec["enum"][0]
        else:
            out[name] = samples.get(_first_type(spec.get("type", "string")), "Paris")
    return out


def sample_for(schema: Any, depth: int = 0) -> Any:
    """A value of a JSON schema (lower-case types), nested objects filled in too, for answers in
    JSON mode: clients that parse the answer (the openai SDK's ``parse``) get a valid one."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if isinstance(schema.get("anyOf"), list) and schema["anyOf"]:
        return sample_for(schema["anyOf"][0], depth + 1)
    kind = _first_type(schema.get("type", "object" if "properties" in schema else "string"))
    if kind == "object":
        props, names = _properties(schema)
        return {name: sample_for(props.get(name) or {}, depth + 1) for name in names}
    return {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(kind)


def _properties(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An object schema's properties and the names to fill in (the required ones, else all).
    A schema the caller got wrong (properties that are no object, a required that is no list
    of names) is read as far as it makes sense, as a lenient server would, not failed with a
    500 that a gateway in front would have to report as the provider's failure."""
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = required if isinstance(required, list) and required else list(props)
    return props, [name for name in names if isinstance(name, str)]


def _first_type(kind: Any) -> Any:
    """A union (``["string", "null"]``, how strict schemas mark an optional field): its first
    non-null type."""
    if isinstance(kind, list):
        return next((k for k in kind if k != "null" and isinstance(k, str)), "null")
    return kind if isinstance(kind, str) else "string"
