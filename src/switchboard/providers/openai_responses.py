"""The OpenAI Responses API spoken natively: a deployment with ``responses: native`` (provider
type openai or azure) receives the Responses request as the client sent it, so OpenAI-only
features (built-in tools, file inputs, include, ...) keep working there. Pure functions; the
exchange that sends them is pipeline/native.py's.

What the gateway still does: the model becomes the deployment's upstream model; a
``previous_response_id`` (the gateway's own id) is replaced by the stored conversation as input
items, and ``store`` is false upstream (the gateway keeps the state, so a conversation can move
between native and translated deployments); the response id is the gateway's. Usage is read
from the response (or its ``response.completed`` event) and recorded like any other call. A
failed response's error text is passed on through the caller's ``scrub`` (credentials out):
providers quote what they were sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from switchboard.errors import GatewayError, UpstreamBadGateway, UpstreamRateLimited, UpstreamTimeout
from switchboard.providers.base import JSON, OUTPUT, DeferredError
from switchboard.providers.counts import count
from switchboard.providers.errors import invalid_body, loads_object, upstream_error
from switchboard.providers.sse import SSEParser, empty_data
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

# The first Azure OpenAI API version with the Responses API; older configured versions use it.
AZURE_RESPONSES_VERSION = "2025-03-01-preview"
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# The events that open a stream before any output.
_OPENING = frozenset({"response.created", "response.in_progress"})
# Events whose ``delta`` is output (text, refusal, reasoning, tool input): kept under OUTPUT, to
# estimate the output of a stream cut before its final event.
_DELTAS = frozenset({
    "response.output_text.delta", "response.refusal.delta", "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta", "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
})

# OpenAI's codes of a failed response that refuse the caller's input (besides those starting
# with "invalid_": invalid_prompt, invalid_image, invalid_base64_image, ...): its images.
_REFUSED_INPUT = frozenset({
    "image_too_large", "image_too_small", "image_parse_error", "image_content_policy_violation",
    "image_file_too_large", "unsupported_image_media_type", "empty_image_file", "failed_to_download_image",
    "image_file_not_found",
})

Scrub = Callable[[str], str]


def chat_usage(usage: Any) -> JSON | None:
    """Responses usage -> the canonical (chat) usage the usage stage records."""
    if not isinstance(usage, dict):
        return None
    # Each count read by providers/counts.py: whole, not negative, bounded.
    prompt, completion = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
    details = usage.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    out_details = usage.get("output_tokens_details")
    reasoning = count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": count(usage.get("total_tokens")) or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": count(details.get("cached_tokens")),
                                  "cache_creation_tokens": count(details.get("cache_write_tokens"))},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def history_items(messages: list[JSON]) -> list[JSON]:
    """Canonical messages (a stored conversation) as Responses input items."""
    items: list[JSON] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "tool":
            # Text parts (kept as parts for a prompt_cache_breakpoint) in the Responses part type:
            # a chat part's "text" type is refused there.
            output = _input_parts(content) if isinstance(content, list) else content or ""
            items.append({"type": "function_call_output", "call_id": m.get("tool_call_id"), "output": output})
            continue
        if role == "assistant":
            if content:
                text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                )
            for call in m.get("tool_calls") or ():
                function = call.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments") or "",
                    }
                )
            continue
        if isinstance(content, list):
            content = _input_parts(content)
        items.append({"type": "message", "role": role, "content": content})
    return items


def _input_parts(content: list[JSON]) -> list[JSON]:
    """Chat content parts as Responses input parts, each with its ``prompt_cache_breakpoint``."""
    parts: list[JSON] = []
    for p in content:
        if p.get("type") == "image_url":
            image = p.get("image_url") or {}
            part = {"type": "input_image", "image_url": image.get("url"),
                    "detail": image.get("detail", "auto")}
        else:
            part = {"type": "input_text", "text": p.get("text", "")}
        if p.get("prompt_cache_breakpoint") is not None:
            part["prompt_cache_breakpoint"] = p["prompt_cache_breakpoint"]
        parts.append(part)
    return parts


def upstream_request(given: JSON, history: list[JSON], target: Target, stream: bool) -> UpstreamRequest:
    """The request as the client sent it (``given``), continuing ``history`` (canonical messages)."""
    body = dict(given)
    body.pop("previous_response_id", None)
    body["model"] = target.model
    body["store"] = False
    if history:
        given = body["input"]
        turn = (
            [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else list(given)
        )
        body["input"] = history_items(history) + turn
    headers = {"Accept": "text/event-stream"} if stream else {}
    if target.provider_type == "azure":
        version = max(str(getattr(target.options, "api_version", "")), AZURE_RESPONSES_VERSION)
        url = f"{target.api_base}/openai/responses?api-version={version}"
    else:
        url = target.api_base + "/responses"
    return UpstreamRequest("POST", url, orjson.dumps(body), headers, stream)


def _said(event: JSON) -> str:
    """What an error event says: its ``message``, or its ``error``'s (an object's ``message``, or
    the error itself), the first that is text; "error" when none is (a number or an object is
    not quoted as Python writes it)."""
    error = event.get("error")
    for said in (event.get("message"), error.get("message") if isinstance(error, dict) else error):
        if said.__class__ is str and said:
            return said
    return "error"


def _as_failed(event: JSON) -> JSON:
    """An ``error`` event as a failed response, for :func:`failure`: OpenAI puts the code and
    message at the top level (``{"type": "error", "code": ..., "message": ...}``), some hosts
    under ``error``."""
    error = event.get("error")
    code = event.get("code")
    if code is None and isinstance(error, dict):
        code = error.get("code")
    return {"error": {"code": code, "message": _said(event)}}


class NativeDecoder(DeferredError):
    """The upstream's typed events, each as ``{"native": event}``; the final event's chunk also
    carries the canonical ``usage`` (which the terminal records, as for any stream), an output
    delta's chunk its text under ``OUTPUT`` (for the estimate of a stream cut before its end).

    An error event raises only after the events that preceded it in the same read were returned,
    so the client receives everything the upstream sent before failing. ``response.failed`` (how
    OpenAI ends a stream whose response failed) is a failure too: after output it is relayed and
    the stream then raises, so the call is recorded and reported to the router as failed (the
    Responses encoder writes no second ``response.failed``); before any, it is an error event."""

    def __init__(self, target: Target, scrub: Scrub) -> None:
        self._target = target
        self._scrub = scrub
        self._parser = SSEParser(target.provider, target.max_event_bytes)
        self._ended = False
        self._said = False  # an event past the opening ones was returned: the client may have it
        self._deferred: GatewayError | None = None

    def feed(self, data: bytes) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        out: list[JSON] = []
        for event in self._parser.feed(data):
            obj = loads_object(event.data.encode())
            if obj is None:
                if event.data == "[DONE]" or empty_data(event.data):
                    continue  # the end, or an event that carries nothing (providers/sse.py)
                raise invalid_body(self._target, "stream event")
            kind = obj.get("type")
            if kind.__class__ is not str:  # of the wrong JSON type (a list is no set member)
                kind = None  # relayed, not read
            if kind == "error" or event.event == "error":
                self._defer(failure(_as_failed(obj), self._target, " mid-stream"))
                if not out:
                    raise self._taken()
                break
            if kind == "response.failed":
                obj["response"] = response = scrubbed(obj.get("response"), self._scrub)
                self._defer(failure(response, self._target, " mid-stream"))
                if not self._said:  # nothing but the opening yet: as an error event
                    if not out:
                        raise self._taken()
                    break
            elif kind not in _OPENING:
                self._said = True
            chunk: JSON = {"native": obj}
            if kind in _DELTAS and isinstance(delta := obj.get("delta"), str):
                chunk[OUTPUT] = delta
            elif kind in _ENDS:
                self._ended = True
                response = obj.get("response")
                if not isinstance(response, dict):
                    response = {}
                usage = chat_usage(response.get("usage"))
                if usage is not None:
                    chunk["usage"] = usage
                    if isinstance(tier := response.get("service_tier"), str):  # it prices the call
                        chunk["service_tier"] = tier
            out.append(chunk)
            if self._deferred is not None:  # response.failed, relayed: nothing follows it
                break
        return out

    @staticmethod
    def says_nothing(chunk: JSON) -> bool:
        """Whether ``chunk`` only opens the stream (response.created, response.in_progress): held
        by the terminal until an event with output (pipeline/invoke.py)."""
        native = chunk.get("native")
        kind = native.get("type") if isinstance(native, dict) else None
        return kind.__class__ is str and kind in _OPENING

    def close(self) -> list[JSON]:
        if self._deferred is not None:
            raise self._taken()
        if not self._ended:
            where = f"provider '{self._target.provider}'"
            raise UpstreamBadGateway(f"{where} ended the stream before it was complete")
        return []




def native_reply(body: bytes, target: Target, scrub: Scrub) -> tuple[JSON, JSON | None]:
    """A complete Response from the upstream as ``{"native": response}``, and its canonical usage.
    A response whose status is ``failed`` (HTTP 200, as OpenAI answers it) is raised as its
    error: nothing reached the client yet, as with a stream's ``response.failed`` before any
    output, so it is retried or sent to the fallbacks, else answered as an error status."""
    obj = loads_object(body)
    if obj is None or not isinstance(obj.get("output"), list):
        raise invalid_body(target)
    if obj.get("status") == "failed":
        raise failure(scrubbed(obj, scrub), target, "")
    return {"native": scrubbed(obj, scrub)}, chat_usage(obj.get("usage"))


def failure(response: Any, target: Target, when: str) -> GatewayError:
    """The error of a failed response (``response.failed``'s, or a non-stream one; its message
    already scrubbed), by its ``error.code`` (OpenAI's codes of a failed response): a rate limit
    is the upstream's 429, a vector store's timeout its timeout, a refused prompt or image the
    caller's 400 (the upstream's code kept); ``server_error`` and any other code 502
    ``upstream_error``. ``when`` is said after "failed" (" mid-stream")."""
    said = _said(response) if isinstance(response, dict) else "error"
    text = f"provider '{target.provider}' failed{when}: {said}"
    error = response.get("error") if isinstance(response, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if code.__class__ is not str:
        return UpstreamBadGateway(text)
    if code == "rate_limit_exceeded":
        return UpstreamRateLimited(text)
    if code == "vector_store_timeout":
        return UpstreamTimeout(text)
    if code in _REFUSED_INPUT or code.startswith("invalid_"):
        return upstream_error(400, {}, target, text, code=code)
    return UpstreamBadGateway(text)


def scrubbed(response: Any, scrub: Scrub) -> Any:
    """``response`` with its error message (a failed response's, or its error given as text:
    what :func:`_said` quotes) passed through ``scrub``."""
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return {**response, "error": {**error, "message": scrub(error["message"])}}
    if isinstance(error, str):
        return {**response, "error": scrub(error)}
    return response
