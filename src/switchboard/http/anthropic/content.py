"""Anthropic ``messages`` -> canonical (OpenAI Chat Completions) messages, validated on the way.

References: https://docs.anthropic.com/en/api/messages (message and content block shapes) and
https://platform.openai.com/docs/api-reference/chat/create (the canonical message shapes).

Consecutive messages of one role are one turn, as Anthropic combines them (``_turns``): tool_use
and tool_result pairing is checked per turn, and a turn's messages stay apart except where the
canonical form needs them together (``_user_messages``, ``_assistant_messages``).

Mapping (the canonical extensions are in docs/providers.md, "Canonical extensions"):
    text block                  -> text part (a lone text part without cache_control becomes a
                                   plain string)
    image block, base64 source  -> image_url part with a ``data:<media_type>;base64,`` URL
    image block, url source     -> image_url part with the http(s) URL
    document block              -> document part ``{type: document, document: {source, title,
                                   context, citations}}`` carried as written
    url source (image, document) -> its scheme in lower case (``HTTPS://`` -> ``https://``; the
                                   body too, so a pass-through sends it so: ``found.rewritten``)
    file source (Files API)     -> image: an ``image_file`` part ``{file_id}``; document: as
                                   written. Its path is noted (``found.files``): the file lives in the
                                   Anthropic account the request is sent with, so only a pass-
                                   through on the caller's own account (or one that allows
                                   account objects) may send it (pipeline/native.py)
    cache_control on a block    -> ``cache_control`` on the part made from it
    tool_use (assistant)        -> assistant ``tool_calls`` (input -> JSON arguments string); an id
                                   carrying a Gemini thought signature (tool_ids.py) -> the plain
                                   id + ``extra_content.google.thought_signature``
    tool_result (user)          -> a ``role: tool`` message each (with the plain call id), placed
                                   before the rest of that user turn so they directly follow the
                                   assistant's tool calls;
                                   ``is_error`` -> ``is_error: true``; plain-text documents in
                                   a result become text; images, and the other documents (PDF
                                   or other base64, URL, Files API: noted in ``found.files``), move
                                   to the user message that follows as document parts (tool
                                   messages carry text only), where each provider's adapter
                                   translates or refuses them as any document part
    thinking / redacted_thinking-> assistant ``thinking_blocks`` (signatures unchanged) and
                                   ``reasoning_content`` (the thinking text)
A key a block type does not have (``BLOCK_KEYS``) is refused, as Anthropic does; the keys it has
are each translated, checked to mean nothing beyond the default (a ``direct`` tool caller, no
toolset, no image transformations) or refused by name (``_default_only``), or documented as
meaning-free: a text block's ``citations`` (the citations an earlier reply carried, echoed back:
the model is not asked to cite by them) are not carried to a translated request; a ``tool_use``
block's ``cache_control`` is not either (the canonical tool call has no breakpoint; a cost hint).
Block types not listed (search results, server tool use and results, container uploads) are
refused naming their ``type``.
Errors name the offending field the way Anthropic does: ``messages.0.content.1.source.data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard import media_urls
from switchboard.errors import InvalidRequest
from switchboard.http.anthropic import tool_ids
from switchboard.http.sources import Source

JSON = dict[str, Any]


@dataclass(slots=True)
class Noted:
    """What decoding notes beside the canonical request: the paths of Files API sources (the
    file lives in the account the request is sent with, judged per attempt: pipeline/native.py),
    and whether a URL source's scheme was written in lower case in the parsed body (the body a
    pass-through sends is then that one: request.py)."""

    files: list[str] = field(default_factory=list)
    rewritten: bool = False
    body: bytes | None = None  # the body so rewritten (request.py)
Blocks = list[tuple[str, Any]]  # a message's content blocks, each with its path
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_DOCUMENT_SOURCES = ("base64", "text", "content", "url", "file")
_CACHE_TTLS = ("5m", "1h")
# The keys of each block type the decoder reads (tests/unit/test_sdk_params.py holds the installed
# SDK's block params against them): any other key is a 400, as Anthropic's own validation gives.
BLOCK_KEYS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control", "transformations"}),
    "document": frozenset({"type", "source", "cache_control", "citations", "context", "title"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller", "toolset_name"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
}


def fail(path: str, problem: str, code: str | None = None) -> InvalidRequest:
    # Anthropic's error body has no code; the request log and metrics still record it.
    return InvalidRequest(f"{path}: {problem}", param=path, code=code)


def _block_type(block: Any, path: str) -> str:
    if not isinstance(block, dict):
        raise fail(path, "Input should be an object")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise fail(f"{path}.type", "Field required")
    check_keys(block, kind, path)
    return kind


def check_keys(block: JSON, kind: str, path: str) -> None:
    """Refuse a key ``kind`` blocks do not have (an unknown ``kind`` is refused by its caller)."""
    known = BLOCK_KEYS.get(kind)
    if known is None:
        return
    for key in block:
        if key not in known:
            raise fail(f"{path}.{str(key)[:60]}", "Extra inputs are not permitted")


def _default_only(block: JSON, key: str, path: str, default: Any, reason: str) -> None:
    """Refuse ``key`` unless absent, null or ``default``: what it asks for (a server tool's call,
    a toolset, an image transformation) has no counterpart here, so it may not be dropped."""
    value = block.get(key)
    if value is not None and value != default:
        raise fail(f"{path}.{key}", f"not supported by this gateway ({reason})")


def text_of(block: JSON, path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise fail(f"{path}.text", "Input should be a valid string")
    if not text:
        raise fail(path, "text content blocks must be non-empty")
    return text


def cached(part: JSON, block: JSON, path: str) -> JSON:
    """``part`` with the prompt-caching breakpoint of ``block``, when it has one."""
    cache = block.get("cache_control")
    if cache is None:
        return part
    return {**part, "cache_control": check_cache_control(cache, f"{path}.cache_control")}


def check_cache_control(cache: Any, path: str) -> JSON:
    """A ``cache_control`` value (at ``path``) checked as Anthropic does: ``{type: ephemeral,
    ttl?: 5m | 1h}``."""
    if not isinstance(cache, dict) or cache.get("type") != "ephemeral":
        raise fail(f"{path}.type", "Input should be 'ephemeral'")
    if cache.get("ttl", "5m") not in _CACHE_TTLS:
        raise fail(f"{path}.ttl", "Input should be '5m' or '1h'")
    return cache


def text_part(block: JSON, path: str) -> JSON:
    return cached({"type": "text", "text": text_of(block, path)}, block, path)


def _base64_data(source: JSON, path: str) -> str:
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise fail(f"{path}.data", "Input should be a non-empty base64 string")
    if not media_urls.is_base64(data):  # the rule every provider's media is held to, not decoded
        raise fail(f"{path}.data", "is not valid base64")
    return data


def _file_id(source: JSON, spath: str, found: Noted) -> str:
    """A Files API source's id, its path noted in ``found.files`` for the attempt to judge."""
    file_id = source.get("file_id")
    if not isinstance(file_id, str) or not file_id:
        raise fail(f"{spath}.file_id", "Input should be a non-empty string")
    found.files.append(f"{spath}.file_id")
    return file_id


def _url(source: JSON, spath: str, found: Noted) -> str:
    """A url source's http(s) URL, its scheme put in lower case in ``source`` itself (schemes are
    case-insensitive; every provider takes them so), noted in ``found`` when that changed it."""
    given = source.get("url")
    if not isinstance(given, str) or media_urls.scheme(given) not in ("http", "https"):
        raise fail(f"{spath}.url", "Input should be an http(s) URL")
    url = media_urls.lowered(given)
    if url is not given:
        source["url"] = url
        found.rewritten = True
    return url


def image_part(block: JSON, path: str, found: Noted) -> JSON:
    _default_only(block, "transformations", path, {}, "images are sent to the model as given")
    source = block.get("source")
    spath = f"{path}.source"
    if not isinstance(source, dict):
        raise fail(spath, "Field required")
    kind = source.get("type")
    if kind == "base64":
        media = source.get("media_type")
        if media not in IMAGE_TYPES:
            allowed = ", ".join(repr(t) for t in IMAGE_TYPES)
            raise fail(f"{spath}.media_type", f"Input should be one of {allowed}")
        url = f"data:{media};base64,{_base64_data(source, spath)}"
    elif kind == "url":
        url = _url(source, spath, found)
    elif kind == "file":
        part = {"type": "image_file", "image_file": {"file_id": _file_id(source, spath, found)}}
        return cached(part, block, path)
    else:
        raise fail(f"{spath}.type", "Input should be 'base64', 'url' or 'file'")
    return cached({"type": "image_url", "image_url": {"url": url}}, block, path)


def document_part(block: JSON, path: str, found: Noted) -> JSON:
    """A document block as the canonical document part, checked and carried as written (a url
    source's scheme in lower case)."""
    source = block.get("source")
    spath = f"{path}.source"
    if not isinstance(source, dict):
        raise fail(spath, "Field required")
    kind = source.get("type")
    if kind not in _DOCUMENT_SOURCES:
        raise fail(f"{spath}.type", "Input should be 'base64', 'text', 'content', 'url' or 'file'")
    if kind == "file":
        _file_id(source, spath, found)
    elif kind == "base64":
        _base64_data(source, spath)
    elif kind == "text" and not isinstance(source.get("data"), str):
        raise fail(f"{spath}.data", "Input should be a valid string")
    elif kind == "content":
        _content_source_text(source.get("content"), f"{spath}.content")
    elif kind == "url":
        _url(source, spath, found)
    document = {k: v for k, v in block.items() if k not in ("type", "cache_control")}
    return cached({"type": "document", "document": document}, block, path)


def _text_source(block: JSON) -> bool:
    """Whether a document block is plain text (source ``text`` or ``content``)."""
    source = block.get("source")
    return isinstance(source, dict) and source.get("type") in ("text", "content")


def _document_text(block: JSON, path: str) -> str:
    """A plain-text document (``_text_source``) as text: its title, then its text."""
    source = block["source"]
    spath = f"{path}.source"
    if source["type"] == "text":
        data = source.get("data")
        if not isinstance(data, str):
            raise fail(f"{spath}.data", "Input should be a valid string")
    else:
        data = _content_source_text(source.get("content"), f"{spath}.content")
    title = block.get("title")
    return f"{title}\n\n{data}" if isinstance(title, str) and title else data


def _content_source_text(content: Any, path: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise fail(path, "Input should be a string or a list of text blocks")
    texts = []
    for i, block in enumerate(content):
        if _block_type(block, f"{path}.{i}") != "text":
            raise fail(f"{path}.{i}.type", "only text blocks are supported inside a document")
        texts.append(text_of(block, f"{path}.{i}"))
    return "\n".join(texts)


def _tool_result(block: JSON, path: str, found: Noted) -> tuple[JSON, list[JSON]]:
    """The tool message for one tool_result block, and any images (and Files API documents) it
    carried."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise fail(f"{path}.tool_use_id", "Field required")
    _default_only(block, "toolset_name", path, None, "toolsets are not supported")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise fail(f"{path}.is_error", "Input should be a valid boolean")
    content = block.get("content", "")
    images: list[JSON] = []
    text = _tool_result_text(content, path, images, found)
    call_id, _ = tool_ids.inbound(tool_use_id)
    message: JSON = {"role": "tool", "tool_call_id": call_id, "content": text}
    marked = _breakpoint(block, content)
    if marked is not None:
        # The breakpoint (on the result or a block inside it) rides on a content part, so the
        # text becomes one; it still ends the cached prefix after this result.
        message["content"] = [cached({"type": "text", "text": text}, marked[0], path + marked[1])]
    if is_error:
        message["is_error"] = True
    return message, images


def _breakpoint(block: JSON, content: Any) -> tuple[JSON, str] | None:
    """The block (and its path suffix) whose cache_control marks this tool result, if any."""
    if block.get("cache_control") is not None:
        return block, ""
    marked = [
        (inner, f".content.{i}")
        for i, inner in enumerate(content if isinstance(content, list) else ())
        if isinstance(inner, dict) and inner.get("cache_control") is not None
    ]
    return marked[-1] if marked else None


def _tool_result_text(content: Any, path: str, images: list[JSON], found: Noted) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, inner in enumerate(content):
            ipath = f"{path}.content.{i}"
            kind = _block_type(inner, ipath)
            if kind == "text":
                texts.append(text_of(inner, ipath))
            elif kind == "image":
                images.append(image_part(inner, ipath, found))
            elif kind == "document" and _text_source(inner):
                texts.append(_document_text(inner, ipath))
            elif kind == "document":
                # PDF (base64), URL and Files API documents: the pass-through sends the result as
                # written, as Anthropic takes them. Carried as a document part next to the images,
                # since the tool message holds text, so a translated attempt translates or refuses
                # it as any document part (providers/documents.py). A Files API source is noted
                # in ``found.files`` and judged per attempt like any other.
                images.append(document_part(inner, ipath, found))
            else:
                raise fail(f"{ipath}.type", "Input should be 'text', 'image' or 'document'")
        return "\n".join(texts)
    raise fail(f"{path}.content", "Input should be a string or a list of content blocks")


def _tool_call(block: JSON, path: str) -> JSON:
    call_id = block.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise fail(f"{path}.id", "Field required")
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"{path}.name", "Field required")
    tool_input = block.get("input")
    if not isinstance(tool_input, dict):
        raise fail(f"{path}.input", "Input should be an object")
    # A call a server tool made (programmatic tool calling) needs the server tools, refused here.
    _default_only(block, "caller", path, {"type": "direct"}, "only calls the model made directly are")
    _default_only(block, "toolset_name", path, None, "toolsets are not supported")
    arguments = orjson.dumps(tool_input).decode()
    plain_id, signature = tool_ids.inbound(call_id)
    call: JSON = {"id": plain_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if signature is not None:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def _user_turn(blocks: Blocks, found: Noted, path: str,
               sources: list[Source] | None) -> tuple[list[JSON], list[tuple[str, str]]]:
    """Canonical messages for one user message (its blocks, each with its path; the message's at
    ``path``), and the tool_use ids its tool_results answer, each with the path of the message's
    content. Where each message came from is added to ``sources`` (sources.py)."""
    tools: list[JSON] = []
    parts: list[JSON] = []
    answered: list[tuple[str, str]] = []
    for bpath, block in blocks:
        kind = _block_type(block, bpath)
        if kind == "text":
            parts.append(text_part(block, bpath))
        elif kind == "image":
            parts.append(image_part(block, bpath, found))
        elif kind == "document":
            parts.append(document_part(block, bpath, found))
        elif kind == "tool_result":
            message, images = _tool_result(block, bpath, found)
            tools.append(message)
            if sources is not None:
                sources.append((message, bpath, block, None))
            answered.append((message["tool_call_id"], bpath.rpartition(".")[0]))
            parts.extend(images)
        elif kind == "tool_use":
            raise fail(f"{bpath}.type", "tool_use blocks are only allowed in assistant messages")
        else:
            raise fail(f"{bpath}.type", f"content block type '{kind[:50]}' is not supported by this gateway")
    if not parts:
        return tools, answered
    user = {"role": "user", "content": _content(parts)}
    if sources is not None:
        sources.append((user, path, blocks, None))
    return [*tools, user], answered


def _content(parts: list[JSON]) -> str | list[JSON]:
    """Plain text when the parts are all plain text, else the parts (cache_control kept)."""
    if parts and all(p["type"] == "text" and "cache_control" not in p for p in parts):
        return "".join(p["text"] for p in parts) if len(parts) == 1 else parts
    return parts


def _thinking_block(block: JSON, path: str) -> JSON:
    if block["type"] == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str) or not data:
            raise fail(f"{path}.data", "Input should be a non-empty string")
        return {"type": "redacted_thinking", "data": data}
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str):
        raise fail(f"{path}.thinking", "Input should be a valid string")
    if not isinstance(signature, str):
        raise fail(f"{path}.signature", "Input should be a valid string")
    return {"type": "thinking", "thinking": text, "signature": signature}


def _assistant_content(parts: list[JSON], has_calls: bool) -> str | list[JSON] | None:
    """The text joined into one string, or the parts when one carries a cache breakpoint."""
    if any("cache_control" in p for p in parts):
        return parts
    return "".join(p["text"] for p in parts) if parts or not has_calls else None


def _assistant_turn(blocks: Blocks) -> JSON:
    parts: list[JSON] = []
    calls: list[JSON] = []
    thoughts: list[JSON] = []
    for bpath, block in blocks:
        kind = _block_type(block, bpath)
        if kind == "text":
            parts.append(text_part(block, bpath))
        elif kind == "tool_use":
            calls.append(_tool_call(block, bpath))
        elif kind in _THINKING_BLOCKS:
            thoughts.append(_thinking_block(block, bpath))
        elif kind in ("tool_result", "image", "document"):
            raise fail(f"{bpath}.type", f"{kind} blocks are only allowed in user messages")
        else:
            raise fail(f"{bpath}.type", f"content block type '{kind[:50]}' is not supported by this gateway")
    message: JSON = {"role": "assistant", "content": _assistant_content(parts, bool(calls))}
    if thoughts:
        message["reasoning_content"] = "".join(t.get("thinking", "") for t in thoughts)
        message["thinking_blocks"] = thoughts
    if calls:
        message["tool_calls"] = calls
    return message


def _check_answers(pending: list[str], answered: list[tuple[str, str]], index: int) -> None:
    """Anthropic's pairing rule: a tool_use is answered by a tool_result in the very next turn.
    ``answered``: the ids answered, each with the content path of the message answering it (a
    turn may be several messages: a stray answer names its own)."""
    unexpected = [(i, path) for i, path in answered if i not in pending]
    if unexpected:
        raise fail(
            unexpected[0][1],
            f"unexpected tool_use_id found in tool_result blocks: {unexpected[0][0][:100]}. Each tool_result "
            "block must have a corresponding tool_use block in the previous message.",
        )
    ids = {i for i, _ in answered}
    missing = [i for i in pending if i not in ids]
    if missing:
        raise fail(
            f"messages.{index}",
            f"tool_use ids were found without tool_result blocks immediately after: {missing[0][:100]}. Each "
            "tool_use block must have a corresponding tool_result block in the next message.",
        )


_NON_EMPTY = "all messages must have non-empty content except for the optional final assistant message"


def _message(msg: Any, i: int, last: bool) -> tuple[str, Any]:
    path = f"messages.{i}"
    if not isinstance(msg, dict):
        raise fail(path, "Input should be an object")
    role = msg.get("role")
    if role == "system":
        raise fail(f"{path}.role", "Input should be 'user' or 'assistant'; "
                   "put system prompts in the top-level 'system' parameter")
    if role not in ("user", "assistant"):
        raise fail(f"{path}.role", "Input should be 'user' or 'assistant'")
    content = msg.get("content")
    optional = last and role == "assistant"
    if isinstance(content, list):
        if not content and not optional:
            raise fail(f"{path}.content", _NON_EMPTY)
    elif content == "" and not optional:
        # An empty string is no content either, as Anthropic answers it (naming the message).
        raise fail(path, _NON_EMPTY)
    elif not isinstance(content, str):
        problem = "Field required" if content is None else "Input should be a string or a list"
        raise fail(f"{path}.content", problem)
    return role, content


def _turns(value: list[Any]) -> list[tuple[str, int, list[Blocks]]]:
    """The messages as turns: Anthropic combines consecutive messages of one role into a single
    turn, so the calls of one assistant turn may be answered over several user messages. Each
    turn is its role, the index of its first message and the blocks of each of its messages (a
    string content is one text block)."""
    turns: list[tuple[str, int, list[Blocks]]] = []
    for i, msg in enumerate(value):
        role, content = _message(msg, i, i == len(value) - 1)
        path = f"messages.{i}.content"
        if isinstance(content, str):
            blocks: Blocks = [(path, {"type": "text", "text": content})] if content else []
        else:
            blocks = [(f"{path}.{j}", block) for j, block in enumerate(content)]
        if turns and turns[-1][0] == role:
            turns[-1][2].append(blocks)
        else:
            turns.append((role, i, [blocks]))
    return turns


def part_paths(blocks: Blocks, role: str) -> list[str]:
    """The path of the block each content part of the canonical message made from ``blocks``
    came from, in order (read on the error path only, sources.py): a user message's text, image
    and document blocks, and where a tool_result stood, the images and documents it moved there
    (_tool_result_text); an assistant message's text blocks (its content is parts only when one
    carries a cache breakpoint)."""
    if role == "assistant":
        return [path for path, block in blocks if block.get("type") == "text"]
    paths = []
    for path, block in blocks:
        kind = block.get("type")
        if kind in ("text", "image", "document"):
            paths.append(path)
        elif kind == "tool_result" and isinstance(block.get("content"), list):
            paths.extend(f"{path}.content.{k}" for k, inner in enumerate(block["content"])
                         if inner.get("type") == "image"
                         or (inner.get("type") == "document" and not _text_source(inner)))
    return paths


def _user_messages(turn: list[Blocks], found: Noted, first: int,
                   sources: list[Source] | None) -> tuple[list[JSON], list[tuple[str, str]]]:
    """A user turn's canonical messages (the turn's first message is ``messages.<first>``): the
    tool messages of all its messages first (they must directly follow the assistant's calls),
    then one user message per message, as written."""
    tools: list[JSON] = []
    users: list[JSON] = []
    answered: list[tuple[str, str]] = []
    for n, blocks in enumerate(turn):
        messages, ids = _user_turn(blocks, found, f"messages.{first + n}", sources)
        tools.extend(m for m in messages if m["role"] == "tool")
        users.extend(m for m in messages if m["role"] != "tool")
        answered.extend(ids)
    return [*tools, *users], answered


def _assistant_messages(turn: list[Blocks], first: int, sources: list[Source] | None) -> list[JSON]:
    """An assistant turn's canonical messages (the turn's first message is ``messages.<first>``):
    one per message, as written, unless calls come before its last message; then the turn is one
    message, so that every call of the turn directly precedes the tool messages answering it."""
    messages = [_assistant_turn(blocks) for blocks in turn]
    if any("tool_calls" in m for m in messages[:-1]):
        joined = [block for blocks in turn for block in blocks]
        messages, turn = [_assistant_turn(joined)], [joined]
    if sources is not None:
        sources.extend((m, f"messages.{first + n}", blocks, None)
                       for n, (m, blocks) in enumerate(zip(messages, turn, strict=True)))
    return messages


def messages(value: Any, found: Noted, sources: list[Source] | None = None) -> list[JSON]:
    """Validate Anthropic ``messages`` and return the canonical message list (without system),
    one canonical turn per Anthropic turn; what decoding notes (Files API sources, a URL
    rewritten in ``value``) to ``found``, where each canonical message came from to ``sources``
    (sources.py: a message's path and blocks, a tool message's tool_result block)."""
    if value is None:
        raise fail("messages", "Field required")
    if not isinstance(value, list):
        raise fail("messages", "Input should be a valid list")
    if not value:
        raise fail("messages", "at least one message is required")
    out: list[JSON] = []
    pending: list[str] = []
    for role, i, turn in _turns(value):
        if role == "user":
            messages, answered = _user_messages(turn, found, i, sources)
            _check_answers(pending, answered, i)
            out.extend(messages)
            pending = []
        else:
            messages = _assistant_messages(turn, i, sources)
            out.extend(messages)
            pending = [c["id"] for m in messages for c in m.get("tool_calls", ())]
    return out
