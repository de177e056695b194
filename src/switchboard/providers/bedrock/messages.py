"""Canonical messages -> Converse ``system`` blocks and ``messages`` turns.

Converse wants strictly alternating user/assistant turns starting with a user turn, refuses empty
content and blank text, and has a system prompt only at the top. So:

- a conversation that would open with an assistant turn (its first user message blank, so left
  out, or none before the assistant's) is a 400 naming that assistant message;

- system/developer messages before the first user or assistant message become ``system``; a later
  one stays where it was, as user-turn text prefixed ``System: `` (providers/turns.py; moving it
  to the top would change what it applies to);
- consecutive same-role messages are merged into one turn, and tool results travel in a user turn,
  ahead of its other blocks;
- an assistant message with nothing to replay keeps its turn with the text ``(no content)``, so the
  user turns around it are not merged into one (a trailing one, a prefill of nothing, is left out);
- ``cache_control`` on a part becomes a ``cachePoint`` block right after that part's block;
- assistant ``thinking_blocks`` go first in their turn as ``reasoningContent``, signatures unchanged;
- ``document`` parts: text documents as text blocks (title first), base64 ones (PDF, Word, Excel)
  as ``document`` blocks (``format``, a ``name`` made of the title's allowed characters,
  ``source.bytes``), in user turns and in tool results alike;
- tool ``is_error: true`` -> ``toolResult.status: "error"``;
- tool call ids: Converse takes 1-64 characters of ``[a-zA-Z0-9_-]``. Ids minted elsewhere that do
  not fit (``functions.get_weather:0`` from some OpenAI-compatible servers, long Responses API
  ids) are replaced the same way in ``toolUse`` and ``toolResult``, so a call and its result still
  pair up; an empty or missing id is a 400 (a result could not name its call).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from switchboard import media_urls
from switchboard.errors import InvalidRequest
from switchboard.providers import documents
from switchboard.providers.anthropic.thinking import gathered
from switchboard.providers.base import JSON
from switchboard.providers.image_types import sniffed
from switchboard.providers.tool_calls import object_arguments
from switchboard.providers.turns import (
    EMPTY_TURN,
    SYSTEM_MARK,
    assistant_content,
    call_ids,
    check_answers,
    require_turns,
)

# Image media types Converse accepts, by the ImageBlock "format" value.
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
_TTLS = ("5m", "1h")
# Document media types Converse accepts as bytes, by the DocumentBlock "format" value (text/* ones
# arrive decoded, as text).
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
# DocumentBlock.name allows letters, digits, single whitespace, hyphens, parentheses and brackets.
_NAME_OUT = re.compile(r"[^A-Za-z0-9\s()\[\]-]+")
# ToolUseBlock.toolUseId / ToolResultBlock.toolUseId: 1-64 characters of these.
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def conversation(messages: list[JSON], paired: bool = True) -> tuple[list[JSON], list[JSON]]:
    """``paired``: tool blocks go as such, so a result must answer an earlier call (Converse
    refuses it otherwise); False when they are sent as text (``tool_choice: none``)."""
    system: list[JSON] = []
    turns: list[JSON] = []
    calls: set[str] = set()
    opener = 0  # the message the first turn came from
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if not turns:
            opener = i
        if role in ("system", "developer"):
            blocks = _system_blocks(msg.get("content"), i, role)
            if not turns:
                system.extend(blocks)
            else:
                _append(turns, "user", [{"text": SYSTEM_MARK + b["text"]} if "text" in b else b
                                        for b in blocks])
        elif role == "user":
            _append(turns, "user", _user_blocks(msg.get("content"), i))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(msg, i))
            calls.update(call_ids(msg))
        elif role == "tool":
            if paired:
                check_answers(msg, i, calls, "bedrock")
            _append(turns, "user", _tool_result(msg, i))
        else:
            raise InvalidRequest(
                f"messages[{i}].role '{role}' is not supported by provider type 'bedrock'; use tools and "
                "'tool' messages", param=f"messages[{i}].role")
    turns = _filled(turns)
    require_turns(turns, "bedrock")
    if turns[0]["role"] != "user":
        # Converse refuses it ("A conversation must start with a user message"); it happens when
        # the user message before it was blank, and so left out.
        raise InvalidRequest(
            f"'messages[{opener}]' would open the conversation with an assistant turn: provider type "
            "'bedrock' (Converse) must start with a user message (blank user messages are left out); "
            "send a user message with content before it",
            param=f"messages[{opener}]", code="invalid_value",
        )
    return system, turns


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    elif blocks or role == "assistant":  # an empty assistant turn is settled by _filled
        turns.append({"role": role, "content": blocks})


def _filled(turns: list[JSON]) -> list[JSON]:
    if turns and not turns[-1]["content"]:
        turns = turns[:-1]
    for turn in turns:
        if not turn["content"]:
            turn["content"] = [{"text": EMPTY_TURN}]
        elif turn["role"] == "user":
            turn["content"] = _results_first(turn["content"])
    return turns


def _results_first(blocks: list[JSON]) -> list[JSON]:
    """Tool results (with the cachePoints that follow them) before the rest of a user turn, as
    Claude requires; text can land before them when a system message sits between a tool call and
    its result."""
    results: list[JSON] = []
    rest: list[JSON] = []
    into = rest
    for block in blocks:
        if "toolResult" in block:
            into = results
        elif "cachePoint" not in block:
            into = rest
        into.append(block)
    return results + rest


def trim_prefill(turns: list[JSON]) -> None:
    """Trailing whitespace off a final assistant turn (a prefill) that ends in text: Claude
    refuses it ("final assistant content cannot end with trailing whitespace")."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    last = next((b for b in reversed(turns[-1]["content"]) if "cachePoint" not in b), None)
    if last is not None and "text" in last:
        last["text"] = last["text"].rstrip()


# ---- parts ----

def cache_point(control: Any, param: str) -> JSON:
    """``cache_control`` -> the CachePointBlock that ends a cached prefix."""
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise InvalidRequest('cache_control must be {"type": "ephemeral"} (and an optional ttl)', param=param)
    point: JSON = {"type": "default"}
    ttl = control.get("ttl")
    if ttl is not None:
        if ttl not in _TTLS:
            raise InvalidRequest("cache_control.ttl must be '5m' or '1h'", param=param + ".ttl")
        point["ttl"] = ttl
    return {"cachePoint": point}


def _with_cache(block: JSON, part: JSON, param: str) -> list[JSON]:
    if part.get("cache_control") is None:
        return [block]
    return [block, cache_point(part["cache_control"], param + ".cache_control")]


def _system_blocks(content: Any, i: int, role: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []  # Converse refuses blank text
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind != "text":
            # Named like the other refusals of a part (the part's type), not the whole content.
            raise InvalidRequest(
                f"content part type '{kind}' in a {role} message is not supported by provider type 'bedrock' "
                "(Converse takes only text there)", param=f"messages[{i}].content[{j}].type")
        if part["text"].strip():
            blocks.extend(_with_cache({"text": part["text"]}, part, f"messages[{i}].content[{j}]"))
    return blocks


def _user_blocks(content: Any, i: int) -> list[JSON]:
    # Blank text says nothing and Converse refuses it: left out (a message left empty is left
    # out by _append, as on the other translated types).
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    blocks: list[JSON] = []
    for j, part in enumerate(content or ()):
        kind, where = part.get("type"), f"messages[{i}].content[{j}]"
        if kind == "text":
            if not part["text"].strip():
                continue
            block = {"text": part["text"]}
        elif kind == "image_url":
            block = image_block(part["image_url"]["url"], where)
        elif kind == "document":
            block = document_block(part, where)
        else:
            raise InvalidRequest(
                f"content part type '{kind}' is not supported by provider type 'bedrock'",
                param=where + ".type",
            )
        blocks.extend(_with_cache(block, part, where))
    return blocks


def image_block(url: str, where: str) -> JSON:
    """A ``data:`` URL -> ImageBlock with the bytes inline (JSON blobs are base64 strings)."""
    param = f"{where}.image_url.url"
    if not media_urls.is_data(url):
        # The gateway inlines http(s) images before the adapter runs (inline_images); anything
        # else reaching here cannot be sent.
        raise InvalidRequest("provider type 'bedrock' accepts images only as data: URLs", param=param)
    image = media_urls.data_url(url, param)
    # The type the bytes are, whatever the label says (clients often label every image jpeg):
    # Bedrock refuses an image whose bytes are not its format.
    fmt = IMAGE_FORMATS.get(sniffed(image.data) or image.media_type)
    if fmt is None:
        raise InvalidRequest(
            f"image type '{image.media_type[:60]}' is not supported by provider type 'bedrock' "
            "(supported: png, jpeg, gif, webp)", param=param,
        )
    return {"image": {"format": fmt, "source": {"bytes": image.data}}}


def document_block(part: JSON, where: str) -> JSON:
    doc = documents.read(part, where, "bedrock")
    if doc.text is not None:
        return {"text": documents.as_text(doc) or EMPTY_TURN}  # Converse refuses blank text
    fmt = DOCUMENT_FORMATS.get(doc.media_type)
    if fmt is None:
        raise InvalidRequest(
            f"{doc.media_type} documents are not supported by provider type 'bedrock' "
            f"(send one of {', '.join(DOCUMENT_FORMATS)}, or text)",
            param=f"{where}.document.source.media_type",
        )
    name = " ".join(_NAME_OUT.sub(" ", doc.title or "").split())[:200] or f"document-{_indices(where)}"
    return {"document": {"format": fmt, "name": name, "source": {"bytes": doc.data}}}


def _indices(where: str) -> str:
    # "messages[2].content[1]" -> "2-1": a default name unique within the request
    return "-".join(re.findall(r"\d+", where))


# ---- assistant ----

def _assistant_blocks(msg: JSON, i: int) -> list[JSON]:
    blocks = _reasoning_blocks(gathered(msg.get("thinking_blocks"), msg.get("reasoning_content")), i)
    content = assistant_content(msg)
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    for j, part in enumerate(content or ()):
        # A refusal part is text the model wrote (sent as text, as on the other translated types);
        # Converse rejects blank text, which clients send next to tool calls. Converse takes images
        # and documents in user turns only: any other part is a 400 naming it, not left out.
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise InvalidRequest(
                f"content part type '{kind}' in an assistant message is not supported by provider type "
                "'bedrock' (Converse takes only text there)", param=f"messages[{i}].content[{j}].type")
        text = part.get(kind)
        if isinstance(text, str) and text.strip():
            blocks.extend(_with_cache({"text": text}, part, f"messages[{i}].content[{j}]"))
    for j, call in enumerate(msg.get("tool_calls") or ()):
        fn, where = call.get("function") or {}, f"messages[{i}].tool_calls[{j}]"
        blocks.append({"toolUse": {
            "toolUseId": tool_use_id(call.get("id"), f"{where}.id"),
            "name": fn.get("name"),
            "input": object_arguments(fn.get("arguments"), f"{where}.function.arguments"),
        }})
    return blocks


def _reasoning_blocks(thinking: Any, i: int) -> list[JSON]:
    """Canonical ``thinking_blocks`` -> ReasoningContentBlocks, text and signature as they came.
    Unsigned blocks (reasoning another provider produced, e.g. a Gemini answer through
    /v1/messages) are left out: Bedrock refuses a reasoning block whose signature it did not make."""
    if thinking is None:
        return []
    param = f"messages[{i}].thinking_blocks"
    if not isinstance(thinking, list):
        raise InvalidRequest("thinking_blocks must be a list", param=param)
    blocks: list[JSON] = []
    for k, block in enumerate(thinking):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and isinstance(block.get("thinking"), str) \
                and isinstance(block.get("signature"), str):
            if block["signature"]:
                text: JSON = {"text": block["thinking"], "signature": block["signature"]}
                blocks.append({"reasoningContent": {"reasoningText": text}})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            blocks.append({"reasoningContent": {"redactedContent": block["data"]}})
        else:
            raise InvalidRequest(
                "a thinking block must be {type: thinking, thinking, signature} or "
                "{type: redacted_thinking, data}", param=f"{param}[{k}]",
            )
    return blocks


def tool_use_id(value: Any, param: str) -> str:
    """A Converse-valid tool use id: unchanged when it fits, else its allowed characters (at most
    47) and a digest of the whole id. A function of the id alone, so the ``toolUse`` and the
    ``toolResult`` of one call get the same id, in this request and the next, and two ids that
    differ only in characters Converse refuses stay apart."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a tool call id is required by provider type 'bedrock'", param=param)
    if _TOOL_USE_ID.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{_ID_UNSAFE.sub('_', value)[:47]}_{digest}"


# ---- tool results ----

def _tool_result(msg: JSON, i: int) -> list[JSON]:
    content = msg.get("content")
    points: list[JSON] = []  # cachePoints cannot sit inside a result: they follow it
    if isinstance(content, str) or content is None:
        parts: list[JSON] = [{"text": content or ""}]
    else:
        parts = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            parts.append(_result_part(part, where))
            if part.get("cache_control") is not None:
                points = [cache_point(part["cache_control"], where + ".cache_control")]
    # Converse refuses empty content and blank text (a tool that printed nothing, or "\n").
    parts = [p for p in parts if not isinstance(p.get("text"), str) or p["text"].strip()] \
        or [{"text": EMPTY_TURN}]
    result: JSON = {"toolUseId": tool_use_id(msg["tool_call_id"], f"messages[{i}].tool_call_id"),
                    "content": parts}
    is_error = msg.get("is_error")
    if is_error not in (None, True, False):
        raise InvalidRequest("is_error must be a boolean", param=f"messages[{i}].is_error")
    if is_error:
        result["status"] = "error"
    return [{"toolResult": result}, *points]


def _result_part(part: JSON, where: str) -> JSON:
    kind = part.get("type")
    if kind == "text":
        return {"text": part.get("text", "")}
    if kind == "image_url":
        return image_block(part["image_url"]["url"], where)
    if kind == "document":
        return document_block(part, where)
    raise InvalidRequest(f"content part type '{kind}' is not supported in a tool result by provider type "
                         "'bedrock'", param=where + ".type")


# ---- tool_choice "none" ----

def has_tool_blocks(turns: list[JSON]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def tools_as_text(turns: list[JSON]) -> list[JSON]:
    """Tool blocks rewritten as text: Converse requires a toolConfig (which lets the model call
    tools) whenever the history holds them, and "none" must not offer any."""
    return [{**t, "content": [b for block in t["content"] for b in _as_text(block)]} for t in turns]


def _as_text(block: JSON) -> list[JSON]:
    if "toolUse" in block:
        use = block["toolUse"]
        args = orjson.dumps(use["input"]).decode()
        return [{"text": f"[tool call {use['name']} ({use['toolUseId']}): {args}]"}]
    if "toolResult" in block:
        result = block["toolResult"]
        label = "tool error" if result.get("status") == "error" else "tool result"
        text = " ".join(p["text"] for p in result["content"] if "text" in p)
        files = [p for p in result["content"] if "image" in p or "document" in p]
        return [{"text": f"[{label} ({result['toolUseId']}): {text}]"}, *files]
    return [block]
