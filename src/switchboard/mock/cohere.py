"""Cohere's API v2 wire format: POST /v2/chat (JSON and SSE) and POST /v2/embed.

Follows https://docs.cohere.com/reference/chat, /reference/chat-stream and /reference/embed (the
OpenAPI spec in github.com/cohere-ai/cohere-developer-experience): request validation as strict as
the schema (unknown fields, roles, content blocks, enum values), web image URLs fetched as Cohere
fetches them, the v2 stream event sequence, usage with billed units and raw tokens, and error bodies
``{"id", "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import text as T
from switchboard.mock.common import (
    before_answer,
    in_parallel,
    json_response,
    read_json,
    request_controls,
    stream_response,
)
from switchboard.mock.controls import Controls

CHAT_FIELDS = frozenset({
    "stream", "model", "messages", "tools", "strict_tools", "documents", "citation_options",
    "response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed",
    "frequency_penalty", "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "priority",
})
EMBED_FIELDS = frozenset({
    "texts", "images", "model", "input_type", "inputs", "max_tokens", "output_dimension", "embedding_types",
    "truncate", "priority",
})
INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering", "image"})
EMBEDDING_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary", "base64"})
# A tool name Cohere takes (its error reference: A-Za-z0-9_, not starting with a digit).
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Cohere's own scaffolding around a prompt: counted in usage.tokens, not billed.
PROMPT_OVERHEAD = 5


class Invalid(Exception):
    """A request the real API would refuse with 400."""


def error(status: int, message: str, retry_after: str = "") -> Response:
    headers = {"retry-after": retry_after} if retry_after else None
    return json_response({"id": str(uuid.uuid4()), "message": message}, status, headers)


def injected(c: Controls) -> Response | None:
    if not c.status:
        return None
    retry = c.retry_after or ("1" if c.status == 429 else "")
    if c.error_code == "context_length_exceeded":
        message = ("too many tokens: size limit exceeded by 1024 tokens. Try using shorter or fewer inputs. "
                   "The limit for this model is 128000 tokens.")
    elif c.status == 429:
        message = "You are using a Trial key, which is limited to 40 API calls / minute."
    else:
        message = f"mock: injected error {c.status}"
    return error(c.status, message, retry)


def check_key(request: Request) -> Response | None:
    key = request.app.state.api_key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if key and (scheme.lower() != "bearer" or token != key):
        return error(401, "invalid api token")
    return None


# ---- request validation -----------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Invalid(f"invalid request: {message}")


def _unknown_fields(body: dict[str, Any], known: frozenset[str]) -> None:
    for key in body:
        _require(key in known, f"unknown field: parameter {key} is not a valid field")


def _image_url(url: Any, where: str) -> None:
    _require(isinstance(url, str), f"{where}.image_url.url must be a string")
    if url.startswith(("http://", "https://")):
        return
    head, _, data = url.partition(",")
    _require(head.startswith("data:image/") and head.endswith(";base64"),
             f"{where}.image_url.url must be a web URL or a base64 image data URI")
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise Invalid(f"invalid request: {where}.image_url.url is not valid base64") from None


def _blocks(content: Any, where: str, allowed: tuple[str, ...]) -> None:
    if isinstance(content, str):
        return
    _require(isinstance(content, list), f"{where}.content must be a string or an array of content blocks")
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        _require(kind in allowed, f"{where}.content[{j}].type must be one of {', '.join(allowed)}")
        if kind == "text":
            _require(isinstance(block.get("text"), str), f"{where}.content[{j}].text must be a string")
        elif kind == "image_url":
            image = block.get("image_url")
            _image_url(image.get("url") if isinstance(image, dict) else None, f"{where}.content[{j}]")


def _tool_calls(calls: Any, where: str) -> None:
    _require(isinstance(calls, list), f"{where}.tool_calls must be an array")
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        ok = isinstance(call, dict) and isinstance(call.get("id"), str) and call.get("type") == "function"
        _require(ok, f"{where}.tool_calls[{j}] needs an id and type 'function'")
        _require(isinstance(fn, dict) and isinstance(fn.get("name"), str)
                 and isinstance(fn.get("arguments", ""), str),
                 f"{where}.tool_calls[{j}].function needs a name and string arguments")


def _message(msg: Any, i: int) -> None:
    where = f"messages[{i}]"
    _require(isinstance(msg, dict), f"{where} must be an object")
    role = msg.get("role")
    _require(role in ("system", "user", "assistant", "tool"),
             f"{where}.role must be one of system, user, assistant, tool; received {role!r}")
    if role == "assistant":
        _require(msg.get("content") is not None or msg.get("tool_calls"),
                 f"{where} must have content or tool_calls")
        if msg.get("tool_calls") is not None:
            _tool_calls(msg["tool_calls"], where)
        if msg.get("content") is not None:
            _blocks(msg["content"], where, ("text", "thinking"))
        return
    _require("content" in msg, f"{where}.content is required")
    if role == "tool":
        _require(isinstance(msg.get("tool_call_id"), str), f"{where}.tool_call_id is required")
    allowed = {"user": ("text", "image_url"), "system": ("text",), "tool": ("text", "document")}[role]
    _blocks(msg["content"], where, allowed)


def _tool_results(msgs: list[Any]) -> None:
    """Every tool message answers a call of an earlier assistant message (Cohere's error reference:
    "tool call id not found in previous tool calls")."""
    calls: set[str] = set()
    for msg in msgs:
        if msg["role"] == "assistant":
            calls.update(c["id"] for c in msg.get("tool_calls") or ())
        elif msg["role"] == "tool" and msg["tool_call_id"] not in calls:
            raise Invalid("tool call id not found in previous tool calls")


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "tools must be an array")
        for j, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            _require(isinstance(tool, dict) and tool.get("type") == "function" and isinstance(fn, dict)
                     and isinstance(fn.get("name"), str) and isinstance(fn.get("parameters"), dict),
                     f"tools[{j}] must be {{type: function, function: {{name, parameters}}}}")
            name = str(fn.get("name")) if isinstance(fn, dict) else ""
            # As Cohere's error reference words it.
            _require(_TOOL_NAME.fullmatch(name) is not None,
                     "tool names can only contain certain characters (A-Za-z0-9_) and can't begin with a "
                     f"digit (provided name: '{name}').")
    _require(isinstance(body.get("strict_tools", False), bool), "strict_tools must be a boolean")
    choice = body.get("tool_choice")
    if choice is not None:
        _require(choice in ("REQUIRED", "NONE"), "tool_choice must be one of REQUIRED, NONE")
        _require(choice != "REQUIRED" or bool(tools), "tool_choice REQUIRED needs tools")


def _response_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    _require(isinstance(fmt, dict) and fmt.get("type") in ("text", "json_object"),
             "response_format.type must be one of text, json_object")
    _require(fmt["type"] == "json_object" or "json_schema" not in fmt,
             "response_format.json_schema must not be set when type is text")
    _require(not body.get("tools"), "response_format is not supported with tools")


def _sampling(body: dict[str, Any]) -> None:
    p, k, stops = body.get("p"), body.get("k"), body.get("stop_sequences")
    _require(p is None or (isinstance(p, int | float) and 0.01 <= p <= 0.99),
             "p must be between 0.01 and 0.99")
    _require(k is None or (isinstance(k, int) and 0 <= k <= 500), "k must be between 0 and 500")
    _require(stops is None or (isinstance(stops, list) and len(stops) <= 5 and all(isinstance(s, str)
                                                                                    for s in stops)),
             "stop_sequences must be a list of at most 5 strings")
    max_tokens = body.get("max_tokens")
    _require(max_tokens is None or (isinstance(max_tokens, int) and max_tokens > 0),
             "max_tokens must be a positive integer")
    _require(not isinstance(body.get("stream", False), str), "stream must be a boolean")


def _thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    _require(isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled"),
             "thinking.type must be one of enabled, disabled")
    _unknown_fields(thinking, frozenset({"type", "token_budget"}))
    budget = thinking.get("token_budget")
    _require(budget is None or (isinstance(budget, int) and not isinstance(budget, bool) and budget > 0),
             "thinking.token_budget must be a positive integer")


def validate_chat(body: Any) -> None:
    _require(isinstance(body, dict), "body must be a JSON object")
    _unknown_fields(body, CHAT_FIELDS)
    _require(isinstance(body.get("model"), str) and bool(body["model"]), "model must be specified")
    msgs = body.get("messages")
    _require(isinstance(msgs, list) and bool(msgs), "messages must be a non-empty array")
    for i, msg in enumerate(msgs):
        _message(msg, i)
    _tool_results(msgs)
    _tools(body)
    _response_format(body)
    _sampling(body)
    _thinking(body)


def _web_images(messages: list[dict[str, Any]]) -> list[str]:
    urls = []
    for msg in messages:
        if msg["role"] == "user" and isinstance(msg["content"], list):
            urls += [b["image_url"]["url"] for b in msg["content"]
                     if b.get("type") == "image_url" and b["image_url"]["url"].startswith(("http://", "https://"))]
    return urls


async def fetch_images(messages: list[dict[str, Any]]) -> None:
    """Cohere downloads web image URLs itself and refuses the request when one cannot be read."""
    urls = _web_images(messages)
    if not urls:
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for url in urls:
            try:
                async with session.get(url) as resp:
                    ok = resp.status == 200 and resp.content_type.startswith("image/")
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            _require(ok, f"could not fetch an image from {url}")


# ---- answers ----------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b["text"] for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _last_user(messages: list[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg["role"] == "user":
            images = sum(1 for b in msg["content"] if isinstance(b, dict) and b.get("type") == "image_url") \
                if isinstance(msg["content"], list) else 0
            return _text(msg["content"]) + (f" [images: {images}]" if images else "")
    return ""


def _tool_to_call(body: dict[str, Any], c: Controls) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    last = body["messages"][-1]
    if not tools or body.get("tool_choice") == "NONE":
        return None
    if last["role"] == "tool" and not c.tool_call and body.get("tool_choice") != "REQUIRED":
        return None
    for tool in tools:
        if c.tool_call in ("", tool["function"]["name"]):
            return dict(tool["function"])
    return dict(tools[0]["function"])


def _answer(body: dict[str, Any], c: Controls) -> tuple[str, str]:
    """The reply text and Cohere's finish_reason."""
    messages = body["messages"]
    if messages[-1]["role"] == "tool":
        text = c.reply or f"The tool returned: {_text(messages[-1]['content'])[:200]}"
    else:
        text = T.reply_text(_last_user(messages), c.reply)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        schema = fmt.get("json_schema")
        text = orjson.dumps(T.arguments_for(schema) if schema else {"answer": text}).decode()
    for stop in body.get("stop_sequences") or []:
        if stop and stop in text:
            return text[: text.index(stop)], "STOP_SEQUENCE"
    text, cut = T.truncate(text, body.get("max_tokens"))
    return text, "MAX_TOKENS" if cut else "COMPLETE"


def _usage(body: dict[str, Any], output: int) -> dict[str, Any]:
    prompt = T.count_tokens(body["messages"])
    return {"billed_units": {"input_tokens": prompt, "output_tokens": output},
            "tokens": {"input_tokens": prompt + PROMPT_OVERHEAD, "output_tokens": output}, "cached_tokens": 0}


def _call(tool: dict[str, Any]) -> dict[str, Any]:
    args = orjson.dumps(T.arguments_for(tool.get("parameters"))).decode()
    return {"id": f"{tool['name']}_{uuid.uuid4().hex[:12]}", "type": "function",
            "function": {"name": tool["name"], "arguments": args}}


def _plan(tool: dict[str, Any]) -> str:
    return f"I will use {tool['name']} to answer."


def _logprobs(text: str) -> list[dict[str, Any]]:
    return [{"text": w, "token_ids": [i], "logprobs": [-0.01]} for i, w in enumerate(T.words(text))]


async def chat(request: Request) -> Response:
    body = await read_json(request)
    if (problem := check_key(request)) is not None:
        return problem
    try:
        validate_chat(body)
        await fetch_images(body["messages"])
    except Invalid as exc:
        return error(400, str(exc))
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    tool = _tool_to_call(body, c)
    tools = in_parallel(tool, [t["function"] for t in body.get("tools") or []], c) if tool else []
    if body.get("stream"):
        return _chat_stream(body, c, tools)
    reply: dict[str, Any] = {"id": str(uuid.uuid4())}
    if tool:
        calls = [_call(t) for t in tools]
        reply["message"] = {"role": "assistant", "tool_plan": _plan(tool), "tool_calls": calls}
        reply["finish_reason"] = "TOOL_CALL"
        output = sum(T.count_tokens(call["function"]["arguments"]) for call in calls)
    else:
        text, finish = _answer(body, c)
        content = [{"type": "text", "text": text}]
        if (body.get("thinking") or {}).get("type") == "enabled":  # reasoning models think first
            content.insert(0, {"type": "thinking", "thinking": f"Thinking about: {text[:80]}"})
        reply["message"] = {"role": "assistant", "content": content}
        reply["finish_reason"], output = finish, len(T.words(text))
        if body.get("logprobs"):
            reply["logprobs"] = _logprobs(text)
    reply["usage"] = _usage(body, output)
    return json_response(reply)


def _event(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _tool_events(tools: list[dict[str, Any]]) -> tuple[list[bytes], int]:
    events = [_event({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": w}}})
              for w in T.words(_plan(tools[0]))]
    output = 0
    for i, tool in enumerate(tools):
        call = _call(tool)
        args = call["function"]["arguments"]
        start = {**call, "function": {"name": tool["name"], "arguments": ""}}
        events.append(_event({"type": "tool-call-start", "index": i,
                              "delta": {"message": {"tool_calls": start}}}))
        fragments = (args[k:k + 8] for k in range(0, len(args), 8))
        events.extend(_event({"type": "tool-call-delta", "index": i,
                              "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}})
                      for piece in fragments)
        events.append(_event({"type": "tool-call-end", "index": i}))
        output += T.count_tokens(args)
    return events, output


def _text_events(text: str, with_logprobs: bool) -> list[bytes]:
    events = [_event({"type": "content-start", "index": 0,
                      "delta": {"message": {"content": {"type": "text", "text": ""}}}})]
    for i, word in enumerate(T.words(text)):
        delta: dict[str, Any] = {"type": "content-delta", "index": 0,
                                 "delta": {"message": {"content": {"text": word}}}}
        if with_logprobs:
            delta["logprobs"] = {"text": word, "token_ids": [i], "logprobs": [-0.01]}
        events.append(_event(delta))
    events.append(_event({"type": "content-end", "index": 0}))
    return events


def _chat_stream(body: dict[str, Any], c: Controls, tools: list[dict[str, Any]]) -> Response:
    rid = str(uuid.uuid4())
    events = [_event({"type": "message-start", "id": rid, "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})]
    if tools:
        tool_events, output = _tool_events(tools)
        events.extend(tool_events)
        finish = "TOOL_CALL"
    else:
        text, finish = _answer(body, c)
        events.extend(_text_events(text, bool(body.get("logprobs"))))
        output = len(T.words(text))
    events.append(_event({"type": "message-end", "id": rid,
                          "delta": {"finish_reason": finish, "usage": _usage(body, output)}}))

    def fail() -> bytes:
        # A generation that fails after it started ends with finish_reason ERROR and the error text.
        return _event({"type": "message-end", "id": rid,
                       "delta": {"finish_reason": "ERROR", "error": "mock: injected mid-stream failure"}})

    return stream_response(c, events, fail)


# ---- embed ------------------------------------------------------------------------------------


def validate_embed(body: Any) -> None:
    _require(isinstance(body, dict), "body must be a JSON object")
    _unknown_fields(body, EMBED_FIELDS)
    _require(isinstance(body.get("model"), str) and bool(body["model"]), "model must be specified")
    _require(body.get("input_type") in INPUT_TYPES,
             f"input_type must be one of {', '.join(sorted(INPUT_TYPES))}")
    texts = body.get("texts")
    ok = isinstance(texts, list) and 1 <= len(texts) <= 96 and all(isinstance(t, str) and t for t in texts)
    _require(ok, "texts must be an array of 1 to 96 non-empty strings")
    types = body.get("embedding_types")
    _require(isinstance(types, list) and bool(types) and all(t in EMBEDDING_TYPES for t in types),
             f"embedding_types must be a non-empty subset of {', '.join(sorted(EMBEDDING_TYPES))}")
    dims = body.get("output_dimension")
    _require(dims is None or dims in (256, 512, 1024, 1536),
             "output_dimension must be one of 256, 512, 1024, 1536")


def _typed(vector: list[float], kind: str) -> Any:
    return T.embedding_b64(vector) if kind == "base64" else T.typed_embedding(vector, kind)


async def embed(request: Request) -> Response:
    body = await read_json(request)
    if (problem := check_key(request)) is not None:
        return problem
    try:
        validate_embed(body)
    except Invalid as exc:
        return error(400, str(exc))
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    dims = body.get("output_dimension") or 8
    vectors = [T.embedding(t, dims) for t in body["texts"]]
    tokens = sum(T.count_tokens(t) for t in body["texts"])
    embeddings = {kind: [_typed(v, kind) for v in vectors] for kind in body["embedding_types"]}
    return json_response({"id": str(uuid.uuid4()), "texts": body["texts"], "embeddings": embeddings,
                          "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                          "response_type": "embeddings_by_type"})


def routes() -> list[Route]:
    return [
        Route("/v2/chat", chat, methods=["POST"]),
        Route("/v2/embed", embed, methods=["POST"]),
    ]
