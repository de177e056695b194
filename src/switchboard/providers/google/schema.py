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

The subset has no references, so every ``$ref`` is copied in where it is used. A recursive one
(a tree, a linked list) cannot be written out, and a schema whose definitions use one another
several times grows exponentially when copied (2**depth nodes): both are refused with a 400
naming the path, rather than cut short (a weaker schema) or expanded without bound (a request
that holds the worker for minutes). So are a ``$ref`` that names no definition and a schema
nested deeper than ``_MAX_DEPTH``.

A ``strict`` schema (``json_schema.strict``, every tool ``strict``) promises answers that match
it, so nothing that constrains values is dropped from one: a keyword outside the subset
(``exclusiveMinimum``, ``multipleOf``, ``uniqueItems``, ``not``, tuples, typed
``additionalProperties`` ...) or a non-string ``enum``/``const`` is refused with a 400 naming
it. Without ``strict`` the answer is not promised to match, and the schema is sent as close as
the subset allows. Keywords that do not constrain values (``$schema``, ``examples``, ``format``,
an annotation in JSON Schema) and ``additionalProperties: false`` (Gemini answers with declared
properties only) are dropped either way.

Reference: https://ai.google.dev/api/caching#Schema (fields) and
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/Schema (the same subset on Vertex).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchboard.errors import UnsupportedParameter

JSON = dict[str, Any]

_KEPT = frozenset({
    "title", "description", "nullable", "maxItems", "minItems", "minProperties", "maxProperties",
    "minLength", "maxLength", "pattern", "example", "propertyOrdering", "default", "minimum", "maximum",
})
# The only formats Gemini accepts per type; others are refused with 400.
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
# Keywords that constrain values and have no equivalent in the subset (refused in a strict schema).
_UNEXPRESSED = (
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems", "not", "if", "then", "else",
    "prefixItems", "additionalItems", "contains", "minContains", "maxContains", "patternProperties",
    "propertyNames", "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties",
    "unevaluatedItems",
)
# Keys that describe and do not constrain: allOf parts may differ in them.
_NOTES = frozenset({"title", "description", "default", "example", "examples", "$comment"})
# Deep enough for real schemas (pydantic models nest a few levels).
_MAX_DEPTH = 24
# Nodes written once $refs are inlined: far above real schemas (hundreds); reaching it costs
# milliseconds, where copying a 2**24-node expansion took minutes and gigabytes.
_MAX_NODES = 5_000


@dataclass
class _Walk:
    """What one conversion carries down the tree: the definitions, the nodes written so far (the
    work bound) and where the schema sits in the request (for the error's ``param``)."""

    defs: JSON
    param: str
    strict: bool
    nodes: int = field(default=0)

    def refuse(self, path: str, why: str) -> UnsupportedParameter:
        where = f"{self.param}{path}"
        return UnsupportedParameter(
            f"'{where}' {why}: Gemini's schema (provider types 'gemini' and 'vertex') has no references, "
            "every $ref is copied in where it is used", param=where)


def clean_schema(schema: Any, param: str = "schema", strict: bool = False) -> JSON:
    """A Gemini ``Schema`` equivalent to ``schema`` (best effort for constructs it lacks, unless
    ``strict``: then those are refused).

    ``param`` is where the schema sits in the request (``tools[0].function.parameters``); a schema
    that cannot be inlined (recursive or unknown ``$ref``, too deep, too large) is refused naming
    the path below it."""
    if not isinstance(schema, dict):
        return {}
    defs = {**_mapping(schema.get("definitions")), **_mapping(schema.get("$defs"))}
    return _clean(schema, _Walk(defs, param, strict), 0, "", ())


def _mapping(value: Any) -> JSON:
    """A keyword that must hold an object (``$defs``, ``properties``): anything else the caller
    wrote there (an array, a number) is no schema and is read as none."""
    return value if isinstance(value, dict) else {}


def _listed(value: Any) -> list[Any]:
    """A keyword that must hold an array (``required``): anything else is read as none."""
    return value if isinstance(value, list) else []


def has_properties(schema: JSON) -> bool:
    return bool(schema.get("properties")) or schema.get("type") not in (None, "OBJECT")


_LOCAL_REFS = ("#/$defs/", "#/definitions/")


def _resolve(node: JSON, walk: _Walk, path: str, refs: tuple[str, ...]) -> tuple[JSON, str, tuple[str, ...]]:
    """``node`` with its ``$ref`` (and the ``$ref`` of what that names ...) inlined; the path of
    what was inlined in the caller's schema (``.$defs.Node``), so an error names the line the
    caller wrote; and the chain of definitions inlined above it: one met again is a recursion."""
    while isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        section, _, name = ref.removeprefix("#/").partition("/")
        target = walk.defs.get(name) if ref.startswith(_LOCAL_REFS) else None
        if not isinstance(target, dict):
            raise walk.refuse(f"{path}.$ref", f"('{ref[:100]}') names no entry of the schema's $defs")
        if name in refs:
            raise walk.refuse(f"{path}.$ref", f"('{ref[:100]}') is recursive, which cannot be copied in")
        refs = (*refs, name)
        path = f".{section}.{name}"
        # Keys beside the $ref (e.g. a description) refine the referenced schema.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(node.get("allOf"), list):
        # Each part is resolved first: ``allOf: [{"$ref": ...}]`` is how pydantic v1 and other
        # generators attach a description to a referenced model.
        parts = []
        for i, sub in enumerate(node["allOf"]):
            if isinstance(sub, dict):
                sub, _, inner = _resolve(sub, walk, f"{path}.allOf[{i}]", refs)
                refs = (*refs, *(r for r in inner if r not in refs))
                parts.append(sub)
        node = _merge_all_of(node, parts, walk, path)
    return node, path, refs


def _merge_all_of(node: JSON, parts: list[JSON], walk: _Walk, path: str) -> JSON:
    merged: JSON = {k: v for k, v in node.items() if k != "allOf"}
    for part in parts:
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                props = _mapping(merged.get("properties"))
                if walk.strict and any(k in props and props[k] != v for k, v in value.items()):
                    raise _weaker(walk, f"{path}.allOf", "'allOf' giving one property two schemas")
                merged["properties"] = {**props, **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*_listed(merged.get("required")), *value]
            elif walk.strict and key not in _NOTES and key in merged and merged[key] != value:
                raise _weaker(walk, f"{path}.allOf", f"'allOf' with two values of '{key}'")
            else:
                merged.setdefault(key, value)
    return merged


def _clean(node: Any, walk: _Walk, depth: int, path: str, refs: tuple[str, ...]) -> JSON:
    if not isinstance(node, dict):
        return {}
    if depth > _MAX_DEPTH:
        raise walk.refuse(path, f"nests deeper than {_MAX_DEPTH} levels once its $refs are copied in")
    walk.nodes += 1
    if walk.nodes > _MAX_NODES:
        raise walk.refuse("", f"grows past {_MAX_NODES} nodes once its $refs are copied in")
    node, path, refs = _resolve(node, walk, path, refs)
    nullable, types = _types(node)
    if len(types) == 1:  # keywords of other types apply to nothing; Gemini refuses them
        node = _for_type(node, types[0])
    if walk.strict:
        _check_strict(node, walk, path)
    out: JSON = {k: v for k, v in node.items() if k in _KEPT}
    key = "anyOf" if isinstance(node.get("anyOf"), list) else "oneOf"
    variants = node.get(key)
    if isinstance(variants, list):
        kept = [i for i, v in enumerate(variants) if not (isinstance(v, dict) and v.get("type") == "null")]
        nullable = nullable or len(kept) < len(variants)
        if len(kept) == 1:
            only = _clean(variants[kept[0]], walk, depth + 1, f"{path}.{key}[{kept[0]}]", refs)
            return {**only, **out, **({"nullable": True} if nullable else {})}
        out["anyOf"] = [_clean(variants[i], walk, depth + 1, f"{path}.{key}[{i}]", refs) for i in kept]
    if len(types) > 1:
        # One branch per type, each with the keywords of its type only (JSON Schema applies
        # properties to objects, minLength to strings ...; Gemini refuses them on other types);
        # the node itself keeps its notes, an anyOf cannot also have a type or children.
        alone = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "title", "description")}
        branches = [_clean(_for_type(alone, t), walk, depth + 1, path, refs) for t in types]
        notes = {k: v for k, v in out.items() if k in _NOTES}
        return {**notes, "anyOf": branches, **({"nullable": True} if nullable else {})}
    if types:
        out["type"] = types[0].upper()
    if nullable:
        out["nullable"] = True
    _enum(node, out)
    _format(node, out)
    _children(node, out, walk, depth, path, refs)
    if depth and "type" not in out and "anyOf" not in out:
        out["type"] = _value_type(node)
    return out


_OBJECT_KEYS = frozenset({
    "properties", "required", "additionalProperties", "minProperties", "maxProperties", "propertyOrdering",
    "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas", "unevaluatedProperties",
})
_ARRAY_KEYS = frozenset({
    "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains",
    "minContains", "maxContains", "unevaluatedItems",
})
_NUMBER_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_TYPE_KEYS = {
    "object": _OBJECT_KEYS, "array": _ARRAY_KEYS, "string": frozenset({"minLength", "maxLength", "pattern"}),
    "number": _NUMBER_KEYS, "integer": _NUMBER_KEYS, "boolean": frozenset(),
}


def _for_type(node: JSON, kind: str) -> JSON:
    """``node`` narrowed to one of its types: the keywords of the other types left out."""
    foreign = frozenset().union(*_TYPE_KEYS.values()) - _TYPE_KEYS[kind]
    return {**{k: v for k, v in node.items() if k not in foreign}, "type": kind}


def _check_strict(node: JSON, walk: _Walk, path: str) -> None:
    """Refuse what a strict schema would lose: a value constraint the subset lacks."""
    for key in _UNEXPRESSED:
        if key in node and node[key] is not False:
            raise _weaker(walk, f"{path}.{key}", f"'{key}'")
    if isinstance(node.get("items"), list):
        raise _weaker(walk, f"{path}.items", "'items' as a list (a tuple)")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        raise _weaker(walk, f"{path}.additionalProperties", "'additionalProperties' with a schema (a map)")
    values = [node["const"]] if "const" in node else node.get("enum")
    if isinstance(values, list) and not all(isinstance(v, str) or v is None for v in values):
        key = "const" if "const" in node else "enum"
        raise _weaker(walk, f"{path}.{key}", f"'{key}' with values that are not strings")


def _weaker(walk: _Walk, path: str, what: str) -> UnsupportedParameter:
    where = f"{walk.param}{path}"
    return UnsupportedParameter(
        f"'{where}': {what} has no equivalent in Gemini's schema (provider types 'gemini' and 'vertex'), "
        "and a strict schema is not sent weaker than written: remove it, or send the schema without strict "
        "(then it is left out and the answer is not checked against it)", param=where)


def _types(node: JSON) -> tuple[bool, list[str]]:
    raw = node.get("type")
    listed = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    types = [t for t in listed if isinstance(t, str) and t in _TYPES]  # an item may be any JSON
    return "null" in listed, types


def _enum(node: JSON, out: JSON) -> None:
    values = node.get("enum")
    if "const" in node:
        values = [node["const"]]
    # null among the values (how strict schemas write an optional enum, beside type ["string",
    # "null"], which set nullable already) is Gemini's nullable; a type without null excludes it.
    if isinstance(values, list) and None in values:
        if "type" not in node:
            out["nullable"] = True
        values = [v for v in values if v is not None]
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


def _children(node: JSON, out: JSON, walk: _Walk, depth: int, path: str, refs: tuple[str, ...]) -> None:
    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {
            str(k): _clean(v, walk, depth + 1, f"{path}.properties.{k}", refs) for k, v in props.items()
        }
        required = [r for r in _listed(node.get("required")) if isinstance(r, str) and r in props]
        if required:
            out["required"] = required
        out.setdefault("type", "OBJECT")
    items = node.get("items")
    item_path = f"{path}.items"
    if isinstance(items, list):  # tuple validation: Gemini has one item schema
        items, item_path = (items[0], f"{path}.items[0]") if items else (None, item_path)
    if isinstance(items, dict):
        out["items"] = _clean(items, walk, depth + 1, item_path, refs)
        out.setdefault("type", "ARRAY")
