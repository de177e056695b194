"""Mistral AI (La Plateforme): an OpenAI-like chat API with strict validation and its own names.

References: https://docs.mistral.ai/api/ and the request/response models of the official SDK,
mistralai/client-python ``src/mistralai/client/models`` (ChatCompletionRequest, AssistantMessage,
ToolMessage, ToolCall, FunctionCall, ContentChunk, UsageInfo, EmbeddingRequest,
ChatCompletionChoice finish reasons). ``api_base`` is ``https://api.mistral.ai/v1``.

Translation (canonical -> Mistral), beyond the identical fields:

- ``seed`` -> ``random_seed``; ``max_completion_tokens`` -> ``max_tokens``;
  ``tool_choice: "required"`` -> ``"any"``, ``allowed_tools`` -> its mode (``any`` / ``auto``) with
  only the allowed tools sent, other tool_choice objects (``custom``) a 400; ``stream_options`` is
  not sent (Mistral always puts usage on the last stream chunk); the ``safe_prompt`` option is
  added when set; ``prediction`` content given as text parts is sent as their text (a string).
- The API rejects unknown fields (422 ``extra_forbidden``), so messages are rebuilt with the
  fields Mistral has: ``name`` on system/user/assistant messages, assistant ``audio`` and
  ``function_call`` are refused by the capability table first (they mean something Mistral
  cannot be told), the assistant ``refusal`` key is sent as the text of a message without
  content and left out otherwise (ignored next to content, as OpenAI does; a refusal content
  part is sent as text), system and assistant content parts other than text and refusal
  (images, audio, files: Mistral takes text chunks only there) are a 400 naming the part,
  ``developer`` becomes ``system``, tool messages get
  the function ``name`` looked up from the assistant's call, and functions without
  ``parameters`` get an empty object schema (required by Mistral).
- Tool call ids must be exactly 9 characters of ``[A-Za-z0-9]``. Other ids (``call_...`` from
  OpenAI or another provider) are replaced by a 9-character digest of the id, so a call and its
  result keep matching within and across requests; Mistral's own ids pass through unchanged.
- ``user`` (no Mistral field) is accepted and not sent: an end-user id does not change the output.
- ``safety_settings`` (Gemini's safety thresholds) are accepted and not sent: Mistral has none.
- Top-level fields are OpenAI's, the canonical extensions or Mistral's own ``safe_prompt``,
  ``random_seed``, ``prompt_mode`` and ``guardrails`` (passed as written); any other is a 400
  ``unknown_parameter`` naming it.
- What Mistral lacks (``safety_identifier``, logprobs, logit_bias, ``top_k``,
  ``thinking``, ...) is refused, or dropped with ``drop_params``, from the capability table
  (``capabilities/mistral.py``). ``cache_control`` breakpoints are removed (Mistral has none);
  ``image_url.detail`` is kept (``ImageURL.detail``).
- Canonical extensions in the history: assistant ``reasoning_content`` / ``thinking_blocks`` are
  removed (another provider's reasoning; Mistral takes none back), a tool message with
  ``is_error: true`` gets its content prefixed "Error: ". Plain-text ``document`` parts (user and
  tool messages) become text (title first); binary ones (PDF) are a 400.

Back (Mistral -> canonical): content given as chunks is joined to text, thinking chunks become
``reasoning_content``, tool call arguments given as objects are JSON-encoded, tool call deltas get
OpenAI's per-choice indices, ``model_length`` -> ``length`` and ``error`` raises. An input the
request's ``guardrails`` blocked (403, ``type: guardrail_violation``) is a 400 ``content_filter``
naming the violated categories; any other 401/403 is the gateway's credentials refused.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

from switchboard import media_urls
from switchboard.config.schema import ProviderConfig
from switchboard.errors import GatewayError, InvalidRequest, UpstreamBadGateway
from switchboard.providers import allowed_tools, capabilities, documents, tool_names
from switchboard.providers.base import JSON, ProviderAdapter
from switchboard.providers.capabilities.rows import REQUEST_ROWS
from switchboard.providers.counts import position
from switchboard.providers.effort import EffortRefused
from switchboard.providers.embedding_inputs import text_inputs
from switchboard.providers.errors import invalid_body, loads_object, text_message
from switchboard.providers.openai_compatible import (
    NormalisingStreamDecoder,
    error_from_fields,
    normalise_usage,
)
from switchboard.providers.params import CHAT_PARAMS, GATEWAY_PARAMS, THOUGHTS
from switchboard.providers.spec import ProviderOptions, ProviderSpec
from switchboard.providers.target import Target
from switchboard.providers.turns import assistant_content, check_results
from switchboard.upstream.auth import StaticHeaderAuth, UpstreamAuth
from switchboard.upstream.request import UpstreamRequest

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}

# Not sent: stream_options (usage always streamed) and the gateway's own field.
# Not sent: stream usage always comes; drop_params and THOUGHTS are the gateway's; ``user`` has no Mistral
# field (accepted, per the capability table: an end-user id does not change the output).
# user: no end-user field (capability table); thinking: only {"type": "disabled"} gets this far
# (anything else is refused), which is what Mistral does without it.
# safety_settings: Gemini's safety thresholds; Mistral has none per request (capability table).
_DROPPED = ("stream_options", "drop_params", THOUGHTS, "user", "thinking", "safety_settings")

# The top-level fields a request may carry here: OpenAI's (providers/params.py), the canonical
# extensions of the capability table, the gateway's own, and Mistral's own fields passed on as
# written. Anything else is a 400 naming it rather than sent on unread: Mistral refuses unknown
# fields anyway (422), and a field the gateway does not know is one it has not judged.
# prompt_mode ("reasoning") asks for the reasoning system prompt of Mistral's reasoning models;
# guardrails (a list of {block_on_error, moderation_llm_v1, moderation_llm_v2}) has Mistral
# moderate the input and refuse it (see mistral_error).
_OWN_FIELDS = frozenset({"safe_prompt", "random_seed", "prompt_mode", "guardrails"})
_KNOWN = CHAT_PARAMS | GATEWAY_PARAMS | {row.param for row in REQUEST_ROWS} | _OWN_FIELDS

_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ALPHABET = string.ascii_letters + string.digits
_FINISH = {"stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls"}


class Options(ProviderOptions):
    # Mistral's safety system prompt on every request (a request's own safe_prompt wins).
    safe_prompt: bool = False


# --------------------------------------------------------------------------- request


# Mistral's reasoning_effort values (ReasoningEffort in its API reference and SDK; adjustable
# reasoning of mistral-small-latest): "high" returns a thinking chunk, "none" thinks minimally.
# OpenAI's others (minimal, low, medium, xhigh) are a 400 naming the field here, not Mistral's
# 422 after a round trip, nor a guess at which of the two the caller meant.
_EFFORTS = ("none", "high")


def _effort(body: JSON) -> None:
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:  # a tuple: an unhashable value compares too
        raise EffortRefused(effort, "is not one provider type 'mistral' takes", _EFFORTS)


def _unsupported_value(what: str, param: str, code: str | None = None) -> InvalidRequest:
    return InvalidRequest(f"{what} is not supported by provider type 'mistral'", param=param, code=code)


def tool_call_id(value: str) -> str:
    """A Mistral-valid tool call id: unchanged when valid, else a stable 9-character digest."""
    if _TOOL_ID.fullmatch(value):
        return value
    number = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, rest = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[rest])
    return "".join(chars)


def _joined_text(content: Any, param: str) -> Any:
    """Text parts joined into one string: Mistral's system and assistant messages take text chunks
    only (and thinking, which has no canonical part here). A refusal part (an earlier reply's
    refusal, in an assistant message) is text the model wrote. Any other part (an image, audio, a
    file) is a 400 naming it rather than left out: the model would answer without it."""
    if not isinstance(content, list):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise _unsupported_value(f"content part type {kind!r} in a system or assistant message",
                                     f"{param}[{j}].type")
        texts.append(str(part.get(kind, "")))
    return "".join(texts)


def _user_part(part: Any, param: str) -> JSON:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict):  # Mistral's shorthand: the URL itself
            url = media_urls.canonical(image, f"{param}.image_url")
            return {"type": "image_url", "image_url": {"url": url}}
        # data: and http(s) URLs alike, in the form Mistral takes
        out: JSON = {"url": media_urls.canonical(image.get("url"), f"{param}.image_url.url")}
        if image.get("detail") in ("auto", "low", "high"):
            out["detail"] = image["detail"]
        return {"type": "image_url", "image_url": out}
    if kind == "document":
        return {"type": "text", "text": documents.text_of(part, param, "mistral")}
    raise _unsupported_value(f"content part type {kind!r}", f"{param}.type")


def _tool_text(content: Any, param: str) -> Any:
    """A tool result as text: text parts and plain-text documents (Mistral takes text only here)."""
    if not isinstance(content, list):
        return content
    texts = []
    for j, part in enumerate(content):
        if documents.is_document(part):
            texts.append(documents.text_of(part, f"{param}[{j}]", "mistral"))
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(part.get("text", ""))
        else:
            kind = part.get("type") if isinstance(part, dict) else None
            raise _unsupported_value(f"content part type {kind!r} in a tool result", f"{param}[{j}].type")
    return "".join(texts)


def _user_content(content: Any, param: str) -> Any:
    if not isinstance(content, list):
        return content
    return [_user_part(p, f"{param}[{j}]") for j, p in enumerate(content)]


def _tool_calls(calls: list[Any]) -> list[JSON]:
    out = []
    for call in calls:
        fn = call.get("function") or {}
        out.append({
            # The id alone, as for the tool message's tool_call_id: an empty one still pairs.
            "id": tool_call_id(str(call.get("id") or "")),
            "type": "function",
            "function": {"name": fn.get("name", ""), "arguments": fn.get("arguments") or "{}"},
        })
    return out


def _message(msg: JSON, i: int, names: Mapping[str, str]) -> JSON:
    role = msg.get("role")
    if role in ("system", "developer"):
        return {"role": "system", "content": _joined_text(msg.get("content"), f"messages[{i}].content")}
    if role == "user":
        return {"role": "user", "content": _user_content(msg.get("content"), f"messages[{i}].content")}
    if role == "assistant":
        out: JSON = {"role": "assistant"}
        content = _joined_text(assistant_content(msg), f"messages[{i}].content")
        if content or not msg.get("tool_calls"):
            out["content"] = content or ""
        if msg.get("tool_calls"):
            out["tool_calls"] = _tool_calls(msg["tool_calls"])
        return out
    if role == "tool":
        call_id = str(msg.get("tool_call_id", ""))
        text = _tool_text(msg.get("content"), f"messages[{i}].content")
        # Mistral has no error flag on a tool result: the canonical is_error becomes a prefix.
        out = {"role": "tool", "content": f"Error: {text or ''}" if msg.get("is_error") is True else text}
        out["tool_call_id"] = tool_call_id(call_id)
        if call_id in names:
            out["name"] = names[call_id]
        return out
    raise _unsupported_value(f"messages with role {role!r}", f"messages[{i}].role")


def _call_names(messages: list[JSON]) -> dict[str, str]:
    names = {}
    for msg in messages:
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict) and call.get("id"):
                names[str(call["id"])] = (call.get("function") or {}).get("name", "")
    return names


def _messages(messages: list[JSON]) -> list[JSON]:
    """The conversation in Mistral's terms. A tool result answering no call of an earlier
    assistant message is a 400 naming it: La Plateforme refuses such a history ("Unexpected tool
    call id ... in tool results", invalid_request_message_order), and from us the caller learns
    which message it is."""
    check_results(messages, "mistral")
    names = _call_names(messages)
    return [_message(msg, i, names) for i, msg in enumerate(messages)]


def _tools(tools: list[Any]) -> list[JSON]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _unsupported_value(f"tool type {tool.get('type')!r}", f"tools[{i}].type")
        fn = dict(tool["function"])
        fn.setdefault("parameters", {"type": "object", "properties": {}})
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(body: JSON) -> None:
    """OpenAI's tool_choice in Mistral's terms: 'required' is 'any' (``allowed_tools``, which
    Mistral has no form of, arrives narrowed to its tools and mode: providers/allowed_tools.py); a
    named function is Mistral's own form. Any other object (a custom tool's) is a 400 naming it:
    Mistral would refuse it, and leaving it out would let the model choose."""
    choice = body.get("tool_choice")
    if choice == "required":
        body["tool_choice"] = "any"
    if isinstance(choice, dict) and choice.get("type") != "function":
        raise _unsupported_value(f"tool_choice type {str(choice.get('type'))[:64]!r}", "tool_choice.type")


def _prediction(body: JSON) -> None:
    """OpenAI's predicted output may be text parts; Mistral's ``Prediction.content`` is a string
    (422 otherwise): the parts' text joined, which is what the prediction says."""
    prediction = body.get("prediction")
    if not (isinstance(prediction, dict) and isinstance(prediction.get("content"), list)):
        return
    texts = []
    for j, part in enumerate(prediction["content"]):
        text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
        if not isinstance(text, str):
            raise InvalidRequest("prediction content parts must be text parts",
                                 param=f"prediction.content[{j}]", code="invalid_value")
        texts.append(text)
    body["prediction"] = {**prediction, "content": "".join(texts)}


def _unknown_fields(request: JSON, target: Target) -> None:
    for name in request:
        if name not in _KNOWN:
            shown = str(name)[:64]
            raise InvalidRequest(
                f"Unknown parameter: '{shown}' is not a field provider type 'mistral' takes (model "
                f"'{target.name}'); send the request without it",
                param=shown,
                code="unknown_parameter",
            )


def chat_body(request: JSON, target: Target, options: Options) -> JSON:
    _unknown_fields(request, target)
    body = dict(allowed_tools.narrowed(capabilities.check(request, target)))
    for name in _DROPPED:
        body.pop(name, None)
    body["model"] = target.model
    messages = body.get("messages") or []
    body["messages"] = _messages(messages)
    if "seed" in body:
        seed = body.pop("seed")
        body.setdefault("random_seed", seed)
    if "max_completion_tokens" in body:
        limit = body.pop("max_completion_tokens")
        if limit is not None:
            body["max_tokens"] = limit
    if body.get("tools"):
        tool_names.check(body["tools"], tool_names.MISTRAL, target)
        body["tools"] = _tools(body["tools"])
    _tool_choice(body)
    _prediction(body)
    _effort(body)
    if options.safe_prompt:
        body.setdefault("safe_prompt", True)
    return body


# --------------------------------------------------------------------------- response


def _content_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text of its chunks. Text of the wrong
    JSON type (a number, an object) is read as absent, never as its Python text."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # chunks: text, thinking (see _reasoning), references
        texts = (c.get("text") for c in content if isinstance(c, dict) and c.get("type") == "text")
        return "".join(t for t in texts if isinstance(t, str))
    return None


def _reasoning(content: Any) -> str:
    """The text of the thinking chunks (``{"type": "thinking", "thinking": [text chunks]}``)."""
    if not isinstance(content, list):
        return ""
    out = []
    for chunk in content:
        if isinstance(chunk, dict) and chunk.get("type") == "thinking":
            inner = chunk.get("thinking")
            out.append(_content_text(inner) if isinstance(inner, list) else _string(inner))
    return "".join(t or "" for t in out)


def _arguments(value: Any) -> str:
    """A call's arguments as text: an object (or other JSON value) encoded; null read as absent
    ("", as a call without arguments), not encoded as the text "null"."""
    if isinstance(value, str):
        return value
    return "" if value is None else orjson.dumps(value).decode()


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str:
    """A string member (a function's name, a thinking text); "" for one of the wrong type."""
    return value if isinstance(value, str) else ""


def _canonical_call(call: JSON) -> JSON:
    fn = _object(call.get("function"))
    return {"id": call.get("id"), "type": "function",
            "function": {"name": _string(fn.get("name")), "arguments": _arguments(fn.get("arguments", ""))}}


def finish_reason(reason: Any, target: Target) -> str | None:
    """Mistral's finish reason in OpenAI's words; an unknown one as it came. One that is not a
    string (a number, a list) is read as absent, as any member of the wrong JSON type is."""
    if reason.__class__ is not str:
        return None
    if reason == "error":
        raise UpstreamBadGateway(f"provider '{target.provider}' stopped generating with an error")
    return _FINISH.get(reason, reason)



def _choice(choice: JSON, target: Target) -> JSON:
    msg = _object(choice.get("message"))
    message: JSON = {"role": "assistant", "content": _content_text(msg.get("content"))}
    if reasoning := _reasoning(msg.get("content")):
        message["reasoning_content"] = reasoning
    if isinstance(calls := msg.get("tool_calls"), list) and calls:
        message["tool_calls"] = [_canonical_call(c) for c in calls if isinstance(c, dict)]
        message["content"] = message["content"] or None
    # A whole number names its choice (1.0 included); any other index is read as absent: 0.
    return {"index": position(choice.get("index")) or 0, "message": message, "logprobs": None,
            "finish_reason": finish_reason(choice.get("finish_reason"), target)}


def chat_completion(obj: JSON, target: Target) -> JSON:
    if not isinstance(obj.get("choices"), list):
        raise invalid_body(target)
    out: JSON = {
        "id": obj.get("id", ""),
        "object": "chat.completion",
        "created": obj.get("created", 0),
        "model": obj.get("model", target.model),
        "choices": [_choice(c, target) for c in obj["choices"] if isinstance(c, dict)],
    }
    usage = normalise_usage(obj.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


class MistralStreamDecoder(NormalisingStreamDecoder):
    """Mistral's SSE: OpenAI-like chunks, usage on the last one, whole tool calls per delta."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        # Per choice: tool call id -> canonical index.
        self._calls: dict[int, dict[str, int]] = {}

    def stream_error(self, obj: JSON) -> str | None:
        if str(obj.get("object", "")).lower() == "error":
            return error_message(obj.get("message")) or "unknown error"
        return super().stream_error(obj)

    def translate(self, chunk: JSON) -> JSON:
        chunk["object"] = "chat.completion.chunk"
        chunk["choices"] = [self._choice(c) for c in chunk["choices"] if isinstance(c, dict)]
        return chunk

    def _choice(self, choice: JSON) -> JSON:
        index = choice.get("index")
        if index.__class__ is not int or index < 0:  # the usual index costs no call
            index = position(index) or 0  # 1.0 is choice 1; of the wrong type: absent, 0
        delta = choice.get("delta")
        delta = dict(delta) if isinstance(delta, dict) else {}
        if "content" in delta:
            if reasoning := _reasoning(delta["content"]):
                delta["reasoning_content"] = reasoning
            delta["content"] = _content_text(delta["content"])
        if not isinstance(delta.get("tool_calls"), list | None):
            del delta["tool_calls"]
        if delta.get("tool_calls"):
            calls = [c for c in delta["tool_calls"] if isinstance(c, dict)]
            delta["tool_calls"] = [self._call_delta(index, c) for c in calls]
        delta.pop("tool_call_id", None)
        delta.pop("index", None)
        reason = finish_reason(choice.get("finish_reason"), self._target)
        if reason:
            self._finished = True
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

    def _call_delta(self, choice: int, call: JSON) -> JSON:
        seen = self._calls.setdefault(choice, {})
        call_id = call.get("id")
        fn = _object(call.get("function"))
        arguments = _arguments(fn.get("arguments", ""))
        # The SDK's model defaults a missing id to the string "null".
        if isinstance(call_id, str) and call_id not in ("", "null") and call_id not in seen:
            seen[call_id] = len(seen)
            function = {"name": _string(fn.get("name")), "arguments": arguments}
            return {"index": seen[call_id], "id": call_id, "type": "function", "function": function}
        # A continuation of a call already started (Mistral sends whole calls; be tolerant).
        index = seen.get(call_id, len(seen) - 1) if isinstance(call_id, str) else len(seen) - 1
        return {"index": max(index, 0), "function": {"arguments": arguments}}


# --------------------------------------------------------------------------- embeddings


def embeddings_body(request: JSON, target: Target) -> JSON:
    """``dimensions`` -> ``output_dimension``; ``user`` is dropped; token arrays are refused;
    Mistral's own ``output_dtype`` is passed as written (Mistral judges its value)."""
    text_inputs(request, target)  # text only: token arrays are refused
    out: JSON = {"model": target.model, "input": request.get("input")}
    if request.get("dimensions") is not None:
        out["output_dimension"] = request["dimensions"]
    dtype = request.get("output_dtype")
    if dtype is not None:
        out["output_dtype"] = dtype
    # base64 from Mistral is its own packing of the type; OpenAI's is float32. Compressed vectors
    # are asked for as numbers, then packed by the gateway as every vector is (embedding_encoding.py).
    if request.get("encoding_format") is not None and dtype in (None, "float"):
        out["encoding_format"] = request["encoding_format"]
    return out


def embeddings_result(obj: JSON, target: Target) -> JSON:
    data = obj.get("data")
    if not isinstance(data, list):
        raise invalid_body(target)
    items = [{"object": "embedding", "index": d.get("index", i), "embedding": d.get("embedding")}
             for i, d in enumerate(data) if isinstance(d, dict)]
    raw = obj.get("usage")
    usage: JSON = raw if isinstance(raw, dict) else {}
    prompt = usage.get("prompt_tokens") or 0
    return {"object": "list", "data": items, "model": obj.get("model", target.model),
            "usage": {"prompt_tokens": prompt, "total_tokens": usage.get("total_tokens") or prompt}}


# --------------------------------------------------------------------------- errors


def error_message(value: Any) -> str | None:
    """Mistral's ``message``: a string, a JSON string, or pydantic's ``{"detail": [...]}``."""
    if isinstance(value, str) and value.startswith(("{", "[")):
        parsed = loads_object(value.encode())
        value = parsed if parsed is not None else value
    if isinstance(value, dict):
        value = value.get("detail", value.get("message"))
    if isinstance(value, list):
        return "; ".join(_detail_line(d) for d in value) or None
    return value if isinstance(value, str) and value else None


def _detail_line(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    loc = [str(p) for p in detail.get("loc") or () if p != "body"]
    where = ".".join(loc)
    return f"{where}: {detail.get('msg', '')}" if where else str(detail.get("msg", ""))


def _param(obj: JSON) -> str | None:
    if isinstance(obj.get("param"), str) and obj["param"]:
        return str(obj["param"])
    details = obj.get("detail")
    message = obj.get("message")
    if isinstance(message, dict):
        details = message.get("detail")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        loc = [str(p) for p in details[0].get("loc") or () if p != "body"]
        return ".".join(loc) or None
    return None


# The error type of an input a request's guardrails refused: a 403, which is not a credential
# refused (the request's content is), answered as the caller's 400 content filter (Azure's code).
GUARDRAIL_VIOLATION = "guardrail_violation"
_MAX_NAMED = 20


def _violated(obj: JSON) -> list[str]:
    """The categories a guardrail block names as violated (``guardrails[i].<moderator>
    .categories.<name>.violated``), in order, once each; a few, the upstream's body being
    anything."""
    entries = obj.get("guardrails")
    names: list[str] = []
    for entry in entries if isinstance(entries, list) else ():
        for moderator in entry.values() if isinstance(entry, dict) else ():
            categories = moderator.get("categories") if isinstance(moderator, dict) else None
            for name, verdict in categories.items() if isinstance(categories, dict) else ():
                shown = str(name)[:64]
                if isinstance(verdict, dict) and verdict.get("violated") is True and shown not in names:
                    names.append(shown)
    return names[:_MAX_NAMED]


def _guardrail_block(headers: Mapping[str, str], obj: JSON, target: Target) -> GatewayError:
    message = error_message(obj.get("message")) or "Request blocked by guardrail policy"
    if violated := _violated(obj):
        message = f"{message} (violated: {', '.join(violated)})"
    return error_from_fields(400, headers, target, message, type="invalid_request_error",
                             code="content_filter")


def mistral_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
    found = loads_object(body)
    obj = found or {}
    if obj.get("type") == GUARDRAIL_VIOLATION and 400 <= status < 500:
        return _guardrail_block(headers, obj, target)
    message = error_message(obj.get("message")) or error_message(obj.get("detail"))
    if found is None:  # a page in plain text or HTML (a proxy's in front of the API): its text
        message = text_message(body)
    code = obj.get("code")
    return error_from_fields(
        status,
        headers,
        target,
        message,
        type=obj.get("type") if isinstance(obj.get("type"), str) else None,
        code=code if isinstance(code, str) and not code.isdigit() else None,  # internal numbers ("3280")
        param=_param(obj),
    )


# --------------------------------------------------------------------------- adapter


def _options(target: Target) -> Options:
    return target.options if isinstance(target.options, Options) else Options()


def _post(path: str, body: JSON, target: Target, stream: bool) -> UpstreamRequest:
    headers = dict(_SSE_HEADERS if stream else _JSON_HEADERS)
    return UpstreamRequest("POST", target.api_base + path, orjson.dumps(body), headers, stream)


class Adapter(ProviderAdapter):
    type = "mistral"

    def chat_request(self, request: JSON, target: Target) -> UpstreamRequest:
        body = chat_body(request, target, _options(target))
        return _post("/chat/completions", body, target, bool(body.get("stream")))

    def chat_response(self, body: bytes, target: Target) -> JSON:
        return chat_completion(loads_object(body) or {}, target)

    def chat_stream(self, request: JSON, target: Target) -> MistralStreamDecoder:
        return MistralStreamDecoder(target)

    def embeddings_request(self, request: JSON, target: Target) -> UpstreamRequest:
        return _post("/embeddings", embeddings_body(request, target), target, False)

    def embeddings_response(self, body: bytes, target: Target) -> JSON:
        return embeddings_result(loads_object(body) or {}, target)

    def error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        return mistral_error(status, headers, body, target)


def _auth(config: ProviderConfig, options: BaseModel) -> UpstreamAuth:
    return StaticHeaderAuth.bearer(config.api_key.get_secret_value() if config.api_key else None)


SPEC = ProviderSpec(
    type="mistral",
    adapter=Adapter(),
    options=Options,
    default_api_base="https://api.mistral.ai/v1",
    make_auth=_auth,
)
