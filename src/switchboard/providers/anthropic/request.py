"""Canonical (OpenAI Chat Completions) request -> Anthropic Messages request.

References (Claude API docs, https://platform.claude.com/docs/en/):
  api/messages/create                          fields, roles, max_tokens, metadata.user_id
  build-with-claude/vision                     image sources: base64 (jpeg/png/gif/webp) and url
  build-with-claude/pdf-support                document blocks
  agents-and-tools/tool-use/define-tools       tool names ^[a-zA-Z0-9_-]{1,64}$, input_schema, tool_choice
  agents-and-tools/tool-use/handle-tool-calls  tool_result blocks go first in the next user turn
  build-with-claude/structured-outputs         output_config.format {type: json_schema, schema}
  build-with-claude/prompt-caching             cache_control on system, message and tool blocks
  build-with-claude/extended-thinking          thinking, thinking blocks (see thinking.py)

Which fields are translated and which refused is the capability table
(``providers/capabilities/anthropic.py``); ``check`` applies it.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

from switchboard import media_urls
from switchboard.errors import InvalidRequest
from switchboard.providers import (
    account,
    allowed_tools,
    capabilities,
    forced_choice,
    stop_sequences,
)
from switchboard.providers.anthropic import thinking
from switchboard.providers.anthropic.options import AnthropicOptions
from switchboard.providers.base import JSON
from switchboard.providers.image_types import sniffed
from switchboard.providers.response_format import described_schema
from switchboard.providers.target import Target
from switchboard.providers.tool_calls import object_arguments
from switchboard.providers.turns import (
    EMPTY_TURN,
    SYSTEM_MARK,
    assistant_content,
    call_ids,
    check_answers,
    require_turns,
)

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

# The tool that carries the answer when JSON mode is emulated; the response side turns its input
# back into message text. Clients may not define a tool of this name.
JSON_TOOL = "switchboard_json_output"

# Anthropic's metadata.user_id: a string of at most this many characters (API reference).
USER_ID_MAX = 256
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_CACHE_TTLS = ("5m", "1h")
# Document sources that carry their content (or a public URL Anthropic fetches as anyone would).
_DOCUMENT_SOURCES = frozenset({"base64", "text", "content", "url"})


def options_of(target: Target) -> AnthropicOptions:
    options = target.options
    return options if isinstance(options, AnthropicOptions) else AnthropicOptions()


def request_headers(options: AnthropicOptions, stream: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "anthropic-version": options.anthropic_version}
    if options.anthropic_beta:
        headers["anthropic-beta"] = ",".join(options.anthropic_beta)
    if stream:
        headers["Accept"] = "text/event-stream"
    return headers


def build_body(request: JSON, target: Target) -> JSON:
    request = allowed_tools.narrowed(capabilities.check(request, target))
    options = options_of(target)
    given = _max_tokens(request)
    system, messages = convert_messages(request["messages"], target)
    think, max_tokens = thinking.thinking(request, given or options.default_max_tokens, given is not None)
    if think is not None and think["type"] != "disabled" and not thinking.fits_tool_loop(messages):
        # Anthropic refuses thinking on a turn that continues a tool call its assistant turn made
        # without a signed thinking block (another provider's, or a client that kept none).
        think, max_tokens = None, given or options.default_max_tokens
    if think is not None and think["type"] != "disabled":
        request = thinking.sampling_conflicts(request, target)
    body: JSON = {"model": target.model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    if think is not None:
        body["thinking"] = think
    _sampling(request, body, target)
    _tools(request, body)
    _response_format(request, body, options)
    if "tools" not in body:  # neither the caller's tools nor the JSON mode's own
        forced_choice.refuse_without_tools(request.get("tool_choice"), target)
    if (effort := thinking.effort_level(request)) is not None:
        body.setdefault("output_config", {})["effort"] = effort
    if think is not None and think["type"] != "disabled":
        thinking.check_tool_choice((body.get("tool_choice") or {}).get("type"), request, target)
    if request.get("stream"):
        body["stream"] = True
    return body


def count_tokens_body(request: JSON, target: Target) -> JSON:
    """The count_tokens endpoint takes the Messages body minus generation settings."""
    body = build_body({**request, "stream": False}, target)
    keep = ("model", "messages", "system", "tools", "tool_choice", "output_config", "thinking")
    return {k: body[k] for k in keep if k in body}


def _max_tokens(request: JSON) -> int | None:
    value = request.get("max_completion_tokens") or request.get("max_tokens")
    return int(value) if isinstance(value, int) else None


def _sampling(request: JSON, body: JSON, target: Target) -> None:
    # Passed through unchanged: Anthropic's temperature range is 0..1 and the upstream says so
    # itself when a value is out of range.
    for key in ("temperature", "top_p", "top_k"):
        if request.get(key) is not None:
            body[key] = request[key]
    if stops := stop_sequences.to_send(request, target, "anthropic", blank_refused=True):
        body["stop_sequences"] = stops
    if (user := _user_id(request)) is not None:
        body["metadata"] = {"user_id": user}


def _user_id(request: JSON) -> str | None:
    """``user``, else ``safety_identifier``, as ``metadata.user_id``. Anthropic documents at most
    256 characters there; a longer one is a 400 naming the caller's field, not Anthropic's."""
    param = "user" if request.get("user") else "safety_identifier"
    user = request.get(param)
    if not isinstance(user, str) or not user:
        return None
    if len(user) > USER_ID_MAX:
        raise InvalidRequest(
            f"'{param}' is {len(user)} characters; provider type 'anthropic' takes at most {USER_ID_MAX} "
            "(Anthropic's metadata.user_id): send a shorter id, such as a hash of it",
            param=param,
            code="invalid_value",
        )
    return user


# -- messages -----------------------------------------------------------------------------------


def convert_messages(messages: list[JSON], target: Target) -> tuple[list[JSON], list[JSON]]:
    """Leading system/developer messages become the ``system`` blocks; the rest alternating turns
    (providers/turns.py: a later system message stays in place, an empty assistant turn is kept)."""
    system: list[JSON] = []
    turns: list[JSON] = []
    calls: set[str] = set()  # the tool calls made so far, which a tool result must answer
    for i, msg in enumerate(messages):
        role = msg.get("role")
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            blocks = _text_blocks(msg.get("content"), f"{param}.content", target)
            if turns:
                _append(turns, "user", _marked(blocks))
            else:
                system.extend(blocks)
        elif role == "user":
            _append(turns, "user", said(content_blocks(msg.get("content"), f"{param}.content", target)))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(msg, param, target))
            calls.update(call_ids(msg))
        elif role == "tool":
            check_answers(msg, i, calls, "anthropic")
            _append(turns, "user", [_tool_result(msg, param, target)])
        else:
            raise InvalidRequest(
                f"role '{role}' is not supported by provider type 'anthropic'; use 'tool' messages",
                param=f"{param}.role",
            )
    if turns and not turns[-1]["content"]:
        turns.pop()  # an empty prefill asks for nothing
    for turn in turns:
        if not turn["content"]:
            turn["content"] = [{"type": "text", "text": EMPTY_TURN}]
        elif turn["role"] == "user":
            # Anthropic wants tool results before any other content of the user turn.
            turn["content"].sort(key=lambda b: b.get("type") != "tool_result")
    _strip_prefill(turns)
    require_turns(turns, "anthropic")
    return system, turns


def _marked(blocks: list[JSON]) -> list[JSON]:
    if not blocks:
        return blocks
    return [{**blocks[0], "text": SYSTEM_MARK + blocks[0]["text"]}, *blocks[1:]]


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    """Merge consecutive same-role messages into one turn. An empty user message is left out; an
    empty assistant one keeps its turn (filled in by convert_messages) so the user turns around
    it stay apart."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    elif blocks or role == "assistant":
        turns.append({"role": role, "content": blocks})


def _strip_prefill(turns: list[JSON]) -> None:
    """A final assistant turn (prefill) may not end with whitespace."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    blocks = turns[-1]["content"]
    last = blocks[-1]
    if last.get("type") == "text":
        last["text"] = last["text"].rstrip()
        if not last["text"]:
            blocks.pop()
    if not blocks:
        turns.pop()


def _text_blocks(content: Any, param: str, target: Target) -> list[JSON]:
    blocks = content_blocks(content, param, target)
    for j, block in enumerate(blocks):
        if block["type"] != "text":
            raise InvalidRequest(f"only text content is allowed here (found {block['type']})",
                                 param=f"{param}[{j}]")
    return said(blocks)


def said(blocks: list[JSON]) -> list[JSON]:
    """``blocks`` without their text when all of it is whitespace ("\\n\\n" before tool calls, a
    blank system prompt): Anthropic refuses a message whose text blocks are all whitespace ("text
    content blocks must contain non-whitespace text"), and such text says nothing. Whitespace
    beside other text is kept as written."""
    texts = [b["text"] for b in blocks if b["type"] == "text"]
    if texts and not any(t.strip() for t in texts):
        return [b for b in blocks if b["type"] != "text"]
    return blocks


def content_blocks(content: Any, param: str, target: Target) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        block = _part(part, f"{param}[{j}]", target)
        if block is not None:
            blocks.append(block)
    return blocks


def _part(part: JSON, param: str, target: Target) -> JSON | None:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str) or not text:
            return None  # empty text blocks are rejected upstream
        block: JSON = {"type": "text", "text": text}
    elif kind == "image_url":
        block = {"type": "image", "source": _image_source(part["image_url"]["url"], f"{param}.image_url.url")}
    elif kind == "file":
        block = _document(part.get("file"), f"{param}.file")
    elif kind == "document":
        block = _document_part(part.get("document"), f"{param}.document", target)
    else:
        raise InvalidRequest(f"content part type '{kind}' is not supported by provider type 'anthropic'",
                             param=f"{param}.type")
    return with_cache_control(block, part, param)


def with_cache_control(block: JSON, source: JSON, param: str) -> JSON:
    """``block`` with the prompt-caching breakpoint ``source`` carries (a canonical extension on
    content parts and tools), checked so a typo is a 400 rather than a silently uncached prompt."""
    cache = source.get("cache_control")
    if cache is None:
        return block
    if not (isinstance(cache, dict) and cache.get("type") == "ephemeral"
            and cache.get("ttl", "5m") in _CACHE_TTLS):
        raise InvalidRequest("cache_control must be {'type': 'ephemeral'} with an optional ttl '5m' or '1h'",
                             param=f"{param}.cache_control")
    block["cache_control"] = cache
    return block


def _pdf_url(url: str, given: Any, param: str) -> JSON:
    """A file by URL (``file.format`` its type, else the URL path's extension): Anthropic fetches
    PDFs by URL (a document ``url`` source), nothing else; other files must come inline."""
    media_type = given if isinstance(given, str) else mimetypes.guess_type(url.split("?", 1)[0])[0]
    if (media_type or "").lower() != "application/pdf":
        raise InvalidRequest(
            f"provider type 'anthropic' takes a file by URL only as a PDF, not as "
            f"'{str(media_type)[:60]}'; send the file inline (a data URL)", param=param,
        )
    return {"type": "url", "url": url}


def _document_part(document: Any, param: str, target: Target) -> JSON:
    """A canonical document part is an Anthropic document block carried as written, but for its
    source: a ``file`` source names a file of the Files API of the account the request is sent
    with, refused on the gateway's shared one (providers/account.py); a source type this code does
    not know may name one too, so it is refused rather than passed on unchecked."""
    source = document.get("source") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(source, dict):
        raise InvalidRequest("a document part needs 'document': {'source': {...}}", param=param)
    kind = source.get("type")
    if kind == "file":
        account.check(target, f"{param}.source.file_id", "a file of the Anthropic Files API")
    elif kind not in _DOCUMENT_SOURCES:
        raise InvalidRequest(f"document source type {str(kind)[:40]!r} is not supported by provider type "
                             "'anthropic' (send base64, text, content or url sources)",
                             param=f"{param}.source.type")
    elif kind == "url" and isinstance(given := source.get("url"), str):
        url = media_urls.lowered(given)  # the scheme in lower case, as an image URL's
        if url is not given:
            return {"type": "document", **document, "source": {**source, "url": url}}
    return {"type": "document", **document}


def _image_source(url: str, param: str) -> JSON:
    scheme = media_urls.scheme(url)
    if scheme == "data":
        image = media_urls.data_url(url, param)
        media_type = sniffed(image.data) or image.media_type  # clients often label every image image/jpeg
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"image type '{media_type}' is not supported by provider type 'anthropic' "
                f"(supported: {', '.join(sorted(_IMAGE_TYPES))})",
                param=param,
            )
        return {"type": "base64", "media_type": media_type, "data": image.data}
    if scheme in ("https", "http"):
        return {"type": "url", "url": media_urls.lowered(url)}
    raise InvalidRequest("image URLs must be http(s) or data URLs", param=param)


def _document(file: Any, param: str) -> JSON:
    url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(url, str) or (scheme := media_urls.scheme(url)) not in ("data", "http", "https"):
        raise InvalidRequest(
            "a file needs 'file_data' (a data URL, or a PDF's http(s) URL) for provider type 'anthropic'",
            param=f"{param}.file_data" if isinstance(url, str) else param,
        )
    if scheme != "data":
        source = _pdf_url(media_urls.lowered(url), file.get("format"), f"{param}.file_data")
        block: JSON = {"type": "document", "source": source}
    else:
        document = media_urls.data_url(url, f"{param}.file_data")
        if document.media_type != "application/pdf":
            raise InvalidRequest(f"file type '{document.media_type}' is not supported (only application/pdf)",
                                 param=f"{param}.file_data")
        block = {"type": "document",
                 "source": {"type": "base64", "media_type": document.media_type, "data": document.data}}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _assistant_blocks(msg: JSON, param: str, target: Target) -> list[JSON]:
    # Earlier thinking goes first in its turn, as Anthropic produced it. reasoning_content without
    # signed blocks is not sent: Anthropic accepts only thinking it signed itself.
    given = thinking.gathered(msg.get("thinking_blocks"), msg.get("reasoning_content"))
    blocks = thinking.blocks(given, f"{param}.thinking_blocks")
    # An empty turn is filled in by convert_messages.
    blocks += said(content_blocks(assistant_content(msg), f"{param}.content", target))
    for j, call in enumerate(msg.get("tool_calls") or []):
        fn = call["function"]
        blocks.append({
            "type": "tool_use",
            "id": tool_id(call.get("id"), f"{param}.tool_calls[{j}]"),
            "name": fn["name"],
            "input": object_arguments(fn.get("arguments"), f"{param}.tool_calls[{j}].function.arguments"),
        })
    return blocks


def tool_id(value: Any, param: str) -> str:
    """Anthropic ids match ^[a-zA-Z0-9_-]+$; ids minted elsewhere are made to fit, the same way
    on both the tool_use and the tool_result side so they still pair up."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a tool call id is required", param=param)
    return _ID_UNSAFE.sub("_", value)


def _tool_result(msg: JSON, param: str, target: Target) -> JSON:
    block: JSON = {"type": "tool_result",
                   "tool_use_id": tool_id(msg.get("tool_call_id"), f"{param}.tool_call_id")}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif blocks := content_blocks(content, f"{param}.content", target):
        block["content"] = blocks
    is_error = msg.get("is_error")
    if is_error not in (None, False, True):
        raise InvalidRequest("is_error must be a boolean", param=f"{param}.is_error")
    if is_error:
        block["is_error"] = True
        # Anthropic: "content cannot be empty if `is_error` is true" (a tool that failed silently).
        block.setdefault("content", EMPTY_TURN)
    return block


# -- tools and output format --------------------------------------------------------------------


def _tools(request: JSON, body: JSON) -> None:
    tools = request.get("tools")
    if not tools:
        # Nothing to choose among: auto and none mean no call anyway; a forced choice is kept for
        # _response_format's check, then refused (build_body) if no JSON tool came to need it.
        if request.get("tool_choice") not in (None, "auto", "none"):
            body["tool_choice"] = _tool_choice(request["tool_choice"], None)
        return
    body["tools"] = [with_cache_control(_tool(tool, f"tools[{i}]"), tool, f"tools[{i}]")
                     for i, tool in enumerate(tools)]
    choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
    if choice is not None:
        body["tool_choice"] = choice


def _tool(tool: JSON, param: str) -> JSON:
    if tool.get("type") != "function":
        raise InvalidRequest(f"tool type '{tool.get('type')}' is not supported by provider type 'anthropic'",
                             param=f"{param}.type")
    fn = tool["function"]
    name = fn["name"]
    if not _TOOL_NAME.match(name) or name == JSON_TOOL:
        raise InvalidRequest(
            f"tool name '{name}' is not accepted by provider type 'anthropic' (names must match "
            f"^[a-zA-Z0-9_-]{{1,64}}$ and may not be '{JSON_TOOL}')",
            param=f"{param}.function.name",
            code="invalid_value",
        )
    schema = fn.get("parameters") or {}
    out: JSON = {"name": name, "input_schema": {"type": "object", **schema}}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(choice: Any, parallel: Any) -> JSON | None:
    if choice is None or choice == "auto":
        out: JSON = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
        (choice.get("function") or {}).get("name"), str
    ):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequest("tool_choice must be 'none', 'auto', 'required', a named function or "
                             "allowed_tools for provider type 'anthropic'", param="tool_choice")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    elif out == {"type": "auto"}:
        return None  # the upstream default
    return out


def _response_format(request: JSON, body: JSON, options: AnthropicOptions) -> None:
    fmt = request.get("response_format") or {}
    kind = fmt.get("type")
    if kind in (None, "text"):
        return
    spec = fmt.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else None
    mode = options.json_schema_mode
    native = kind == "json_schema" and (mode == "native" or (mode == "auto" and spec.get("strict") is True))
    if native:
        described = described_schema(spec)  # the format's description: the schema's own
        body["output_config"] = {"format": {"type": "json_schema", "schema": described or {"type": "object"}}}
        return
    # JSON mode emulated with a forced tool call whose input is the answer.
    if body.get("tools"):
        raise InvalidRequest(
            "response_format together with tools needs native structured outputs on provider type "
            "'anthropic': send a strict json_schema, or set json_schema_mode: native",
            param="response_format",
        )
    if body.get("tool_choice"):
        # A forced tool_choice without tools: the JSON tool's own choice would replace it.
        raise InvalidRequest(
            "tool_choice forces a tool call, but response_format asks for JSON, which provider type "
            "'anthropic' gives by forcing a tool of its own: leave tool_choice out, send a strict "
            "json_schema, or set json_schema_mode: native",
            param="tool_choice",
        )
    if schema is not None and schema.get("type", "object") != "object":
        raise InvalidRequest("the JSON schema must describe an object for provider type 'anthropic'",
                             param="response_format.json_schema.schema")
    tool: JSON = {"name": JSON_TOOL, "description": "Reply with the answer as this tool's input.",
                  "input_schema": {"type": "object", **(schema or {})}}
    if spec.get("description"):
        tool["description"] = spec["description"]
    body["tools"] = [tool]
    body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
