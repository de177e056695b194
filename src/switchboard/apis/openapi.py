"""OpenAPI 3.1 documents of prompt APIs, generated from the API and its prompt version: the
variables schema is the request body, the output schema (or the text envelope) the response,
an example request built from the schema, bearer security, ``deprecated: true`` when deprecated.

A schema with references (``$ref: "#/$defs/thing"``, pointers within it, apis/schemas.py) is
not embedded where it is used, since its pointers would then resolve against the document: it
goes to ``components/schemas/api.<name>.variables`` (or ``.output``), its pointers rewritten to
point there, and the operation refers to it. A schema without references is embedded as it is.

The example is bounded (``MAX_EXAMPLE_CHARS`` as JSON): a schema asking for more (a huge
``minLength``) gets no example rather than one nobody could post.

Pure: no I/O; the caller gives the APIs, their prompt versions and the server URL.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import regex

from switchboard.apis import schemas as jsonschemas
from switchboard.stores.protocols import ApiRecord, PromptVersion

OPENAPI_VERSION = "3.1.0"
# How deep an example is built into nested schemas (references followed included).
_MAX_DEPTH = 6
# The largest example, as JSON characters; a string sample is never built longer than this.
MAX_EXAMPLE_CHARS = 8192
COMPONENTS = "#/components/schemas/"
_SAMPLES: dict[str, Any] = {"string": "text", "integer": 1, "number": 1.5, "boolean": True, "null": None}
_FORMATS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "email": "user@example.com",
            "uri": "https://example.com", "uuid": "00000000-0000-4000-8000-000000000000"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
    }, "required": ["message", "type"]}},
    "required": ["error"],
}
USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                   "total_tokens": {"type": "integer"}},
}
_ERRORS = {
    "400": "Invalid variables (each invalid field named) or body",
    "401": "Missing or invalid key",
    "403": "The team's subscription is pending, missing or rejected",
    "404": "No such API in the caller's tenant",
    "410": "The API is retired (its successor named)",
    "413": "The body is too large",
    "502": "The model's output does not satisfy the output schema, repairs included",
}


# The most schema nodes one example is built from: references can point at a part that refers
# to another several times, which would grow without this.
_MAX_NODES = 10_000


class _Exhausted(Exception):
    """The example's node budget ran out (a signal, not an error)."""


# What a part past the depth bound gives (a recursive schema): an optional property or an
# array item of that kind is left out.
_DEEP = object()


def example(schema: Any) -> Any:
    """A value satisfying the common parts of a JSON schema: its examples, default, const or
    first enum value where given, else a sample of its type (objects: every property) within
    its bounds (lengths, minimum and maximum, a simple pattern); local references followed.
    None when the schema is too large to build one from."""
    try:
        with jsonschemas.patterns_bounded():  # a tenant's patterns, matched against the samples
            found = _example(schema, 0, schema, [_MAX_NODES])
    except _Exhausted:
        return None
    return None if found is _DEEP else found


def _example(schema: Any, depth: int, root: Any, left: list[int]) -> Any:
    if depth > _MAX_DEPTH:
        return _DEEP
    if not isinstance(schema, Mapping):
        return None
    left[0] -= 1
    if left[0] < 0:
        raise _Exhausted
    if jsonschemas.is_local(schema.get("$ref")):
        try:
            return _example(jsonschemas.pointed(root, schema["$ref"]), depth + 1, root, left)
        except KeyError:
            return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _example(schema[key][0], depth + 1, root, left)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        listed = schema.get("required")
        required = listed if isinstance(listed, list) else []
        built = {name: _example(sub, depth + 1, root, left) for name, sub in props.items()}
        return {name: None if value is _DEEP else value for name, value in built.items()
                if value is not _DEEP or name in required}
    if kind == "array":
        item = _example(schema.get("items"), depth + 1, root, left)
        if item is _DEEP:
            return []
        count = max(1, _int(schema.get("minItems")) or 1)
        most = _int(schema.get("maxItems"))
        return [item] * min(count, 3, most if most is not None else 3)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    return _SAMPLES.get(kind) if isinstance(kind, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Tried in turn when a string schema has a pattern "text" does not match.
_PATTERN_SAMPLES = ("text", "x", "X", "Text", "TEXT", "1", "123", "x1", "text-1", "text_1", "a.b")


def _string(schema: Mapping[str, Any]) -> str:
    low, high = _int(schema.get("minLength")) or 0, _int(schema.get("maxLength"))
    if isinstance(schema.get("format"), str) and schema["format"] in _FORMATS:
        return _FORMATS[schema["format"]]
    candidates = list(_PATTERN_SAMPLES) if isinstance(schema.get("pattern"), str) else ["text"]
    if low > MAX_EXAMPLE_CHARS:
        return candidates[0]  # too short: the schema gets no example
    for candidate in candidates:
        sample = candidate * -(-low // len(candidate)) if len(candidate) < low else candidate
        sample = sample[:high] if high is not None else sample
        if len(sample) >= low and _matches(schema.get("pattern"), sample):
            return sample
    return candidates[0]  # a pattern none of the samples match: the caller leaves the example out


def _matches(pattern: Any, text: str) -> bool:
    if not isinstance(pattern, str):
        return True
    try:
        return jsonschemas.search(pattern, text) is not None
    except (TimeoutError, regex.error):
        return False  # no example rather than the event loop held by a pattern that backtracks


def _number(schema: Mapping[str, Any], kind: str) -> int | float:
    """The type's sample (or one above the minimum), moved inside the bounds."""
    def bound(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    low, high = bound("minimum"), bound("maximum")
    above, below = bound("exclusiveMinimum"), bound("exclusiveMaximum")
    step = 1 if kind == "integer" else 0.5
    if above is not None and (low is None or above >= low):
        low = math.floor(above) + 1 if kind == "integer" else above + step
    if below is not None and (high is None or below <= high):
        high = math.ceil(below) - 1 if kind == "integer" else below - step
    if kind == "integer":
        low = math.ceil(low) if low is not None else None
        high = math.floor(high) if high is not None else None
    value: float = _SAMPLES[kind] if low is None else low + 1
    if high is not None and value > high:
        value = high if low is None or high >= low else low
    if kind == "integer":
        whole = int(value)
        # A bound of 1e20 makes an int no JSON writer here holds (orjson: 64 bits), which failed
        # the whole document; as a float it is still an integer to JSON Schema, and the example
        # is checked against the schema before it is shown.
        return whole if _INT_LOW <= whole <= _INT_HIGH else float(whole)
    return float(value)


_INT_LOW, _INT_HIGH = -(2**63), 2**64 - 1  # what orjson writes as an integer


def _operation_id(name: str, suffix: str = "") -> str:
    return "call_" + re.sub(r"[^A-Za-z0-9_]", "_", name) + suffix


def unique_operation_ids(paths: Mapping[str, Any]) -> None:
    """Make the operationIds of ``paths`` unique, as OpenAPI requires: names differing only in
    ``.``, ``-`` and ``_`` (or an API named ``x_version`` beside ``x``'s pinned operation) make
    one id. Every operation sharing an id gets a suffix from a hash of its method and path, so
    the ids do not depend on the order of the paths and change only when a collision comes or
    goes."""
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path, item in paths.items():
        for method, operation in item.items():
            if isinstance(operation, dict) and isinstance(operation.get("operationId"), str):
                seen.setdefault(operation["operationId"], []).append((f"{method} {path}", operation))
    for shared in seen.values():
        if len(shared) > 1:
            for where, operation in shared:
                digest = hashlib.sha256(where.encode()).hexdigest()[:8]
                operation["operationId"] = f"{operation['operationId']}_{digest}"


def _envelope(output: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "api": {"type": "string"},
            "version": {"type": "integer", "description": "The prompt version that answered"},
            "model": {"type": "string"},
            "output": dict(output) if output is not None else {"type": "string"},
            "usage": USAGE_SCHEMA,
        },
        "required": ["output", "version", "usage"],
    }


def _carried(schema: Mapping[str, Any], component: str, found: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as an operation holds it: itself when it has no reference, else a reference to
    ``components/schemas/<component>``, where it is added to ``found`` with its local pointers
    rewritten to point there."""
    if not any("$ref" in node for _, node in jsonschemas.subschemas(schema)):
        return dict(schema)
    moved = copy.deepcopy(dict(schema))
    base = COMPONENTS + component.replace("~", "~0").replace("/", "~1")
    for _, node in jsonschemas.subschemas(moved):
        ref = node.get("$ref")
        if jsonschemas.is_local(ref):
            node["$ref"] = base + ref[1:]
    found[component] = moved
    return {"$ref": base}


@dataclass
class ApiOperations:
    """The path items of one API and the component schemas they refer to."""

    paths: dict[str, Any]
    schemas: dict[str, Any] = field(default_factory=dict)


def _operation(record: ApiRecord, prompt: PromptVersion, found: dict[str, Any], *,
               pinned: bool) -> dict[str, Any]:
    variables = dict(prompt.variables) if prompt.variables else {"type": "object"}
    output = None if prompt.output_schema is None else _carried(
        prompt.output_schema, f"api.{record.name}.output", found)
    responses: dict[str, Any] = {
        "200": {
            "description": "The model's output (parsed JSON when the API has an output schema); "
                           "with ?stream=true, Server-Sent Events: {\"delta\"} events, then "
                           "{\"done\": true, \"version\", \"usage\"}",
            "content": {
                "application/json": {"schema": _envelope(output)},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
    }
    for status, why in _ERRORS.items():
        responses[status] = {"description": why, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: dict[str, Any] = {
        "operationId": _operation_id(record.name, "_version" if pinned else ""),
        "summary": record.description or f"Call the prompt API '{record.name}'",
        "tags": [record.name],
        "parameters": [{
            "name": "stream", "in": "query", "required": False,
            "description": "true: stream the text as Server-Sent Events",
            "schema": {"type": "boolean", "default": False},
        }],
        "requestBody": {
            "required": True,
            "description": "The prompt's variables",
            "content": {"application/json": _body(variables, f"api.{record.name}.variables", found)},
        },
        "responses": responses,
        "security": [{"bearer": []}],
    }
    if pinned:
        operation["parameters"].insert(0, {
            "name": "version", "in": "path", "required": True,
            "description": "A prompt version of this API", "schema": {"type": "integer", "minimum": 1},
        })
        operation["summary"] += " (a pinned prompt version)"
    if record.status == "deprecated":
        operation["deprecated"] = True
        if record.successor:
            operation["description"] = f"Deprecated; use /apis/{record.successor}."
    return operation


def _body(variables: dict[str, Any], component: str, found: dict[str, Any]) -> dict[str, Any]:
    """The request body's media type: the schema, and an example when one satisfies it (posting
    the documented example must work; a schema the builder cannot satisfy, or whose example
    would be larger than ``MAX_EXAMPLE_CHARS``, gets none)."""
    body: dict[str, Any] = {"schema": _carried(variables, component, found)}
    sample = example(variables)
    if _size(sample) > MAX_EXAMPLE_CHARS:
        return body
    try:
        valid = not any(jsonschemas.errors(variables, sample))
    except (jsonschemas.JSONSCHEMA().SchemaError, re.error, TypeError):
        valid = False
    if valid:
        body["example"] = sample
    return body


def _size(value: Any) -> int:
    """About the characters of ``value`` as JSON, counted until past ``MAX_EXAMPLE_CHARS``: an
    example repeats shared parts (``[item] * 3`` nested), so its JSON can be far larger than the
    objects built."""
    total = 0
    stack = [value]
    while stack and total <= MAX_EXAMPLE_CHARS:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2
            for key, sub in item.items():
                total += len(str(key)) + 4
                stack.append(sub)
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack += item
        else:
            total += len(str(item)) if isinstance(item, int | float) else 5
    return total


def operations(record: ApiRecord, prompt: PromptVersion) -> ApiOperations:
    """The path items of one API (``/apis/{name}`` and ``/apis/{name}/v{version}``) and the
    component schemas they refer to."""
    found: dict[str, Any] = {}
    paths = {
        f"/apis/{record.name}": {"post": _operation(record, prompt, found, pinned=False)},
        f"/apis/{record.name}/v{{version}}": {"post": _operation(record, prompt, found, pinned=True)},
    }
    return ApiOperations(paths, found)


def document(apis: Iterable[tuple[ApiRecord, PromptVersion]], server_url: str, *, title: str = "Prompt APIs",
             version: str = "1", description: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``apis`` (each with the prompt version it serves now)."""
    found: dict[str, Any] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for record, prompt in apis:
        generated = operations(record, prompt)
        found.update(generated.paths)
        components.update(generated.schemas)
    unique_operation_ids(found)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "servers": [{"url": server_url}],
        "paths": found,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A Switchboard API key"}},
            "schemas": components,
        },
        "security": [{"bearer": []}],
    }


def one(record: ApiRecord, prompt: PromptVersion, server_url: str) -> dict[str, Any]:
    """The document of one API."""
    return document([(record, prompt)], server_url, title=f"{record.name} (prompt API)",
                    version=str(prompt.version), description=record.description)
