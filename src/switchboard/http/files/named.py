"""The file ids a model request names, with the path of each: read by the check of a single
request (references.py) and of a batch's input lines (batch_access.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def chat_files(messages: Any) -> list[tuple[str, str]]:
    """(file id, param) of the canonical messages' ``file`` parts. A list built by a plain loop,
    not a generator: every chat request asks, and nearly all name none."""
    found: list[tuple[str, str]] = []
    if not isinstance(messages, list):
        return found
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "file" and isinstance(part.get("file"), dict):
                file_id = part["file"].get("file_id")
                if file_id is not None:
                    found.append((file_id, f"messages[{i}].content[{j}].file.file_id"))
    return found


def responses_files(body: Any) -> Iterator[tuple[str, str]]:
    """(file id, param) of a Responses request body: its input items' parts and its tools.
    A native deployment passes them all on as written, to be read in the upstream account."""
    if not isinstance(body, dict):
        return
    yield from _input_files(body.get("input"))
    yield from _tool_files(body.get("tools"), "tools")


def _input_files(items: Any) -> Iterator[tuple[str, str]]:
    """Parts with a ``file_id`` in an item's ``content`` (``input_file``, ``input_image``) or in
    a tool output (a ``function_call_output``'s parts, a ``computer_call_output``'s screenshot),
    and the files of the tools a ``tool_search_output`` loads."""
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "tool_search_output":  # tools loaded into the request
            yield from _tool_files(item.get("tools"), f"input[{i}].tools")
        for key in ("content", "output"):
            parts = item.get(key)
            if isinstance(parts, dict) and parts.get("file_id") is not None:
                yield parts["file_id"], f"input[{i}].{key}.file_id"
            elif isinstance(parts, list):
                for j, part in enumerate(parts):
                    if isinstance(part, dict) and part.get("file_id") is not None:
                        yield part["file_id"], f"input[{i}].{key}[{j}].file_id"


def _tool_files(tools: Any, where: str) -> Iterator[tuple[str, str]]:
    """The ``file_ids`` of a tool's new container (copied into it): a ``code_interpreter``'s
    ``container``, a ``shell`` tool's ``environment`` (``container_auto``), whatever the tool's
    type; and an ``image_generation`` tool's ``input_image_mask.file_id``."""
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        for key in ("container", "environment"):
            container = tool.get(key)
            if isinstance(container, dict) and isinstance(container.get("file_ids"), list):
                for k, file_id in enumerate(container["file_ids"]):
                    if file_id is not None:
                        yield file_id, f"{where}[{i}].{key}.file_ids[{k}]"
        mask = tool.get("input_image_mask")
        if isinstance(mask, dict) and mask.get("file_id") is not None:
            yield mask["file_id"], f"{where}[{i}].input_image_mask.file_id"
