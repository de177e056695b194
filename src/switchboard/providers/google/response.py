"""Gemini ``GenerateContentResponse`` -> canonical ``chat.completion``.

Reference: https://ai.google.dev/api/generate-content#generatecontentresponse (candidates,
finishReason values, promptFeedback, usageMetadata, logprobsResult). Thought parts (``thought:
true``) are reasoning, kept out of ``content`` and returned as ``reasoning_content``; a function
call's ``thoughtSignature`` is returned in ``tool_calls[].extra_content.google.thought_signature``
(the field Google's own OpenAI-compatible endpoint uses) so clients can send it back.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from switchboard.errors import GatewayError, InvalidRequest, UpstreamBadGateway
from switchboard.providers.counts import count
from switchboard.providers.counts import position as index_of
from switchboard.providers.errors import invalid_body
from switchboard.providers.target import Target
from switchboard.providers.tool_calls import new_call_id

JSON = dict[str, Any]

_FILTERED = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
}


def finish_reason(reason: Any, has_tool_calls: bool) -> str | None:
    """Gemini finishReason -> OpenAI finish_reason (None while a stream is still going)."""
    if not isinstance(reason, str) or not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    # STOP, and also OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL...: the turn ended (an empty
    # candidate with a FAILED_GENERATION reason is an error instead: failed_generation).
    return "tool_calls" if has_tool_calls else "stop"


MISSING_SIGNATURE = "MISSING_THOUGHT_SIGNATURE"
# Finish reasons by which Google says the model failed to produce an answer (Google's FinishReason
# reference). The candidate then usually holds nothing: passed on as an empty "stop" it would be a
# silent empty answer. When the candidate said nothing (no text, no call) it is the upstream's
# failure, as a 5xx is: a 502 upstream_error, retried and fallen back from (in a stream, the
# mid-stream error event); MISSING_THOUGHT_SIGNATURE, the request's fault, a 400 instead. With
# text or calls given, the turn ended as with STOP, except MISSING_THOUGHT_SIGNATURE: the request
# was refused whatever came before, so an error there too (in a stream, after the text sent).
FAILED_GENERATION = {
    "MALFORMED_FUNCTION_CALL": "the model tried a function call it could not form",
    "UNEXPECTED_TOOL_CALL": "the model called a tool when no tools were enabled",
    "TOO_MANY_TOOL_CALLS": "the model called too many tools in a row",
    "MALFORMED_RESPONSE": "the model's response was malformed",
    "NO_IMAGE": "the model was to generate an image and generated none",
    "IMAGE_OTHER": "the image generation stopped for a reason Google does not name",
    # The request's fault, not the upstream's (Google: "Request has at least one thought signature
    # missing"): a 400 the caller can act on, neither retried nor fallen back from.
    MISSING_SIGNATURE: "a replayed function call lacks its thought signature: send each tool call's "
                       "extra_content.google.thought_signature back as it was received",
}
_FINISH_MESSAGE_CHARS = 300  # finishMessage may quote the model's whole broken call


def failed_generation(candidate: JSON, said: bool) -> bool:
    """Whether the candidate ended with a FAILED_GENERATION reason and nothing in it, or with
    MISSING_THOUGHT_SIGNATURE at all."""
    reason = candidate.get("finishReason")
    return reason == MISSING_SIGNATURE or (not said and reason in FAILED_GENERATION)


def failed_generation_error(candidate: JSON, target: Target) -> GatewayError:
    """The error for a candidate that failed_generation."""
    reason = candidate["finishReason"]
    message = candidate.get("finishMessage")
    detail = f": {message[:_FINISH_MESSAGE_CHARS]}" if isinstance(message, str) and message else ""
    if reason == MISSING_SIGNATURE:
        return InvalidRequest(
            f"provider '{target.provider}' refused the conversation: finishReason {reason} "
            f"({FAILED_GENERATION[reason]}){detail}", param="messages",
        )
    return UpstreamBadGateway(
        f"provider '{target.provider}' answered nothing: finishReason {reason}"
        f" ({FAILED_GENERATION[reason]}){detail}"
    )


def completion_id(obj: JSON) -> str:
    rid = obj.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex[:24]}"


def model_name(obj: JSON, target: Target) -> str:
    version = obj.get("modelVersion")
    return version if isinstance(version, str) and version else target.model


def usage(meta: Any) -> JSON | None:
    """usageMetadata -> OpenAI usage. Thinking tokens count as completion tokens, as OpenAI's do.

    Image and audio units come from the per-modality lists (``promptTokensDetails`` and
    ``toolUsePromptTokensDetails`` for the prompt, less the cached ones of ``cacheTokensDetails``,
    which are cache reads; ``candidatesTokensDetails`` for the output). Video and documents are
    billed like text by Google: they stay in the text counts."""
    if not isinstance(meta, dict):
        return None
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    thoughts = _count(meta, "thoughtsTokenCount")
    completion = _count(meta, "candidatesTokenCount") + thoughts
    total = _count(meta, "totalTokenCount") or prompt + completion
    prompt_details: JSON = {"cached_tokens": _count(meta, "cachedContentTokenCount")}
    completion_details: JSON = {"reasoning_tokens": thoughts}
    if "promptTokensDetails" in meta or "candidatesTokensDetails" in meta:
        sent = _modalities(meta.get("promptTokensDetails"), meta.get("toolUsePromptTokensDetails"))
        cached = _modalities(meta.get("cacheTokensDetails"))
        produced = _modalities(meta.get("candidatesTokensDetails"))
        for unit, modality in (("image_tokens", "IMAGE"), ("audio_tokens", "AUDIO")):
            if count := max(sent.get(modality, 0) - cached.get(modality, 0), 0):
                prompt_details[unit] = count
            if count := produced.get(modality, 0):
                completion_details[unit] = count
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": completion_details,
    }


def _modalities(*lists: Any) -> dict[str, int]:
    """Token counts by modality from lists of ``{modality, tokenCount}``; anything else ignored."""
    out: dict[str, int] = {}
    for items in lists:
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict) and isinstance(modality := item.get("modality"), str):
                count = _count(item, "tokenCount")
                if count > 0:
                    out[modality] = out.get(modality, 0) + count
    return out


def _count(meta: JSON, key: str) -> int:
    return count(meta.get(key))  # providers/counts.py: whole, not negative, bounded


def parts_of(candidate: JSON) -> list[JSON]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def tool_call(part: JSON, call_id: str) -> JSON:
    call = part["functionCall"]
    # A name or args of the wrong JSON type (args is an object: a Struct) is read as absent.
    name, args = call.get("name"), call.get("args")
    out: JSON = {
        "id": call.get("id") if isinstance(call.get("id"), str) and call["id"] else call_id,
        "type": "function",
        "function": {"name": name if isinstance(name, str) else "",
                     "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode()},
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def split_parts(parts: list[JSON]) -> tuple[str, str, list[JSON]]:
    """(answer text, reasoning text, functionCall parts)."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for part in parts:
        if isinstance(part.get("functionCall"), dict):
            calls.append(part)
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thoughts), calls


def logprobs(candidate: JSON) -> JSON | None:
    result = candidate.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = _list(result.get("chosenCandidates"))
    tops = _list(result.get("topCandidates"))
    content = []
    for k, tok in enumerate(chosen):
        if not isinstance(tok, dict):
            continue
        top = _list(tops[k].get("candidates")) if k < len(tops) and isinstance(tops[k], dict) else []
        content.append({**_logprob(tok), "top_logprobs": [_logprob(t) for t in top if isinstance(t, dict)]})
    return {"content": content, "refusal": None}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def candidates_of(obj: JSON) -> list[JSON]:
    """The candidate objects of a GenerateContentResponse (none when the field is not a list)."""
    return [c for c in _list(obj.get("candidates")) if isinstance(c, dict)]


def prompt_blocked(obj: JSON) -> bool:
    """Whether the response says the prompt itself was blocked (promptFeedback.blockReason)."""
    feedback = obj.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _logprob(tok: JSON) -> JSON:
    token = str(tok.get("token", ""))
    return {"token": token, "logprob": tok.get("logProbability", 0.0), "bytes": list(token.encode())}


def _choice(candidate: JSON, position: int) -> JSON:
    text, thoughts, calls = split_parts(parts_of(candidate))
    tool_calls = [tool_call(p, new_call_id()) for p in calls]
    finish = finish_reason(candidate.get("finishReason"), bool(tool_calls)) or (
        "tool_calls" if tool_calls else "stop"
    )
    message: JSON = {"role": "assistant", "content": text or None, "refusal": None}
    if not text and not tool_calls and finish != "content_filter":
        message["content"] = ""
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thoughts:
        message["reasoning_content"] = thoughts
    index = index_of(candidate.get("index"))  # 1.0 is 1; of the wrong type: its place in the list
    return {
        "index": position if index is None else index,
        "message": message,
        "logprobs": logprobs(candidate),
        "finish_reason": finish,
    }


def blocked_choice() -> JSON:
    """The answer when the prompt itself was blocked (promptFeedback.blockReason, no candidates)."""
    message = {"role": "assistant", "content": None, "refusal": None}
    return {"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}


def chat_completion(obj: JSON | None, target: Target) -> JSON:
    if obj is None:
        raise invalid_body(target)
    candidates = candidates_of(obj)
    choices = [_choice(c, i) for i, c in enumerate(candidates)]
    for candidate, choice in zip(candidates, choices, strict=True):
        said = bool(choice["message"]["content"] or "tool_calls" in choice["message"])
        if failed_generation(candidate, said):
            raise failed_generation_error(candidate, target)
    if not choices:
        if not prompt_blocked(obj):
            raise invalid_body(target)
        choices = [blocked_choice()]
    body: JSON = {
        "id": completion_id(obj),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name(obj, target),
        "choices": choices,
    }
    body["usage"] = usage(obj.get("usageMetadata")) or usage({})
    return body
