"""What every admin request body model shares: booleans and numbers are not interchangeable.

A body's ``max_tokens: true`` or ``enabled: 1`` is a 400 naming the field (``invalid_value``,
with the words a strict field such as ``rpm`` gives), not the 1 or the ``True`` pydantic's lax
mode made of it. The check is the configuration models' own (``config.base.ExactScalars``), so
a body that reuses one (a service, a model's ``info``) answers the same.

Nor is text a boolean or a number: ``"enabled": "true"`` or ``"rpm_limit": "5"`` is the same 400
(``Input should be a valid boolean`` / ``integer``), where pydantic's lax mode converted it. The
configuration file converts such text (its ``${ENV}`` values are text); a JSON body says what it
means. Configuration models a body reuses are checked the same way while the body is validated;
one validated on its own (a model's ``info``) is given this base too.
"""

from __future__ import annotations

from typing import Any

from pydantic import ModelWrapValidatorHandler, model_validator

from switchboard.config.base import ExactScalars, refusing_text


class AdminBody(ExactScalars):
    """The base of every admin body model (each still declares its own ``model_config``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _json_scalars(cls, value: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        with refusing_text():
            return handler(value)
