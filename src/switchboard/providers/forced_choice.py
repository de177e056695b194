"""A forced ``tool_choice`` (``required``, a named function) on a request without tools.

There is nothing to call: the choice either cannot be sent (Converse's ``toolChoice`` lives in a
``toolConfig`` that needs tools) or the provider refuses it in its own words. Either way the
caller gets the gateway's 400 naming ``tool_choice``, as OpenAI answers, the same on every
provider that uses it, rather than an answer in text it did not ask for. ``auto`` and ``none``
mean no call here anyway and pass.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.target import Target


def refuse_without_tools(choice: Any, target: Target) -> None:
    if choice not in (None, "auto", "none"):
        raise InvalidRequest(
            f"tool_choice forces a tool call, but the request has no tools (provider type "
            f"'{target.provider_type}', model '{target.name}'): send tools with it, or leave tool_choice out",
            param="tool_choice",
        )
