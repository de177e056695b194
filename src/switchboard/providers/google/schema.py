"""JSON Schema (as OpenAI clients write it) -> the OpenAPI 3.0 subset Gemini's ``Schema`` accepts.

Gemini rejects unknown schema keys (``additionalProperties``, ``$schema``, ``$ref``, ...) with
400 "Unknown name ... Cannot find field", so tool parameters and ``response_format`` schemas
are rewritten here: local ``$ref``s are inlined, ``allOf`` merged, ``oneOf`` read as ``anyOf``,
``["T", "null"]`` types become ``nullable``, and every key outside the subset is dropped.

Gemini also refuses a nested node without a ``type`` unless it is an ``anyOf`` ("type: must be
specified when not using one_of, any_of or all_of fields"; Vertex AI: "schema didn't specify the
schema type field"). In JSON Schema such a node (``{}``, ``{"description": ...}``) takes any
value, which the subset cannot say: it becomes the type of its enum values when it has some, else
``STRING``, the one type any value can be written in. The root is left alone (the parameters of a
tool without arguments are left out, see request.py).

Reference: https://ai.google.dev/api/caching#Schema (fields) and
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/Schema (the same subset on Vertex).
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

_KEPT = frozenset({
    "title", "description", "nullable", "maxItems", "minItems", "minProperties", "maxProperties",
    "minLength", "maxLength", "pattern", "example", "propertyOrdering", "default", "minimum", "maximum",
})
# The only formats Gemini accepts per type; others are refused with 400.
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
# Deep enough for real schemas; stops recursive $refs, which Gemini's subset cannot express.
_MAX_DEPTH = 24


def clean_schema(schema: Any) -> JSON:
    """A Gemini ``Schema`` equivalent to ``schema`` (best effort for constructs it lacks)."""
    if not isinstance(schema, dict):
        return {}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _clean(schema, defs, 0)


def has_properties(schema: JSON) -> bool:
    return bool(schema.get("properties")) or schema.get("type") not in (None, "OBJECT")


def _resolve(node: JSON, defs: JSON, depth: int) -> JSON:
    while isinstance(node.get("$ref"), str) and depth < _MAX_DEPTH:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name)
        if not isinstance(target, dict):
            break
        # Keys beside the $ref (e.g. a description) refine the referenced schema.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        depth += 1
    if isinstance(node.get("allOf"), list):
        node = _merge_all_of(node)
    return node


def _merge_all_of(node: JSON) -> JSON:
    merged: JSON = {k: v for k, v in node.items() if k != "allOf"}
    for sub in node["allOf"]:
        if not isinstance(sub, dict):
            continue
        for key, value in sub.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**(merged.get("properties") or {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*(merged.get("required") or []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _clean(node: Any, defs: JSON, depth: int) -> JSON:
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return {"type": "OBJECT"} if depth > _MAX_DEPTH else {}
    node = _resolve(node, defs, depth)
    out: JSON = {k: v for k, v in node.items() if k in _KEPT}
    nullable, types = _types(node)
    variants = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if isinstance(variants, list):
        kept = [v for v in variants if not (isinstance(v, dict) and v.get("type") == "null")]
        nullable = nullable or len(kept) < len(variants)
        if len(kept) == 1:
            return {**_clean(kept[0], defs, depth + 1), **out, **({"nullable": True} if nullable else {})}
        out["anyOf"] = [_clean(v, defs, depth + 1) for v in kept]
    if len(types) > 1:
        alone = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        out["anyOf"] = [_clean({**alone, "type": t}, defs, depth + 1) for t in types]
    elif types:
        out["type"] = types[0].upper()
    if nullable:
        out["nullable"] = True
    _enum(node, out)
    _format(node, out)
    _children(node, out, defs, depth)
    if depth and "type" not in out and "anyOf" not in out:
        out["type"] = _value_type(node)
    return out


def _types(node: JSON) -> tuple[bool, list[str]]:
    raw = node.get("type")
    listed = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    types = [t for t in listed if t in _TYPES]
    return "null" in listed, types


def _enum(node: JSON, out: JSON) -> None:
    values = node.get("enum")
    if "const" in node:
        values = [node["const"]]
    # Gemini enums are string-only; other enums are dropped rather than refused upstream.
    if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
        out["enum"] = values
        out.setdefault("type", "STRING")


def _value_type(node: JSON) -> str:
    """The type of an untyped node: its enum (or const) values' when they share one (Gemini enums
    hold strings only, so those values were dropped), else STRING."""
    values = [node["const"]] if "const" in node else node.get("enum")
    if isinstance(values, list) and values:
        if all(isinstance(v, bool) for v in values):
            return "BOOLEAN"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "INTEGER"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return "NUMBER"
    return "STRING"


def _format(node: JSON, out: JSON) -> None:
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt


def _children(node: JSON, out: JSON, defs: JSON, depth: int) -> None:
    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {str(k): _clean(v, defs, depth + 1) for k, v in props.items()}
        required = [r for r in node.get("required") or [] if isinstance(r, str) and r in props]
        if required:
            out["required"] = required
        out.setdefault("type", "OBJECT")
    items = node.get("items")
    if isinstance(items, list):  # tuple validation: Gemini has one item schema
        items = items[0] if items else None
    if isinstance(items, dict):
        out["items"] = _clean(items, defs, depth + 1)
        out.setdefault("type", "ARRAY")
