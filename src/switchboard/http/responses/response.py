"""Canonical chat results -> OpenAI Response objects and their output items.

Reference: https://platform.openai.com/docs/api-reference/responses/object (and the openai SDK's
``types/responses``). A chat completion's message becomes, in order: a ``reasoning`` item when
the upstream returned reasoning text (``reasoning_content``), a ``message`` item with one
``output_text`` part (or a ``refusal`` part), and one ``function_call`` item per tool call.
``finish_reason`` "length" makes the response ``incomplete`` with reason ``max_output_tokens``,
"content_filter" with reason ``content_filter``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from switchboard.mcp.offer import replayed

JSON = dict[str, Any]


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def response_id() -> str:
    return new_id("resp_")


def usage(raw: Any) -> JSON | None:
    """Chat usage -> Responses usage; None when the upstream reported none."""
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int(prompt_details.get("cached_tokens") or 0),
            "cache_write_tokens": int(prompt_details.get("cache_creation_tokens") or 0),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)},
        "total_tokens": int(raw.get("total_tokens") or prompt + completion),
    }


def status_of(finish: Any) -> tuple[str, JSON | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def skeleton(rid: str, created_at: int, model: str, echo: JSON, status: str = "in_progress") -> JSON:
    """A Response object with no output yet: what ``response.created`` carries."""
    return {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        **echo,
    }


def text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, parts: list[JSON], status: str = "completed") -> JSON:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": parts}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> JSON:
    content = [{"type": "reasoning_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> JSON:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_items(message: JSON) -> list[JSON]:
    """The output items of a chat completion's message."""
    items: list[JSON] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        items.append(reasoning_item(new_id("rs_"), reasoning))
    text, refusal = message.get("content"), message.get("refusal")
    if isinstance(text, list):  # content parts, as some upstreams answer
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        items.append(message_item(new_id("msg_"), [text_part(text)]))
    elif isinstance(refusal, str) and refusal:
        items.append(message_item(new_id("msg_"), [{"type": "refusal", "refusal": refusal}]))
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        call_id = call.get("id") or new_id("call_")
        items.append(
            call_item(new_id("fc_"), call_id, function.get("name") or "", function.get("arguments") or "")
        )
    return items


def finished(base: JSON, output: list[JSON], finish: Any, raw_usage: Any, tier: Any = None) -> JSON:
    """The finished Response object; ``tier``: the service tier the upstream reports it served the
    request in (a chat completion's ``service_tier``), which OpenAI's Response says in place of
    the one asked for (``auto`` becomes the tier used). An upstream that does not say (a provider
    without OpenAI's tiers, which the hint was not sent to) served it at its standard one."""
    status, details = status_of(finish)
    return {
        **base,
        "service_tier": tier if isinstance(tier, str) and tier else "default",
        "status": status,
        "incomplete_details": details,
        "output": output,
        "usage": usage(raw_usage),
        "completed_at": int(time.time()) if status == "completed" else None,
    }


def from_chat(body: JSON, base: JSON) -> JSON:
    """The Response object of a canonical chat completion."""
    choices = body.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    # The gateway's tool loop (mcp/loop.py): its mcp_list_tools and mcp_call items come first.
    loop = body.get("mcp_output")
    items = output_items(message)
    finish = choice.get("finish_reason")
    if finish == "length" and items:  # the item being generated when the limit cut it
        items[-1]["status"] = "incomplete"
    output = [*loop, *items] if isinstance(loop, list) else items
    return finished(base, output, finish, body.get("usage"), body.get("service_tier"))


def append_call(messages: list[JSON], call: JSON) -> None:
    """``call`` as an assistant tool call: calls after an assistant message (or after other
    calls) belong to that message."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def assistant_messages(output: list[JSON]) -> list[JSON]:
    """The canonical messages of a response's output, for the conversation a later
    ``previous_response_id`` continues: what the same output replayed as input items gives the
    model (request.input_messages), so a stored turn and a replayed one (``store: false``) read
    the same upstream. The tool loop's ``mcp_call`` items are its calls and the results fed back;
    ``mcp_list_tools``, reasoning and a function call left ``incomplete`` (cut by a failure or
    by ``max_output_tokens``: its arguments are not whole) are not carried over."""
    messages: list[JSON] = []
    for item in output:
        kind = item.get("type")
        if kind == "message":
            text = _message_text(item)
            if text is not None:
                messages.append({"role": "assistant", "content": text})
        elif kind == "function_call" and item.get("status") != "incomplete":
            function = {"name": item["name"], "arguments": item["arguments"]}
            append_call(messages, {"id": item["call_id"], "type": "function", "function": function})
        elif kind == "mcp_call" and isinstance(item.get("server_label"), str) and isinstance(
            item.get("name"), str
        ):
            call, text = replayed(item, item.get("id") or new_id("mcp_"))
            append_call(messages, call)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": text})
    return messages


def _message_text(item: JSON) -> str | None:
    """A message item's text (refusals as text), None when it has none."""
    parts: list[str] = []
    for part in item.get("content") or ():
        if part.get("type") == "output_text":
            parts.append(part.get("text") or "")
        elif part.get("type") == "refusal":
            parts.append(part.get("refusal") or "")
    return "".join(parts) if parts else None


def output_text(response: JSON) -> str:
    return "".join(
        part.get("text", "")
        for item in response.get("output") or ()
        if item.get("type") == "message"
        for part in item.get("content") or ()
        if part.get("type") == "output_text"
    )
