"""What every admin request body model shares: booleans and numbers are not interchangeable.

A body's ``max_tokens: true`` or ``enabled: 1`` is a 400 naming the field (``invalid_value``,
with the words a strict field such as ``rpm`` gives), not the 1 or the ``True`` pydantic's lax
mode made of it. The check is the configuration models' own (``config.base.ExactScalars``), so
a body that reuses one (a service, a model's ``info``) answers the same.
"""

from __future__ import annotations

from switchboard.config.base import ExactScalars


class AdminBody(ExactScalars):
    """The base of every admin body model (each still declares its own ``model_config``)."""
