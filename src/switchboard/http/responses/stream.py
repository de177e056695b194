"""Canonical chunk stream -> the Responses API's typed server-sent events.

Reference: https://platform.openai.com/docs/api-reference/responses-streaming. The order, each
event with a ``sequence_number`` one higher than the last:

    response.created, response.in_progress          the response, status in_progress, no output
    for each output item, in order:
      response.output_item.added                    the item, status in_progress
      reasoning:  response.content_part.added, response.reasoning_text.delta...,
                  response.reasoning_text.done, response.content_part.done
      message:    response.content_part.added, response.output_text.delta...,
                  response.output_text.done, response.content_part.done (a refusal:
                  response.refusal.delta..., response.refusal.done, in a refusal part)
      function call: response.function_call_arguments.delta..., .done
      response.output_item.done                     the complete item
    response.completed | response.incomplete        the complete response, with usage

A failure after the stream started ends it with ``response.failed`` (the response with status
failed and its error). The canonical stream reports usage in its last chunk, after the finish.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.http.responses.response import (
    JSON,
    call_item,
    finished,
    message_item,
    new_id,
    reasoning_item,
    text_part,
)

# A content part's type -> the key of its text, the event of its deltas.
_TEXT_KEY = {"output_text": "text", "reasoning_text": "text", "refusal": "refusal"}
# The codes a failed response's ``error.code`` may have (the openai SDK's ResponseError.code):
# those of the gateway's own failures that are one of them are kept, every other is
# ``server_error``, the gateway's code then leading the message (failed_error).
_FAILED_CODES = frozenset({
    "server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout", "invalid_image",
    "invalid_image_format", "invalid_base64_image", "invalid_image_url", "image_too_large",
    "image_too_small", "image_parse_error", "image_content_policy_violation", "invalid_image_mode",
    "image_file_too_large", "unsupported_image_media_type", "empty_image_file",
    "failed_to_download_image", "image_file_not_found",
})
_DELTA_EVENT = {
    "output_text": "response.output_text.delta",
    "reasoning_text": "response.reasoning_text.delta",
    "refusal": "response.refusal.delta",
}


class StreamEncoder:
    """The state of one stream: the output items so far and the one open."""

    __slots__ = ("_base", "_calls", "_finish", "_open", "_output", "_own", "_seq", "_tier", "_usage",
                 "failed_sent", "final")

    def __init__(self, base: JSON, own: JSON | None = None) -> None:
        self._base = base  # the response without output, status in_progress
        self._own = own or {}  # set in a native deployment's responses (id, store, ...)
        self._seq = 0
        self._output: list[JSON] = []
        self._open: JSON | None = None  # the item being streamed
        self._calls: dict[int, JSON] = {}  # tool call index -> its function_call item
        self._finish: Any = None
        self._usage: Any = None
        self._tier: Any = None  # the service tier the upstream's chunks report
        self.final: JSON | None = None  # the complete response once the stream ended
        self.failed_sent = False  # a native deployment's response.failed was passed on

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self) -> bytes:
        return self.event("response.created", response=self._base) + self.event(
            "response.in_progress", response=self._base
        )

    def feed(self, chunk: JSON) -> bytes:
        native = chunk.get("native")
        if isinstance(native, dict):
            return self._passed(native)
        out: list[bytes] = []
        loop = chunk.get("mcp_output")
        if isinstance(loop, list):  # the tool loop's items (mcp/loop.py), each complete
            for item in loop:
                self._done_item(item, out)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if "service_tier" in chunk:
            self._tier = chunk["service_tier"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._text("reasoning", reasoning, out, "reasoning_text")
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._text("message", text, out)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text("message", refusal, out, "refusal")
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def _passed(self, event: JSON) -> bytes:
        """A native deployment's event, renumbered, its response carrying the gateway's id."""
        fields = {k: v for k, v in event.items() if k not in ("type", "sequence_number")}
        response = fields.get("response")
        if isinstance(response, dict):
            fields["response"] = response = {**response, **self._own}
            if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                self.final = response
            if event.get("type") == "response.created":
                self._base = {**response, "output": []}
        elif event.get("type") == "response.output_item.done" and isinstance(fields.get("item"), dict):
            self._output.append(fields["item"])  # what a failure ends the stream with (failed)
        if event.get("type") == "response.failed":
            self.failed_sent = True
        return self.event(str(event.get("type")), **fields)

    def end(self) -> bytes:
        out: list[bytes] = []
        # max_output_tokens cut the item being streamed: it is incomplete, as on a failure.
        self._close(out, status="incomplete" if self._finish == "length" else "completed")
        final = finished(self._base, self._output, self._finish, self._usage, self._tier)
        self.final = final
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        out.append(self.event(kind, response=final))
        return b"".join(out)

    def failed(self, code: str | None, message: str) -> bytes:
        """``response.failed``, ending the stream; ``final`` is the failed response, as sent."""
        out: list[bytes] = []
        self._close(out, status="incomplete")
        response = {
            **self._base,
            "status": "failed",
            "output": self._output,
            "error": failed_error(code, message),
        }
        self.final = response
        return b"".join(out) + self.event("response.failed", response=response)

    # -- items -----------------------------------------------------------------------------------

    def _done_item(self, item: JSON, out: list[bytes]) -> None:
        """An ``mcp_list_tools`` or ``mcp_call`` item of the tool loop: added, its outcome, done."""
        self._close(out)
        self._output.append(item)
        index = self._index()
        kind = item.get("type")
        out.append(self.event("response.output_item.added", output_index=index,
                              item={**item, "status": "in_progress"} if kind == "mcp_call" else item))
        if kind == "mcp_list_tools":
            outcome = "failed" if item.get("error") and not item.get("tools") else "completed"
            out.append(self.event(f"response.mcp_list_tools.{outcome}", item_id=item["id"],
                                  output_index=index))
        elif kind == "mcp_call":
            out.append(self.event("response.mcp_call_arguments.done", item_id=item["id"], output_index=index,
                                  arguments=item.get("arguments") or "{}"))
            outcome = "failed" if item.get("status") == "failed" else "completed"
            out.append(self.event(f"response.mcp_call.{outcome}", item_id=item["id"], output_index=index))
        out.append(self.event("response.output_item.done", output_index=index, item=item))

    def _index(self) -> int:
        return len(self._output) - 1

    def _begin(self, item: JSON, out: list[bytes]) -> None:
        self._close(out)
        self._output.append(item)
        self._open = item
        out.append(self.event("response.output_item.added", output_index=self._index(), item=item))

    def _text(self, kind: str, text: str, out: list[bytes], part_type: str = "output_text") -> None:
        """``text`` added to the open item of ``kind`` (opened if need be), in a part of
        ``part_type``: ``output_text`` or ``refusal`` (a message's), ``reasoning_text``."""
        item = self._open
        if item is None or item["type"] != kind:
            if kind == "reasoning":
                item = reasoning_item(new_id("rs_"), "", status="in_progress")
            else:
                item = message_item(new_id("msg_"), [], status="in_progress")
            self._begin(item, out)
        parts = item["content"]
        if not parts or parts[-1]["type"] != part_type:
            # A refusal after text (or text after a refusal) is the message's next part, as OpenAI
            # streams it: the part before is done first.
            if parts:
                self._part_done(item, out)
            part = text_part("") if part_type == "output_text" else {"type": part_type,
                                                                         _TEXT_KEY[part_type]: ""}
            parts.append(part)
            out.append(
                self.event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index(),
                    content_index=len(parts) - 1,
                    part=part,
                )
            )
        part = parts[-1]
        part[_TEXT_KEY[part_type]] += text
        fields: JSON = {
            "item_id": item["id"],
            "output_index": self._index(),
            "content_index": len(parts) - 1,
            "delta": text,
        }
        if part_type == "output_text":
            fields["logprobs"] = []
        out.append(self.event(_DELTA_EVENT[part_type], **fields))

    def _part_done(self, item: JSON, out: list[bytes]) -> None:
        """The done events of the message's or reasoning's last content part."""
        index = self._output.index(item)
        content_index = len(item["content"]) - 1
        part = item["content"][content_index]
        kind = part["type"]
        fields: JSON = {"item_id": item["id"], "output_index": index, "content_index": content_index}
        if kind == "output_text":
            out.append(self.event("response.output_text.done", **fields, text=part["text"], logprobs=[]))
        elif kind == "refusal":
            out.append(self.event("response.refusal.done", **fields, refusal=part["refusal"]))
        else:
            out.append(self.event("response.reasoning_text.done", **fields, text=part["text"]))
        out.append(self.event("response.content_part.done", **fields, part=part))

    def _tool_call(self, call: JSON, out: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(position)
        if item is None:
            call_id = call.get("id") or new_id("call_")
            item = call_item(new_id("fc_"), call_id, function.get("name") or "", "", status="in_progress")
            self._calls[position] = item
            self._begin(item, out)
        elif not item["name"] and function.get("name"):
            # Some upstreams send the name in a later chunk than the call's first: the item's done
            # events and the final response carry it.
            item["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            out.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._output.index(item),
                    delta=arguments,
                )
            )

    def _close(self, out: list[bytes], status: str = "completed") -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        index = self._output.index(item)
        if item["type"] in ("message", "reasoning"):
            if item["content"]:
                self._part_done(item, out)
        else:
            out.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        item["status"] = status
        out.append(self.event("response.output_item.done", output_index=index, item=item))


def failed_error(code: str | None, message: str) -> JSON:
    """A failed response's ``error`` for a gateway failure: a code of OpenAI's list, the
    gateway's own (``upstream_timeout``, ``server_shutting_down``, ...) kept in the message."""
    if code in _FAILED_CODES:
        return {"code": code, "message": message}
    if code:
        message = f"{code}: {message}"
    return {"code": "server_error", "message": message}
