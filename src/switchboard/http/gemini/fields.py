"""Reading Gemini request bodies the way Google's JSON parser does.

Google's API is protobuf behind JSON: every field may be spelled in lowerCamelCase or in
snake_case (the google-genai SDK itself mixes them, e.g. ``thinkingConfig: {"thinking_budget":
...}`` and ``inlineData: {"mime_type": ...}``), an unknown field is a 400, and a value of the
wrong type names the field and its type. :func:`fields` normalises one object's keys to
lowerCamelCase against the names that object may have; free-form values (function arguments,
JSON schemas) are never renamed. Paths in messages are written as Google writes them:
``contents[0].parts[1].inlineData``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

from switchboard.errors import InvalidRequest

JSON = dict[str, Any]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def fail(path: str, problem: str) -> InvalidRequest:
    where = f"'{path}': " if path else ""
    return InvalidRequest(f"Invalid value at {where}{problem}", param=path or None)


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def wrong_type(path: str, kind: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"Invalid value at '{path}' ({kind}), {_shown(value)}", param=path or None)


def unknown(name: str, path: str) -> InvalidRequest:
    where = f" at '{path}'" if path else ""
    shown = name if len(name) <= 60 else name[:57] + "..."
    return InvalidRequest(
        f'Invalid JSON payload received. Unknown name "{shown}"{where}: Cannot find field.',
        param=f"{path}.{shown}" if path else shown,
    )


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def fields(value: Any, path: str, known: Collection[str], kind: str = "object") -> JSON:
    """``value`` as a dict keyed by lowerCamelCase names, every key one of ``known``."""
    if not isinstance(value, dict):
        raise wrong_type(path or "(body)", kind, value)
    out: JSON = {}
    for key, item in value.items():
        name = key if key in known else camel(key)
        if name not in known:
            raise unknown(str(key), path)
        if name in out:
            raise InvalidRequest(
                f"Invalid JSON payload received. Field '{join(path, name)}' is given twice "
                f"(as '{name}' and in snake_case)",
                param=join(path, name),
            )
        out[name] = item
    return out


def string(value: Any, path: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise wrong_type(path, "TYPE_STRING", value)
    if non_empty and not value:
        raise fail(path, "must not be empty")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise wrong_type(path, "TYPE_BOOL", value)
    return value


def integer(value: Any, path: str, low: int | None = None, high: int | None = None,
            kind: str = "TYPE_INT32") -> int:
    """An int32 (or ``kind="TYPE_INT64"``) field: a JSON integer, or a decimal string as proto
    JSON allows, within its type as Google's parser holds it (2147483648 is no int32: a wrong
    value of the type, as Google says; past 64 bits it could not even be sent on)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value) is not None:
        number = int(value)
    bottom, top = _INT_RANGES[kind]
    if number is None or not bottom <= number <= top:
        raise wrong_type(path, kind, value)
    _in_range(number, path, low, high)
    return number


# ASCII digits only: str.isdigit also takes '²' (which int() refuses) and other scripts' digits.
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_INT_RANGES = {"TYPE_INT32": (-(2**31), 2**31 - 1), "TYPE_INT64": (-(2**63), 2**63 - 1)}


def number(value: Any, path: str, low: float | None = None, high: float | None = None) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise wrong_type(path, "TYPE_FLOAT", value)
    _in_range(value, path, low, high)
    return value


def _in_range(value: float, path: str, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise fail(path, f"{value:g} is out of range [{lo}, {hi}]")


def array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise wrong_type(path, "TYPE_ARRAY", value)
    return value


def enum(value: Any, path: str, allowed: Collection[str]) -> str:
    """An enum given by name (case-sensitive, as Google's parser takes it)."""
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(
            f"Invalid value at '{path}' (TYPE_ENUM), {_shown(value)}; expected one of "
            + ", ".join(sorted(allowed)),
            param=path,
        )
    return value


def unsupported(path: str, what: str) -> InvalidRequest:
    """A field Gemini knows that no translation through this gateway can honour."""
    return InvalidRequest(f"'{path}' is not supported by this gateway: {what}", param=path,
                          code="unsupported_parameter")
