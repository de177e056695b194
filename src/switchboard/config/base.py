"""What every configuration section model shares.

Frozen (settings are read, never changed, after start-up), unknown keys refused (a typo is an
error, not a silently ignored setting), and scalars in string fields taken as written, so
``api_version: 2024-10-21`` or ``version: 2.10`` stay the strings the user typed (see
``config.yamlfile``); what no field type converts (``Any``) is made plain once validated, so a
YAML ``true`` there is ``True``, not the integer the reader carries it as.

Booleans and numbers are not interchangeable (:class:`ExactScalars`, which the admin API's
bodies share): pydantic's lax mode reads ``true`` as 1 for an int field and ``0``/``1`` as a
boolean, so ``max_tokens: true`` or ``enabled: 1`` was taken as a value nobody wrote. Text
where a boolean or a number goes (``"true"``, ``"5"``) is converted here, as the file's
``${ENV}`` values are text; a JSON body says what it means, so the admin API's bodies refuse it
(:func:`refusing_text`).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, ValidationInfo, field_validator
from pydantic import Strict as StrictType
from pydantic_core import PydanticCustomError

from switchboard.config.yamlfile import ScalarBool, plain

MIB = 1024 * 1024
# The longest wait a time bound of the server or a provider may be set to (a day): `.inf` or
# 1e300 would turn a bound into none (a trickling client held for ever, a drain never ending).
MAX_SECONDS = 86_400
# Connections one pool or one worker holds open (providers' and server.max_connections, in the
# file and the admin API): more is a typo, and each costs a socket and its buffers.
MAX_CONNECTIONS = 100_000

# What a field's type takes of the two: a boolean only, a number only (int or float), or either /
# neither (no check). Containers are looked into: ``list[int]``, ``dict[str, float]``.
# Control characters (C0, DEL, C1): the HTTP server refuses a response header holding one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def control_character(text: str) -> str | None:
    """The first control character of ``text`` as ``U+000A``, or None when it holds none."""
    found = _CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


# A header as the HTTP client will send it: the name an RFC 9110 token, the value without a line
# break or NUL (aiohttp refuses CR and LF at send time, so a configured one failed every request
# as a 500; the admin API refuses the same in its bodies).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_BREAK = re.compile("[\r\n\x00]")


def header_problem(name: str, value: str) -> str | None:
    """Why a configured header ``name: value`` cannot be sent (the value never shown), or None."""
    if not _HEADER_NAME.fullmatch(name):
        return f"{name[:64]!r} is not a header name (letters, digits and !#$%&'*+.^_`|~-)"
    if (found := _HEADER_VALUE_BREAK.search(value)) is not None:
        return f"the value of {name!r} holds a line break or NUL (U+{ord(found.group()):04X})"
    return None


def checked_headers(value: dict[str, str]) -> dict[str, str]:
    """``value`` when every header can be sent, else a ValueError saying why (a validator's)."""
    for name, text in value.items():
        if (problem := header_problem(name, text)) is not None:
            raise ValueError(problem)
    return value


BLANK = "empty or only whitespace, which is no credential"
BLANK_CREDENTIAL = BLANK + " (an empty ${VAR}?)"


def _filled(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError(BLANK_CREDENTIAL)
    return value


def filled_text(value: str) -> str:
    """A credential given as text (an admin API body's): blank is refused, as in the file."""
    if not value.strip():
        raise ValueError(BLANK)
    return value


# A secret the gateway sends or signs with: empty or blank is refused, never used as a key.
Credential = Annotated[SecretStr, AfterValidator(_filled)]


_BOOL, _NUMBER = "bool", "number"
# The error each refusal answers: the one pydantic's strict types give (``StrictInt`` fields such
# as ``rpm`` answer it already), so every field says the same.
_WANTED = {"int": ("int_type", "Input should be a valid integer"),
           "float": ("float_type", "Input should be a valid number"),
           _BOOL: ("bool_type", "Input should be a valid boolean")}


# Set while a JSON body is validated (:func:`refusing_text`): text is then refused where a boolean
# or a number goes, in the body's own fields and in the configuration models nested in it.
_REFUSE_TEXT: ContextVar[bool] = ContextVar("refuse_text", default=False)


@contextmanager
def refusing_text() -> Iterator[None]:
    """Within: ``"true"`` or ``"5"`` is no boolean nor number (the admin API's bodies, which
    are JSON and so say what they mean; the configuration file's ``${ENV}`` values stay text
    that is converted)."""
    token = _REFUSE_TEXT.set(True)
    try:
        yield
    finally:
        _REFUSE_TEXT.reset(token)


def _is_bool(value: Any) -> bool:
    """A boolean as JSON or YAML gives it (the YAML reader carries one as an int, 0 or 1)."""
    return isinstance(value, bool | ScalarBool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not _is_bool(value)


class _Check(typing.NamedTuple):
    """What one field's values must not be: ``wanted`` names the error; ``many`` says the
    field is a container whose items (a mapping's values) are checked; ``text``: whether text
    is refused here (not where the items' own type is strict, which names the item,
    ``thresholds[0]``)."""

    wanted: str
    many: bool
    text: bool = True


def _strict(annotation: Any) -> bool:
    """Whether ``annotation`` is a strict type (``StrictInt``): it refuses text itself."""
    return typing.get_origin(annotation) is typing.Annotated and any(
        isinstance(m, StrictType) and m.strict for m in typing.get_args(annotation)[1:])


def _scalars(annotation: Any) -> set[str]:
    """The scalar types (``int``, ``float``, ``bool``, or ``other``) ``annotation`` admits."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _scalars(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_scalars(a) for a in typing.get_args(annotation) if a is not type(None)))
    if annotation is bool:
        return {_BOOL}
    if annotation is int or annotation is float:
        return {annotation.__name__}
    return {"other"}


def _check_of(annotation: Any) -> _Check | None:
    """How a field typed ``annotation`` is checked (None: it is not)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _check_of(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _check_of(members[0]) if len(members) == 1 else _scalar_check(annotation)
    if origin in (list, tuple, set, frozenset, dict):
        args = typing.get_args(annotation)
        item = args[-1] if args else Any
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
        inner = _scalar_check(item)
        return None if inner is None else _Check(inner.wanted, many=True, text=not _strict(item))
    return _scalar_check(annotation)


def _scalar_check(annotation: Any) -> _Check | None:
    kinds = _scalars(annotation)
    if kinds == {_BOOL}:
        return _Check(_BOOL, many=False)
    if kinds and kinds <= {"int", "float"}:
        return _Check("int" if kinds == {"int"} else "float", many=False)
    return None  # a union of a boolean and a number, or anything else: taken as it is


def scalar_kind(annotation: Any) -> str | None:
    """``"bool"``, ``"int"`` or ``"float"`` when a field typed ``annotation`` takes that one kind
    of scalar (optional or annotated), else None: what a text given for it (the CLI's
    ``--option NAME=VALUE``) stands for."""
    check = _check_of(annotation)
    return None if check is None or check.many else check.wanted


def _refused(check: _Check, value: Any, text: bool) -> bool:
    """Whether ``value`` is of the kind ``check`` refuses; ``text``: a string is refused too."""
    other = _is_number if check.wanted == _BOOL else _is_bool

    text = text and check.text

    def wrong(item: Any) -> bool:
        return other(item) or (text and isinstance(item, str))

    if not check.many:
        return wrong(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    return any(wrong(item) for item in items)


class ExactScalars(BaseModel):
    """A model whose boolean fields refuse a number and whose number fields refuse a boolean,
    with the error a strict field gives (``int_type``, ``float_type``, ``bool_type``) naming the
    field (and, within :func:`refusing_text`, text in either). Which fields to check is worked
    out once per class from the field types; a field that takes both (``metadata``'s values) or
    neither is left alone."""

    @classmethod
    def _scalar_checks(cls) -> dict[str, _Check]:
        """The class's checks by field name, worked out at its first validation (by then every
        field type is resolved, forward references included) and kept on the class."""
        checks: dict[str, _Check] | None = cls.__dict__.get("_exact_scalar_checks")
        if checks is None:
            checks = {name: check for name, info in cls.model_fields.items()
                      if (check := _check_of(info.annotation)) is not None}
            type.__setattr__(cls, "_exact_scalar_checks", checks)
        return checks

    @field_validator("*", mode="before")
    @classmethod
    def _exact_scalar(cls, value: Any, info: ValidationInfo) -> Any:
        check = cls._scalar_checks().get(info.field_name or "")
        if check is not None and _refused(check, value, _REFUSE_TEXT.get()):
            raise PydanticCustomError(*_WANTED[check.wanted])
        return value


class Strict(ExactScalars):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @field_validator("*", mode="after")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return plain(value)
