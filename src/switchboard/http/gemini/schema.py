"""Gemini ``Schema`` (an OpenAPI 3.0 subset) -> JSON Schema, for function parameters and
``responseSchema``.

Reference: https://ai.google.dev/api/caching#Schema. Types are enum names (``OBJECT``,
``STRING``...; lower case is accepted too) and become JSON Schema's lower-case types;
``nullable: true`` adds ``"null"`` to the type (and ``null`` to an ``enum``);
``propertyOrdering`` (an ordering hint for Gemini's decoder) and ``example`` have no JSON Schema
counterpart and are left out. Fields are
read in either spelling (``maxItems`` / ``max_items``); an unknown field is a 400, as Google
answers. ``parametersJsonSchema`` and ``responseJsonSchema`` are JSON Schema already and are
passed on unchanged.
"""

from __future__ import annotations

from typing import Any

from switchboard.http.gemini.fields import (
    JSON,
    array,
    boolean,
    fail,
    fields,
    integer,
    join,
    number,
    string,
)

TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_FIELDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})
_COUNTS = ("maxItems", "minItems", "minProperties", "maxProperties", "minLength", "maxLength")
_TEXTS = ("format", "title", "description", "pattern")
MAX_DEPTH = 64


def json_schema(value: Any, path: str, depth: int = 0) -> JSON:
    if depth > MAX_DEPTH:
        raise fail(path, f"the schema is nested more than {MAX_DEPTH} levels deep")
    given = fields(value, path, _FIELDS, "Schema")
    out: JSON = {}
    kind = given.get("type")
    if kind is not None:
        name = string(kind, join(path, "type")).upper()
        if name not in TYPES and name != "TYPE_UNSPECIFIED":
            raise fail(join(path, "type"), f"unknown type '{str(kind)[:40]}'")
        if name != "TYPE_UNSPECIFIED":
            out["type"] = name.lower()
    for key in _TEXTS:
        if given.get(key) is not None:
            out[key] = string(given[key], join(path, key))
    for key in _COUNTS:
        if given.get(key) is not None:
            out[key] = integer(given[key], join(path, key), 0, kind="TYPE_INT64")  # Schema's are int64
    for key in ("minimum", "maximum"):
        if given.get(key) is not None:
            out[key] = number(given[key], join(path, key))
    if given.get("enum") is not None:
        where = join(path, "enum")
        out["enum"] = [string(v, f"{where}[{i}]") for i, v in enumerate(array(given["enum"], where))]
    if given.get("required") is not None:
        where = join(path, "required")
        out["required"] = [string(v, f"{where}[{i}]") for i, v in enumerate(array(given["required"], where))]
    if given.get("default") is not None:
        out["default"] = given["default"]
    props = given.get("properties")
    if props is not None:
        where = join(path, "properties")
        if not isinstance(props, dict):
            raise fail(where, "expected an object of schemas")
        out["properties"] = {k: json_schema(sub, f"{where}.{k}", depth + 1) for k, sub in props.items()}
    if given.get("items") is not None:
        out["items"] = json_schema(given["items"], join(path, "items"), depth + 1)
    if given.get("anyOf") is not None:
        where = join(path, "anyOf")
        options = array(given["anyOf"], where)
        out["anyOf"] = [json_schema(sub, f"{where}[{i}]", depth + 1) for i, sub in enumerate(options)]
    if given.get("propertyOrdering") is not None:
        array(given["propertyOrdering"], join(path, "propertyOrdering"))
    if given.get("nullable") is not None and boolean(given["nullable"], join(path, "nullable")):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"].append({"type": "null"})
        # JSON Schema checks enum apart from type: without null among the values, a nullable
        # enum would forbid the null Gemini allows.
        if "enum" in out:
            out["enum"].append(None)
    return out


def plain_json_schema(value: Any, path: str) -> JSON:
    """``parametersJsonSchema`` / ``responseJsonSchema``: any JSON Schema object, unchanged."""
    if not isinstance(value, dict):
        raise fail(path, "expected a JSON Schema object")
    return value
