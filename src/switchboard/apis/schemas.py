"""The JSON schemas of prompts (their variables and output, Draft 2020-12): what is checked when
one is saved, validators that never fetch anything, and the walk over a schema's subschemas the
OpenAPI generator uses to carry its references (apis/openapi.py).

A schema is tenant input. A ``$ref`` may only point inside the schema itself, with a JSON
pointer (``#``, ``#/$defs/thing``): a remote reference would make the gateway fetch a URL a
tenant chose (jsonschema retrieves them unless told otherwise), and a reference by ``$id``,
``$anchor`` or ``$dynamicRef`` could not be carried into the generated documents, which move
the schema and rewrite its pointers to where it sits in them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import unquote

import regex

from switchboard import patterns
from switchboard.lazy import Lazy

if TYPE_CHECKING:
    import jsonschema

# Imported on first use (a prompt saved or called, an MCP tool's arguments checked), not at
# every start: with the referencing library it loads, tens of milliseconds.
JSONSCHEMA = Lazy("jsonschema")
REFERENCING = Lazy("referencing")
REFERENCING_ERRORS = Lazy("referencing.exceptions")


def preload() -> None:
    """Import jsonschema and referencing now. The gateway calls it in a worker thread once it
    has started, when prompts or MCP servers will need them (gateway.py, ``warm_imports``), so
    the first call does not import them on the event loop."""
    JSONSCHEMA()
    REFERENCING()
    REFERENCING_ERRORS()

MAX_MESSAGE_CHARS = 300
# A ``pattern`` is tenant input matched against caller input (see switchboard/patterns.py): each
# match is bounded, and so are one validation's matches in all (``patterns_bounded``), or a schema
# of a thousand patterns would hold the event loop a thousand times the bound.
PATTERN_SECONDS = 0.1
PATTERNS_TOTAL_SECONDS = 0.5
_TOO_SLOW = f"took longer than {PATTERN_SECONDS} s (or all of the value's matches {PATTERNS_TOTAL_SECONDS} s)"

# Where Draft 2020-12 (and the drafts before it, which jsonschema still reads) holds subschemas.
_ONE = ("items", "additionalItems", "additionalProperties", "unevaluatedItems", "unevaluatedProperties",
        "contains", "propertyNames", "not", "if", "then", "else", "contentSchema")
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")
# Keywords that name or find a schema other than by its place in this one.
_UNSUPPORTED = ("$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")


def _token(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def subschemas(schema: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema of ``schema`` (itself first) with its JSON pointer, by keyword: the
    values of ``const``, ``enum``, ``default`` or ``examples`` are data, never walked."""
    stack: list[tuple[str, Any]] = [("", schema)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield where, node
        for key in _ONE:
            if key in node:
                stack.append((f"{where}/{key}", node[key]))
        for key in _MANY:
            if isinstance(node.get(key), list):
                stack += [(f"{where}/{key}/{i}", sub) for i, sub in enumerate(node[key])]
        if isinstance(node.get("items"), list):  # the older array form
            stack += [(f"{where}/items/{i}", sub) for i, sub in enumerate(node["items"])]
        for key in _NAMED:
            if isinstance(node.get(key), dict):
                stack += [(f"{where}/{key}/{_token(str(name))}", sub) for name, sub in node[key].items()]


def pointed(schema: Mapping[str, Any], ref: str) -> Any:
    """What the local reference ``ref`` (``#`` or ``#/a/b``) points at in ``schema``; a
    KeyError when it points at nothing."""
    if ref == "#":
        return schema
    node: Any = schema
    for raw in unquote(ref[2:]).split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(ref)
    return node


def is_local(ref: Any) -> TypeGuard[str]:
    return isinstance(ref, str) and (ref == "#" or ref.startswith("#/"))


def check_schema(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a usable JSON schema (Draft 2020-12); None when it is. Beyond the
    metaschema: every ``$ref`` is a JSON pointer within the schema that points at something."""
    lib = JSONSCHEMA()
    try:
        lib.Draft202012Validator.check_schema(dict(schema))
    except lib.SchemaError as exc:
        return f"not a valid JSON schema: {exc.message[:MAX_MESSAGE_CHARS]}"
    if matches_unbounded(schema):
        return ("unevaluatedProperties is not supported in a schema with patternProperties (their "
                "patterns would be matched unbounded); use additionalProperties")
    for where, node in subschemas(schema):
        shown = where or "(the root)"
        for key in _UNSUPPORTED:
            if key in node:
                return (f"{shown}: {key} is not supported; refer to a part of the schema with a "
                        "JSON pointer ($ref: \"#/$defs/name\")")
        ref = node.get("$ref")
        if ref is None:
            continue
        if not is_local(ref):
            return (f"{shown}: $ref '{str(ref)[:200]}' is not a JSON pointer within the schema "
                    "(\"#/$defs/name\"); the gateway fetches no other schema")
        try:
            pointed(schema, ref)
        except KeyError:
            return f"{shown}: $ref '{ref[:200]}' points at nothing in the schema"
    return None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[
        jsonschema.ValidationError]:
    """The ``pattern`` keyword, with a bounded match (see PATTERN_SECONDS)."""
    if not validator.is_type(instance, "string"):
        return
    try:
        found = search(pattern, instance)
    except TimeoutError:
        yield JSONSCHEMA().ValidationError(f"matching the pattern {pattern[:100]!r} {_TOO_SLOW}")
        return
    except regex.error as exc:
        yield JSONSCHEMA().ValidationError(
            f"the pattern {pattern[:100]!r} is not a regular expression: {exc}")
        return
    if found is None:
        yield JSONSCHEMA().ValidationError(f"{instance[:100]!r} does not match {pattern[:100]!r}")


def patterns_bounded() -> AbstractContextManager[None]:
    """Matches of tenant or server patterns inside share ``PATTERNS_TOTAL_SECONDS`` of matching
    in all (an outer bound, where one is already running, is kept)."""
    return patterns.bounded(PATTERNS_TOTAL_SECONDS)


def search(pattern: str, text: str) -> regex.Match[str] | None:
    """``regex.search`` for at most ``PATTERN_SECONDS`` and within what is left of the running
    bound; TimeoutError past either, regex.error for a pattern that is not one."""
    return patterns.search(pattern, text, PATTERN_SECONDS)


class _PatternFailed(Exception):
    """A property-name pattern that could not be matched: the value fails with this message."""


def _search(pattern: str, text: str) -> bool:
    """A bounded ``re.search`` for the keywords that match property names (patternProperties,
    and additionalProperties, which skips the names they match)."""
    try:
        return search(pattern, text) is not None
    except TimeoutError:
        raise _PatternFailed(f"matching the pattern {pattern[:100]!r} {_TOO_SLOW}") from None
    except regex.error as exc:
        raise _PatternFailed(f"the pattern {pattern[:100]!r} is not a regular expression: {exc}") from None


def _pattern_properties(validator: Any, patterns: Mapping[str, Any], instance: Any,
                        schema: Mapping[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            try:
                matched = _search(pattern, name)
            except _PatternFailed as exc:
                yield JSONSCHEMA().ValidationError(str(exc))
                return
            if matched:
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any,
                           schema: Mapping[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    try:
        extras = [name for name in instance
                  if name not in named and not any(_search(p, name) for p in patterns)]
    except _PatternFailed as exc:
        yield JSONSCHEMA().ValidationError(str(exc))
        return
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif not additional and extras:
        shown = ", ".join(repr(name) for name in sorted(extras))[:MAX_MESSAGE_CHARS]
        message = (f"{shown}: not allowed (no such property, and no patternProperties pattern matches)"
                   if patterns else f"Additional properties are not allowed ({shown} unexpected)")
        error = JSONSCHEMA().ValidationError(message)
        error.unexpected = sorted(extras)
        yield error


def unexpected(error: jsonschema.ValidationError) -> list[str]:
    """The property names an ``additionalProperties: false`` error is about (empty for any
    other error): a caller's error names each where it is, as a ``required`` one is named."""
    return list(getattr(error, "unexpected", ()))


_BOUNDED = {"pattern": _pattern, "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties}
_bounded_classes: dict[type, type] = {}
# An empty registry (made on first use): a reference to anything outside the schema is
# unresolvable, never fetched.
_nothing: Any = None


def matches_unbounded(schema: Mapping[str, Any]) -> bool:
    """Whether validating ``schema`` would match patterns unbounded: ``unevaluatedProperties``
    beside ``patternProperties`` (jsonschema finds the evaluated names with Python's ``re``)."""
    nodes = [node for _, node in subschemas(schema)]
    return (any("patternProperties" in node for node in nodes)
            and any("unevaluatedProperties" in node for node in nodes))


def bounded(cls: type) -> Any:
    """``cls`` (a jsonschema validator class, any draft) with every pattern match bounded as
    here: for schemas of other origins checked against caller input (MCP tools' inputSchema)."""
    found = _bounded_classes.get(cls)
    if found is None:
        found = _bounded_classes[cls] = JSONSCHEMA().validators.extend(cls, _BOUNDED)
    return found


def validator(schema: Mapping[str, Any], *, formats: bool = False) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` that resolves references within it only (``formats``: checks
    ``format`` too) and bounds every ``pattern`` match."""
    draft = JSONSCHEMA().Draft202012Validator
    checker = draft.FORMAT_CHECKER if formats else None
    built: jsonschema.Draft202012Validator = bounded(draft)(dict(schema), registry=nothing(),
                                                            format_checker=checker)
    return built


def nothing() -> Any:
    """The empty registry validators here resolve references with: nothing outside the schema
    is found, and nothing is fetched."""
    global _nothing
    if _nothing is None:
        _nothing = REFERENCING().Registry()
    return _nothing


def errors(schema: Mapping[str, Any], value: Any, *,
           formats: bool = False) -> list[jsonschema.ValidationError]:
    """The ways ``value`` fails ``schema``, its patterns matched within ``PATTERN_SECONDS`` in
    all. A schema saved before references were checked may hold one that resolves nowhere: that
    is one error at the root, never a fetch."""
    with patterns_bounded():
        try:
            return list(validator(schema, formats=formats).iter_errors(value))
        except REFERENCING_ERRORS().Unresolvable as exc:
            return [JSONSCHEMA().ValidationError(
                f"the schema has a $ref that resolves nowhere: {str(exc)[:200]}")]
