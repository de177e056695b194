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

One item at a time, as OpenAI streams them: a tool call written stays open to the end, and the
items after it are held until then (StreamEncoder). A failure after the stream started ends it
with ``response.failed`` (the response with status failed and its error). The canonical stream
reports usage in its last chunk, after the finish.
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
    """The state of one stream: the output items so far, the ones shown, the ones open.

    A chat upstream may send a tool call's argument deltas after those of a later call (index 0,
    1, then 0 again), and a call's id or name after its first chunk. OpenAI streams one output
    item at a time, each done before the next is added, so: a call, once shown, stays open until
    the stream ends (any later chunk may extend it), and the items after it are held, their events
    written when it is done; a call is shown only once it has the upstream's id and its name (or
    at the end), so that its added event names the call as its done events do. Upstreams that send
    one call after the other lose nothing but the live deltas of the calls after the first."""

    __slots__ = ("_base", "_calls", "_finish", "_last", "_live_call", "_open", "_output", "_own", "_seq",
                 "_shown", "_tier", "_unnamed", "_usage", "failed_sent", "final")

    def __init__(self, base: JSON, own: JSON | None = None) -> None:
        self._base = base  # the response without output, status in_progress
        self._own = own or {}  # set in a native deployment's responses (id, store, ...)
        self._seq = 0
        self._output: list[JSON] = []
        self._shown = 0  # the output items whose added event was written (a prefix of _output)
        self._open: JSON | None = None  # the message or reasoning being streamed
        self._live_call: JSON | None = None  # the shown call, open: every later item is held
        self._last: JSON | None = None  # the item the last output went to (a cut cuts it)
        self._calls: dict[int, JSON] = {}  # tool call index -> its function_call item
        self._unnamed: set[str] = set()  # item ids of calls without the upstream's id or name yet
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
            self._shown += 1  # (written, and done)
        if event.get("type") == "response.failed":
            self.failed_sent = True
        return self.event(str(event.get("type")), **fields)

    def end(self) -> bytes:
        out: list[bytes] = []
        # max_output_tokens cut the item the last output went to: it is incomplete, as on a failure.
        self._finish_all(out, cut=self._finish == "length")
        final = finished(self._base, self._output, self._finish, self._usage, self._tier)
        self.final = final
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        out.append(self.event(kind, response=final))
        return b"".join(out)

    def failed(self, code: str | None, message: str) -> bytes:
        """``response.failed``, ending the stream; ``final`` is the failed response, as sent."""
        out: list[bytes] = []
        self._finish_all(out, cut=True)
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
        self._finish_all(out)
        self._output.append(item)
        self._shown += 1
        index = self._index(item)
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

    def _index(self, item: JSON) -> int:
        last = len(self._output) - 1
        if self._output[last] is item:  # the item being streamed, nearly always
            return last
        return next(i for i in range(last - 1, -1, -1) if self._output[i] is item)

    def _is_shown(self, item: JSON) -> bool:
        return self._index(item) < self._shown

    def _begin(self, item: JSON, out: list[bytes]) -> None:
        """A new output item: the message or reasoning before it is done; written at once unless
        an item before it is held or a shown call may still grow."""
        if self._open is not None:
            self._close_text(out)
        self._output.append(item)
        self._last = item
        if item["type"] != "function_call":
            self._open = item
        self._show(out)

    def _show(self, out: list[bytes]) -> None:
        """The added events (and the output so far) of the held items that may now be shown."""
        while self._shown < len(self._output) and self._live_call is None:
            item = self._output[self._shown]
            if item["id"] in self._unnamed:
                return
            self._shown += 1
            self._added(item, out)
            if item["type"] == "function_call":
                self._live_call = item
            elif item is not self._open:  # a message or reasoning closed while held
                self._item_done(item, item["status"], out)

    def _added(self, item: JSON, out: list[bytes]) -> None:
        """``item``'s added event, then its output so far as one delta per part."""
        index = self._index(item)
        if item["type"] == "function_call":
            out.append(self.event("response.output_item.added", output_index=index,
                                  item={**item, "arguments": "", "status": "in_progress"}))
            if item["arguments"]:
                out.append(self.event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=index, delta=item["arguments"]))
            return
        out.append(self.event("response.output_item.added", output_index=index,
                              item={**item, "content": [], "status": "in_progress"}))
        parts = item["content"]
        for content_index, part in enumerate(parts):
            self._part_added(item, content_index, out)
            self._delta(item, content_index, part[_TEXT_KEY[part["type"]]], out)
            if content_index < len(parts) - 1:
                self._part_done(item, content_index, out)

    def _part_added(self, item: JSON, content_index: int, out: list[bytes]) -> None:
        part = item["content"][content_index]
        out.append(self.event("response.content_part.added", item_id=item["id"],
                              output_index=self._index(item), content_index=content_index,
                              part={**part, _TEXT_KEY[part["type"]]: ""}))

    def _delta(self, item: JSON, content_index: int, text: str, out: list[bytes]) -> None:
        part_type = item["content"][content_index]["type"]
        fields: JSON = {
            "item_id": item["id"],
            "output_index": self._index(item),
            "content_index": content_index,
            "delta": text,
        }
        if part_type == "output_text":
            fields["logprobs"] = []
        out.append(self.event(_DELTA_EVENT[part_type], **fields))

    def _text(self, kind: str, text: str, out: list[bytes], part_type: str = "output_text") -> None:
        """``text`` added to the open item of ``kind`` (opened if need be), in a part of
        ``part_type``: ``output_text`` or ``refusal`` (a message's), ``reasoning_text``. Written
        at once when the item is shown, else kept for when it is."""
        item = self._open
        if item is None or item["type"] != kind:
            if kind == "reasoning":
                item = reasoning_item(new_id("rs_"), "", status="in_progress")
            else:
                item = message_item(new_id("msg_"), [], status="in_progress")
            self._begin(item, out)
        self._last = item
        shown = self._is_shown(item)
        parts = item["content"]
        if not parts or parts[-1]["type"] != part_type:
            # A refusal after text (or text after a refusal) is the message's next part, as OpenAI
            # streams it: the part before is done first.
            if parts and shown:
                self._part_done(item, len(parts) - 1, out)
            parts.append(text_part("") if part_type == "output_text" else {"type": part_type,
                                                                            _TEXT_KEY[part_type]: ""})
            if shown:
                self._part_added(item, len(parts) - 1, out)
        parts[-1][_TEXT_KEY[part_type]] += text
        if shown:
            self._delta(item, len(parts) - 1, text, out)

    def _part_done(self, item: JSON, content_index: int, out: list[bytes]) -> None:
        """The done events of a message's or reasoning's content part."""
        part = item["content"][content_index]
        kind = part["type"]
        fields: JSON = {"item_id": item["id"], "output_index": self._index(item),
                        "content_index": content_index}
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
            # call_id "" until the upstream's id comes; one is made up if none came by the end.
            item = call_item(new_id("fc_"), "", "", "", status="in_progress")
            self._calls[position] = item
            self._unnamed.add(item["id"])
            self._begin(item, out)
        self._last = item
        # Some upstreams send the id or the name in a later chunk than the call's first: the call
        # is held until it has both, so that its added event names it as its done events do.
        if isinstance(call.get("id"), str) and call["id"] and not item["call_id"]:
            item["call_id"] = call["id"]
        if isinstance(function.get("name"), str) and function["name"] and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            if self._is_shown(item):
                out.append(self.event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=self._index(item), delta=arguments))
        if item["id"] in self._unnamed and item["call_id"] and item["name"]:
            self._unnamed.discard(item["id"])
            self._show(out)

    def _close_text(self, out: list[bytes]) -> None:
        """The open message or reasoning is done (its events now if shown, else when it is)."""
        item, self._open = self._open, None
        if item is not None:
            item["status"] = "completed"
            if self._is_shown(item):
                self._item_done(item, "completed", out)

    def _item_done(self, item: JSON, status: str, out: list[bytes]) -> None:
        index = self._index(item)
        if item["type"] == "function_call":
            out.append(self.event("response.function_call_arguments.done", item_id=item["id"],
                                  output_index=index, name=item["name"], arguments=item["arguments"]))
        elif item["content"]:
            self._part_done(item, len(item["content"]) - 1, out)
        item["status"] = status
        out.append(self.event("response.output_item.done", output_index=index, item=item))

    def _finish_all(self, out: list[bytes], cut: bool = False) -> None:
        """Every item still open done, and every held one written, in order; with ``cut``, the
        one the last output went to is ``incomplete`` (a failure or the length limit cut it)."""
        open_text, self._open = self._open, None
        for index in range(len(self._output)):
            item = self._output[index]
            status = "incomplete" if cut and item is self._last else "completed"
            if index >= self._shown:
                self._shown += 1
                if item["type"] == "function_call" and not item["call_id"]:
                    item["call_id"] = new_id("call_")  # the upstream named it nowhere
                self._added(item, out)
            elif item is not open_text and item is not self._live_call:
                continue  # done already (or a native deployment's, passed on)
            self._item_done(item, status, out)
        self._unnamed.clear()
        self._live_call = None


def failed_error(code: str | None, message: str) -> JSON:
    """A failed response's ``error`` for a gateway failure: a code of OpenAI's list, the
    gateway's own (``upstream_timeout``, ``server_shutting_down``, ...) kept in the message."""
    if code in _FAILED_CODES:
        return {"code": code, "message": message}
    if code:
        message = f"{code}: {message}"
    return {"code": "server_error", "message": message}
