"""Where each canonical message of a translated Responses request came from, and a refusal's
``param`` named by it.

A provider adapter (or an OpenAI-shaped upstream) refuses the chat form it was given, naming
``messages[k].tool_call_id`` or ``messages[k].content[j].type``; the caller sent ``input``, and
``k`` also counts the instructions and the continued conversation. request.py records, as it
translates, which input item each message (and each tool call) came from; on the error path
(api.py's name_error) the param is named as the caller spelt it:

    messages[k]                       -> input[i] (the item the message came from)
    messages[k].role                  -> input[i].role
    messages[k].content[j]...         -> input[i].content[j]... (a message item: the same parts;
                                         an image's image_url.url -> image_url, image_url.detail
                                         -> detail; a refusal part's text -> refusal)
    messages[k].content (a tool)      -> input[i].output; its parts -> input[i].output[p]
    messages[k].tool_call_id          -> input[i].call_id (input[i].id for an mcp_call)
    messages[k].tool_calls[c]...      -> input[x] of that call: function.name -> name,
                                         function.arguments -> arguments, id -> call_id
    the instructions' system message  -> instructions
    the message of an input string    -> input
    a message of the continued conversation -> previous_response_id

Anything else (a message the request did not come with, such as the tool loop's) keeps its
chat name. The records and the lookup are those of every translating inbound API
(http/sources.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard.errors import GatewayError, name_as_sent
from switchboard.http.sources import PART, Source, named_call, named_message, source_of, spellings

JSON = dict[str, Any]

# A tool call's chat keys -> the function_call item's (mcp_call: id is its own key).
_CALL_KEYS = {".function.name": ".name", ".function.arguments": ".arguments", ".id": ".call_id"}
_MCP_CALL_KEYS = {".function.name": ".name", ".function.arguments": ".arguments", ".id": ".id"}
# An image_url part's chat keys -> the input_image part's.
_IMAGE_KEYS = {".image_url.url": ".image_url", ".image_url.detail": ".detail"}
# Here a Source's item is the input item (None: the path names it as a whole), its parts each
# chat part's path (the tool outputs' images) or None.
__all__ = ["Source", "input_param", "name_input"]


def name_input(error: GatewayError, messages: Sequence[Any], sources: Sequence[Source],
               history: Sequence[JSON]) -> None:
    """``error``'s param (and its mentions in the message, quoted or not: name_as_sent) named as
    the Responses field it came from, when it names a message. Runs on the error path only."""
    # An upstream's message may write the path otherwise than its param: each form is renamed.
    name_as_sent(error, lambda param: input_param(param, messages, sources, history,
                                                  upstream=error.from_upstream),
                 spellings if error.from_upstream else None)


def input_param(param: str, messages: Sequence[Any], sources: Sequence[Source],
                history: Sequence[JSON], *, upstream: bool = False) -> str | None:
    """``param`` (``messages[k]...``, an ``upstream``'s forms too) as the Responses field it came
    from, or None."""
    found = named_message(param, messages, upstream=upstream)
    if found is None:
        return None
    message, rest = found
    if any(message is m for m in history):
        return "previous_response_id"
    call = named_call(message, rest)
    if call is not None:
        _, called, rest = call
        source = None if called is None else source_of(called, sources)
        if source is None:
            return None
        keys = _MCP_CALL_KEYS if _kind(source[2]) == "mcp_call" else _CALL_KEYS
        return source[1] + next((v for k, v in keys.items() if rest.startswith(k)), "")
    source = source_of(message, sources)
    if source is None:
        return None
    _, path, item, parts = source
    if item is None and parts is None:
        return path
    kind = _kind(item)
    content = "output" if parts is not None or kind in ("function_call_output", "mcp_call") else "content"
    if rest == ".tool_call_id":
        return path + (".id" if kind == "mcp_call" else ".call_id")
    if rest == ".role" and content == "content":
        return path + rest
    part = PART.match(rest)
    if part is not None:
        return _part_param(path, content, item, parts, int(part[1]), rest[part.end():])
    if rest.startswith(".content"):
        return f"{path}.{content}"
    return path


def _kind(item: Any) -> Any:
    return item.get("type", "message") if isinstance(item, dict) else None


def _part_param(path: str, content: str, item: Any, parts: tuple[str, ...] | None, index: int,
                rest: str) -> str:
    """A chat content part's param as the Responses part's."""
    whole = f"{path}.{content}"
    if parts is not None:
        return parts[index] if index < len(parts) else whole
    given = item.get(content) if isinstance(item, dict) else None
    if not isinstance(given, list):
        return whole
    if content == "output":  # a tool message's text parts: the output's, its images left out
        kept = [i for i, p in enumerate(given)
                if not (isinstance(p, dict) and p.get("type") == "input_image")]
        return f"{whole}[{kept[index]}]{rest}" if index < len(kept) else whole
    if index >= len(given):
        return whole
    if rest == ".text" and isinstance(given[index], dict) and given[index].get("type") == "refusal":
        rest = ".refusal"
    rest = next((v for k, v in _IMAGE_KEYS.items() if rest.startswith(k)), rest)
    return f"{whole}[{index}]{rest}"
