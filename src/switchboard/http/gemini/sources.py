"""A refusal of a translated message named by the Gemini field it came from.

A provider adapter (or an OpenAI-shaped upstream) refuses the chat form it was given, naming
``messages[k]...``; k also counts the system instruction (the first chat message) and the tool
message each ``functionResponse`` part became. The translation records where each chat message
(and tool call) came from (content.py, request.py: http/sources.py's records); on the error path
the param is named as the caller sent it, as Google writes a path:

    the system message                  -> systemInstruction
    messages[k] (a user or model turn)  -> contents[i]; its role -> contents[i].role
    messages[k].content                 -> the lone text part it was, contents[i].parts[p].text;
                                           else contents[i].parts
    messages[k].content[j]              -> the part it came from, contents[i].parts[p]
    messages[k].content[j].x...         -> that part's data: .text, .inlineData, .fileData (its
                                           URL .fileData.fileUri, its type .fileData.mimeType)
    messages[k].tool_calls[c]...        -> the functionCall part contents[i].parts[p].functionCall:
                                           function.name -> name, function.arguments -> args,
                                           id -> id (when the caller gave one)
    a tool message                      -> its part contents[i].parts[p].functionResponse;
                                           tool_call_id -> id (name when paired by name),
                                           content -> response
    anything else of a message          -> the content (or part)

A message the request did not come with (a stage's) keeps its chat name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard.errors import GatewayError
from switchboard.http.sources import PART, Source, name_told, named_call, named_message, source_of

SYSTEM = "systemInstruction"
# A tool call's chat keys -> the functionCall's.
_CALL_KEYS = {".function.name": ".name", ".function.arguments": ".args", ".id": ".id"}
# A chat part's keys naming a fileData part's URL and media type -> the FileData's.
_FILE_KEYS = {".image_url.url": ".fileUri", ".file.file_data": ".fileUri", ".image_url.format": ".mimeType",
              ".file.format": ".mimeType"}


def name_contents(error: GatewayError, messages: Sequence[Any], sources: Sequence[Source]) -> None:
    """``error``'s param (and its mentions in the message) named as the Gemini field it came
    from, when it names a message; Google's error body has no ``param``, so a message that does
    not say the field starts with it (name_told). Runs on the error path only."""
    name_told(error, lambda param: contents_param(param, messages, sources, upstream=error.from_upstream))


def contents_param(param: str, messages: Sequence[Any], sources: Sequence[Source], *,
                   upstream: bool = False) -> str | None:
    """``param`` (``messages[k]...``, an ``upstream``'s forms too) as the Gemini field it came
    from, or None."""
    found = named_message(param, messages, upstream=upstream)
    if found is None:
        return None
    message, rest = found
    call = named_call(message, rest)
    if call is not None:
        _, called, rest = call
        source = None if called is None else source_of(called, sources)
        if source is None:
            return None
        key = next((k for k in _CALL_KEYS if rest.startswith(k)), None)
        if key is None or (key == ".id" and source[2].get("id") is None):  # an id the gateway made
            return source[1]
        return source[1] + _CALL_KEYS[key]
    source = source_of(message, sources)
    if source is None:
        return None
    _, path, given, parts = source
    if message.get("role") == "system":  # systemInstruction, wherever the caller put it
        return path
    if message.get("role") == "tool":  # given: its FunctionResponse
        if rest.startswith(".tool_call_id"):
            return path + (".id" if given.get("id") is not None else ".name")
        return path + ".response" if rest.startswith(".content") else path
    if rest.startswith(".role"):
        return f"{path}.role"
    part = PART.match(rest)
    if part is not None:
        index = int(part[1])
        if parts is None or index >= len(parts):
            return f"{path}.parts"
        return _part_param(parts[index], rest[part.end():])
    if rest.startswith(".content"):
        if parts is not None and len(parts) == 1 and isinstance(message.get("content"), str):
            return parts[0]  # the lone text part the content was
        return f"{path}.parts"
    return path


def _part_param(data: str, rest: str) -> str:
    """What follows a chat part (``.image_url.url``, ``.type``) as the field of the Gemini part
    it came from, whose data field is ``data`` (``contents[0].parts[1].fileData``)."""
    if not rest:
        return data.rsplit(".", 1)[0]  # the part itself
    if data.endswith(".fileData"):
        return data + next((v for k, v in _FILE_KEYS.items() if rest.startswith(k)), "")
    return data
