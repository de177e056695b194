"""Where each canonical message of a translated request came from, and the message a refusal's
``param`` names: the one mechanism the inbound APIs that translate messages name refusals by
(responses/sources.py, anthropic/sources.py, gemini/sources.py).

A provider adapter (or an OpenAI-shaped upstream) refuses the chat form it was given, naming
``messages[k]...`` (an upstream may write ``messages.[k]...`` or ``messages.k...``); k also
counts what the caller did not send as a message of its own (the system prompt or instructions,
a continued conversation, tool results split out of a turn). The
inbound API's translation records a :data:`Source` per canonical message (and, where it needs
them, per tool call); on the error path only, the param is split here into the message (and
call) it names and the rest, which the inbound API spells as its caller did. Identity, not
position, finds a message: stages insert messages and drop some in place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from switchboard.errors import GatewayError, name_as_sent

# What a canonical message (or tool call) was translated from, recorded as the translation builds
# it: (the message or call, the caller's path naming it, what it was made from (the inbound API's
# own: an input item, content blocks), each chat part's path where the API keeps them, or None). A
# plain tuple: one is made per message of every request, and only a refused one is ever read.
Source = tuple[Any, str, Any, tuple[str, ...] | None]

# A message as the chat form names it, ``messages[k]``, and as OpenAI-type upstreams name it in
# their errors: OpenAI ``messages.[k].role``, vLLM (a validation error's location) ``messages.k``.
_UPSTREAM_MESSAGE = re.compile(r"messages(?:\[(\d+)\]|\.\[(\d+)\]|\.(\d+)(?!\w))")
# The chat form alone: the gateway's own refusals (an adapter's) name messages so; one already
# named as the Messages API's caller spells it (``messages.2.content.0``) is not read again.
_MESSAGE = re.compile(r"messages\[(\d+)\]")
# An index further on in the upstream forms (``.content.[0]``, ``.tool_calls.0``): read as ``[j]``.
_INDEX = re.compile(r"\.\[(\d+)\]|\.(\d+)(?!\w)")
# An index in the chat form (``[j]``), to be written in the upstream forms.
_BRACKETED = re.compile(r"\[(\d+)\]")
_CALL = re.compile(r"\.tool_calls\[(\d+)\]")
# A chat content part, after the message: ``.content[j]``.
PART = re.compile(r"\.content\[(\d+)\]")


def named_message(param: str, messages: Sequence[Any], *, upstream: bool = False) -> tuple[Any, str] | None:
    """The message ``param`` (``messages[k]...``; from an ``upstream``, also ``messages.[k]...``
    or ``messages.k...``) names and the rest of the param after it, its indices written ``[j]``,
    or None when it names none of ``messages``."""
    found = (_UPSTREAM_MESSAGE if upstream else _MESSAGE).match(param)
    if found is None:
        return None
    index = int(next(group for group in found.groups() if group))
    if index >= len(messages):
        return None
    rest = param[found.end():]
    return messages[index], _INDEX.sub(lambda m: f"[{m[1] or m[2]}]", rest) if upstream else rest


def spellings(param: str) -> tuple[str, ...]:
    """The other ways the message path ``param`` (an upstream's, in one of the forms above) is
    written, for an upstream's message that names it otherwise than its param: OpenAI's param
    says ``messages.[1].content`` where its text quotes ``'messages[1].content'``. Empty when
    ``param`` names no message."""
    found = _UPSTREAM_MESSAGE.match(param)
    if found is None:
        return ()
    index = next(group for group in found.groups() if group)
    rest = _INDEX.sub(lambda m: f"[{m[1] or m[2]}]", param[found.end():])
    forms = (f"messages[{index}]{rest}", f"messages.[{index}]" + _BRACKETED.sub(r".[\1]", rest),
             f"messages.{index}" + _BRACKETED.sub(r".\1", rest))
    return tuple(form for form in forms if form != param)


def named_call(message: Any, rest: str) -> tuple[int, Any, str] | None:
    """When ``rest`` (after the message) names a tool call (``.tool_calls[c]...``): its index, the
    call (None when the message has no such call) and the rest after it; None otherwise."""
    found = _CALL.match(rest)
    if found is None:
        return None
    index = int(found[1])
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    call = calls[index] if isinstance(calls, list) and index < len(calls) else None
    return index, call, rest[found.end():]


def source_of(obj: Any, sources: Sequence[Source]) -> Source | None:
    """The source recorded for the message or call ``obj``, found by identity."""
    return next((s for s in sources if s[0] is obj), None)


def name_told(error: GatewayError, caller_param: Callable[[str], str | None]) -> None:
    """``error``'s param, when ``caller_param`` finds it a message path, named as the caller sent
    it (and its mentions in the message: name_as_sent; an upstream's in each of its spellings),
    for an API whose error body has no ``param`` (Anthropic's, Google's): a message that does not
    say the field starts with it, as those providers' own refusals name theirs. Error path only."""
    refused = error.param
    given = caller_param(refused) if refused else None
    if refused is None or given is None:
        return
    name_as_sent(error, {refused: given}, spellings if error.from_upstream else None)
    if given not in error.message:
        error.message = f"{given}: {error.message}"
