"""What a route's JSON body model declares at a path: asked only on an error path (a number the
gate of text_input.py would refuse), never per request."""

from __future__ import annotations

import types
from decimal import Decimal
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def _members(annotation: Any) -> tuple[Any, ...]:
    """A type without its ``Annotated`` metadata, as the members of its union (``None`` left out)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(m for arg in get_args(annotation) for m in _members(arg) if m is not type(None))
    return (annotation,)


def declared_at(route: Any, keys: tuple[Any, ...]) -> Any:
    """The type the route's body model declares at ``keys`` (``("timeouts", "total")``), or None
    when the route has no body model or the path leaves its declared fields (a free-form mapping,
    an item of a list)."""
    field = getattr(route, "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for key in keys:
        models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(models) != 1 or not isinstance(key, str) or key not in models[0].model_fields:
            return None
        annotation = models[0].model_fields[key].annotation
    return annotation


def is_decimal(annotation: Any) -> bool:
    """Whether a declared type takes only decimal numbers (``float``, ``Decimal``, optional)."""
    members = _members(annotation) if annotation is not None else ()
    return bool(members) and all(m in (float, Decimal) for m in members)
