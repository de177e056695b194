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

Text people read (a name, a display name, a description, a reason) takes no control character
(C0, DEL, C1) and no bidirectional override or isolate (U+202A-U+202E, U+2066-U+2069): they
would hide or reorder what a console, a log line or the portal shows. A one-line text refuses
all of them (:data:`LINE`); a description may keep line breaks and tabs (:data:`PROSE`). Only
what comes in is checked: records stored before load as they were.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import AfterValidator, ModelWrapValidatorHandler, model_validator

from switchboard.config.base import ExactScalars, refusing_text


class AdminBody(ExactScalars):
    """The base of every admin body model (each still declares its own ``model_config``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _json_scalars(cls, value: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        with refusing_text():
            return handler(value)


_BIDI = "\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROLS_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # \t \n kept


def _refuse(pattern: re.Pattern[str]) -> AfterValidator:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise ValueError("control and bidirectional override characters are not allowed "
                             f"(U+{ord(found.group()):04X})")
        return value
    return AfterValidator(check)


# ``Annotated[str, StringConstraints(...), LINE]``: a name or display name, on one line.
LINE = _refuse(_CONTROLS)
# ``Annotated[str, StringConstraints(...), PROSE]``: a description or a reason; \n and \t kept.
PROSE = _refuse(_CONTROLS_BUT_LINES)
