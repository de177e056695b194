"""A refusal of a translated message named by the Messages field it came from.

A provider adapter (or an OpenAI-shaped upstream) refuses the chat form it was given, naming
``messages[k]...``; k also counts the system prompt (the first chat message) and the tool
messages each ``tool_result`` block became. The translation records where each chat message came
from (content.py, request.py: http/sources.py's records); on the error path the param is named
as the caller sent it, in Anthropic's dotted form:

    the system message                -> system; its content[j] -> system.j (text blocks)
    messages[k] (a user or assistant) -> messages.i (an assistant turn joined into one message:
                                         its first message)
    messages[k].content[j]...         -> the block part j came from (content.py part_paths):
                                         messages.i.content.b..., an image's image_url ->
                                         source, a document's document.x -> x; an image a
                                         tool_result carried: messages.i.content.b.content.n
    messages[k].content...            -> messages.i.content
    messages[k].tool_calls[c]...      -> the c-th tool_use block: function.name -> name,
                                         function.arguments -> input, id -> id
    a tool message, messages[k]       -> its tool_result block messages.i.content.b;
                                         tool_call_id -> tool_use_id, content -> content,
                                         is_error -> is_error
    anything else of a message        -> the message (or block)

A message the request did not come with (the tool loop's) keeps its chat name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard.errors import GatewayError
from switchboard.http.anthropic.content import part_paths
from switchboard.http.sources import PART, Source, name_told, named_call, named_message, source_of

# A tool call's chat keys -> the tool_use block's.
_CALL_KEYS = {".function.name": ".name", ".function.arguments": ".input", ".id": ".id"}
# A chat content part's keys -> the block's (an image_url's URL was the block's source).
_PART_KEYS = {".image_url": ".source", ".image_file": ".source", ".document": ""}
# A tool message's keys -> the tool_result block's.
_TOOL_KEYS = {".tool_call_id": ".tool_use_id", ".content": ".content", ".is_error": ".is_error"}


def name_messages(error: GatewayError, messages: Sequence[Any], sources: Sequence[Source]) -> None:
    """``error``'s param (and its mentions in the message) named as the Messages field it came
    from, when it names a message; Anthropic's error body has no ``param``, so a message that does
    not say the field starts with it (``messages.1.content.0: ...``: name_told). Runs on the error
    path only."""
    name_told(error, lambda param: message_param(param, messages, sources, upstream=error.from_upstream))


def message_param(param: str, messages: Sequence[Any], sources: Sequence[Source], *,
                  upstream: bool = False) -> str | None:
    """``param`` (``messages[k]...``, an ``upstream``'s forms too) as the Messages field it came
    from, or None."""
    found = named_message(param, messages, upstream=upstream)
    source = None if found is None else source_of(found[0], sources)
    if found is None or source is None:
        return None
    message, rest = found
    _, path, given, _ = source
    if path == "system":
        part = PART.match(rest)
        if part is None or not isinstance(given, list) or int(part[1]) >= len(given):
            return path
        return f"system.{part[1]}" + _part_rest(rest[part.end():])
    if message.get("role") == "tool":  # given: its tool_result block
        return path + next((v for k, v in _TOOL_KEYS.items() if rest.startswith(k)), "")
    call = named_call(message, rest)
    if call is not None:
        index, _, rest = call
        uses = [p for p, block in given if block.get("type") == "tool_use"]
        if index >= len(uses):
            return path
        return uses[index] + next((v for k, v in _CALL_KEYS.items() if rest.startswith(k)), "")
    part = PART.match(rest)
    if part is not None:
        paths = part_paths(given, message.get("role"))
        index = int(part[1])
        return paths[index] + _part_rest(rest[part.end():]) if index < len(paths) else f"{path}.content"
    return f"{path}.content" if rest.startswith(".content") else path


def _part_rest(rest: str) -> str:
    """What follows a chat part (``.text``, ``.image_url.url``, ``.document.source.type``) as
    what follows the block it came from."""
    for key, given in _PART_KEYS.items():
        if rest.startswith(key):
            return given if given else rest[len(key):]
    return rest
