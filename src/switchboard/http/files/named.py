"""The file ids a model request names in its content parts, with the path of each: read by the
check of a single request (references.py) and of a batch's input lines (batch_access.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def chat_files(messages: Any) -> Iterator[tuple[str, str]]:
    """(file id, param) of the canonical messages' ``file`` parts."""
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "file" and isinstance(part.get("file"), dict):
                file_id = part["file"].get("file_id")
                if file_id is not None:
                    yield file_id, f"messages[{i}].content[{j}].file.file_id"


def responses_files(items: Any) -> Iterator[tuple[str, str]]:
    """(file id, param) of a Responses request's input parts (``input_file``, ``input_image``)."""
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("file_id") is not None:
                yield part["file_id"], f"input[{i}].content[{j}].file_id"
