"""The texts of an embeddings ``input``, for the providers that embed text only.

A provider that takes no token arrays, or fewer inputs per call than the request holds, refuses
the request itself, before the call, as :class:`UnsupportedParameter` (400, naming ``input``):
the deployment's own refusal, so in a group mixing providers another deployment that takes the
request serves it, whichever the strategy picked first (docs/routing.md). Splitting the input
over several upstream calls would make one request several attempts' worth of calls, retries and
usage.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import UnsupportedParameter
from switchboard.providers.target import Target


def text_inputs(request: dict[str, Any], target: Target, most: int | None = None) -> list[str]:
    """``input`` as a list of strings, at most ``most`` of them (no bound when None)."""
    value = request.get("input")
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    if not items or not all(isinstance(x, str) for x in items):
        raise UnsupportedParameter(
            f"provider type '{target.provider_type}' embeds text only: 'input' must be a string or an "
            "array of strings (token arrays are not supported)",
            param="input",
            code="invalid_value",
        )
    if most is not None and len(items) > most:
        limit = (
            f"model '{target.model}' on provider type '{target.provider_type}' embeds one input per request"
            if most == 1
            else f"provider type '{target.provider_type}' embeds at most {most} inputs per request"
        )
        raise UnsupportedParameter(
            f"{limit}: 'input' has {len(items)}; send them in several requests",
            param="input",
            code="too_many_inputs",
        )
    return items
