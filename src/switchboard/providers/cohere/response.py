"""Cohere API v2 responses and errors -> the canonical (OpenAI-shaped) form.

Reference: https://docs.cohere.com/reference/chat (``ChatResponseV2``, ``AssistantMessageResponse``,
``ChatFinishReason``, ``Usage``, ``LogprobItem``), https://docs.cohere.com/reference/embed
(``EmbedByTypeResponse``, ``ApiMeta``) and the error bodies ``{"id", "message"}`` listed under
``components.responses`` of the OpenAPI spec (cohere-ai/cohere-developer-experience).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from switchboard.errors import GatewayError, UpstreamBadGateway, UpstreamTimeout
from switchboard.providers.base import JSON
from switchboard.providers.cohere.request import EMBEDDING_TYPES
from switchboard.providers.counts import count
from switchboard.providers.errors import invalid_body, loads_object, text_message, upstream_error
from switchboard.providers.target import Target

# ERROR and TIMEOUT are failures, raised by finish_error() instead of being mapped.
FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def obj_at(parent: Any, key: str) -> JSON:
    """``parent[key]`` when both are JSON objects, else an empty dict (bodies are untrusted)."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def str_at(parent: JSON, key: str) -> str:
    value = parent.get(key)
    return value if isinstance(value, str) else ""


def _count(*values: Any) -> int | None:
    """The first numeric value (Cohere sends token counts as JSON numbers, sometimes ``18.0``),
    as a count (providers/counts.py: whole, not negative, bounded)."""
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return count(v)
    return None


def usage(raw: Any) -> JSON | None:
    """``Usage`` -> OpenAI usage. Billed units come first: they are what the caller pays for
    (``tokens`` also counts Cohere's own prompt scaffolding); ``tokens`` is the fallback."""
    if not isinstance(raw, dict):
        return None
    billed, tokens = obj_at(raw, "billed_units"), obj_at(raw, "tokens")
    prompt = _count(billed.get("input_tokens"), tokens.get("input_tokens"))
    completion = _count(billed.get("output_tokens"), tokens.get("output_tokens"))
    if prompt is None and completion is None:
        return None
    prompt, completion = prompt or 0, completion or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _count(raw.get("cached_tokens")) or 0},
    }


def finish_error(reason: Any, message: Any, target: Target) -> GatewayError | None:
    """The error for a failed generation (finish_reason ERROR/TIMEOUT or an ``error`` field)."""
    where = f"provider '{target.provider}'"
    detail = message if isinstance(message, str) and message else None
    if reason == "TIMEOUT":
        return UpstreamTimeout(f"{where} stopped the generation at its time limit" + (f": {detail}" if detail
                                                                                      else ""))
    if reason == "ERROR" or detail:
        return UpstreamBadGateway(f"{where} failed during generation: {detail or 'finish_reason ERROR'}")
    return None


def finish_reason(reason: Any) -> str:
    return FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def mark_stop_sequence(choice: JSON, reason: Any) -> None:
    """STOP_SEQUENCE: a stop sequence ended the reply, but Cohere does not say which, so null
    (named from the request when it sent one only: providers/stop_sequences.py)."""
    if reason == "STOP_SEQUENCE":
        choice["stop_sequence"] = None


def logprob_entries(items: Any) -> list[JSON]:
    """``LogprobItem`` (a text chunk with one logprob per token) -> OpenAI logprob entries; a chunk's
    logprob is the sum over its tokens. Cohere reports no alternatives, so ``top_logprobs`` is empty."""
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return []
    entries = []
    for item in items:
        if not isinstance(item, dict):
            continue
        text = str_at(item, "text")
        values = [v for v in item.get("logprobs") or [] if isinstance(v, int | float)]
        entries.append({"token": text, "logprob": float(sum(values)), "bytes": list(text.encode()),
                        "top_logprobs": []})
    return entries


def _tool_calls(raw: Any) -> list[JSON]:
    calls = []
    for call in raw if isinstance(raw, list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        args = fn.get("arguments")
        args = args if isinstance(args, str) and args else "{}"
        calls.append({"id": call.get("id") or "", "type": "function",
                      "function": {"name": fn["name"], "arguments": args}})
    return calls


def _message(raw: JSON) -> JSON:
    # Text blocks form the content; thinking blocks the canonical reasoning_content.
    content = raw.get("content")
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    text = "".join(str_at(b, "text") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    thinking = "".join(str_at(b, "thinking") for b in blocks
                       if isinstance(b, dict) and b.get("type") == "thinking")
    calls = _tool_calls(raw.get("tool_calls"))
    plan = str_at(raw, "tool_plan")
    message: JSON = {"role": "assistant", "content": text or None, "refusal": None}
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        # The plan Cohere writes before calling tools is the text that accompanies the calls.
        message["content"] = text or plan or None
        message["tool_calls"] = calls
    elif not text:
        message["content"] = ""
    return message


def chat_response(body: bytes, target: Target) -> JSON:
    obj = loads_object(body)
    if obj is None or not isinstance(obj.get("message"), dict):
        raise invalid_body(target)
    if (failure := finish_error(obj.get("finish_reason"), obj.get("error"), target)) is not None:
        try:
            raise failure
        finally:
            del failure  # its traceback holds this frame: a reference cycle otherwise
    choice: JSON = {"index": 0, "message": _message(obj["message"]), "logprobs": None,
                    "finish_reason": finish_reason(obj.get("finish_reason"))}
    mark_stop_sequence(choice, obj.get("finish_reason"))
    if obj.get("logprobs"):
        choice["logprobs"] = {"content": logprob_entries(obj["logprobs"]), "refusal": None}
    out: JSON = {"id": obj.get("id") or "", "object": "chat.completion", "created": int(time.time()),
                 "model": target.model, "choices": [choice]}
    if (normalised := usage(obj.get("usage"))) is not None:
        out["usage"] = normalised
    return out


# ---- embeddings -------------------------------------------------------------------------------




def typed_vectors(embeddings: JSON) -> list[Any] | None:
    """The vectors of an embeddings-by-type object (Cohere's, and Cohere's models on Bedrock) in
    the one type asked for (request.embedding_type): float unless the request named another."""
    return next((v for v in (embeddings.get(k) for k in EMBEDDING_TYPES) if isinstance(v, list)), None)


def embeddings_response(body: bytes, target: Target) -> JSON:
    obj = loads_object(body) or {}
    vectors = typed_vectors(obj_at(obj, "embeddings"))
    if vectors is None:
        raise invalid_body(target)
    # encoding_format base64 is applied by the gateway for every provider (embedding_encoding.py).
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    meta = obj_at(obj, "meta")
    billed, tokens = obj_at(meta, "billed_units"), obj_at(meta, "tokens")
    prompt = _count(billed.get("input_tokens"), tokens.get("input_tokens")) or 0
    return {"object": "list", "data": data, "model": target.model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


# ---- errors -----------------------------------------------------------------------------------


def is_context_length(message: str | None, error_type: Any) -> bool:
    """Cohere prefixes every token-limit error with "too many tokens:"; only the max_tokens one is
    not about the prompt ("too many tokens: max tokens must be less than or equal to ...")."""
    text = (message or "").lower()
    if "max tokens must" in text:
        return False
    return text.startswith("too many tokens") or error_type == "TOO_MANY_TOKENS"


def error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
    found = loads_object(body)
    obj = found or {}
    message = obj.get("message") if isinstance(obj.get("message"), str) and obj.get("message") else None
    if found is None:  # a page in plain text or HTML (a proxy's in front of the API): its text
        message = text_message(body)
    if status in (400, 422) and is_context_length(message, obj.get("error_type")):
        return upstream_error(400, headers, target, message, type="invalid_request_error",
                              code="context_length_exceeded", param="messages")
    if status == 498:
        # 498 InvalidToken: a deny-listed token in the request or the output (a content filter).
        return upstream_error(400, headers, target, message, code="content_filter")
    if status == 499:
        # 499 RequestCancelled: nothing the caller sent was wrong.
        return upstream_error(502, headers, target, message)
    return upstream_error(status, headers, target, message)
