"""The embeddings' retrieval hints, a canonical extension (docs/providers.md, "Canonical
extensions"): ``task_type``, what the vectors are for, by Google's names (Gemini's ``taskType``,
Vertex AI's ``task_type``), and ``title``, the title of each text embedded as a
``RETRIEVAL_DOCUMENT``: a string for every input, or an array with one string (or null) per input.

- ``gemini``: ``taskType`` and ``title`` on each request of ``batchEmbedContents``;
- ``vertex``: ``task_type`` and ``title`` on each ``:predict`` instance;
- ``cohere`` and Cohere's models on Bedrock: the task types with the same meaning become
  ``input_type`` (:data:`COHERE_INPUT_TYPES`); an explicit ``input_type`` wins; ``title`` has no
  equivalent;
- every other provider: accepted and not sent, as a hint about use (their models have none).

``TASK_TYPE_UNSPECIFIED`` asks for nothing and is not sent. Bad values are a 400 ``invalid_value``
whichever provider serves, so a misspelt hint is never silently ignored.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON

# Google's names, in the order the error lists them (Gemini and Vertex AI take the same ones).
TASK_TYPES = (
    "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
    "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY", "TASK_TYPE_UNSPECIFIED",
)
# Google only reads a title with this task type ("only applicable when TaskType is RETRIEVAL_DOCUMENT").
TITLED = "RETRIEVAL_DOCUMENT"
# The task types Cohere's ``input_type`` has an equivalent for; the others keep Cohere's default.
COHERE_INPUT_TYPES = {"RETRIEVAL_QUERY": "search_query", "RETRIEVAL_DOCUMENT": "search_document",
                      "CLASSIFICATION": "classification", "CLUSTERING": "clustering"}


def _invalid(param: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{param} {problem}", param=param, code="invalid_value")


def task_type(request: JSON) -> str | None:
    """The request's task type, None when it asks for none (absent, null or unspecified)."""
    value = request.get("task_type")
    if value is None:
        return None
    if not isinstance(value, str) or value not in TASK_TYPES:
        raise _invalid("task_type", f"must be one of {', '.join(TASK_TYPES)}")
    return None if value == "TASK_TYPE_UNSPECIFIED" else value


def _count(inputs: Any) -> int:
    """How many texts ``input`` holds (a token array is one)."""
    if isinstance(inputs, list) and inputs and not all(isinstance(x, int) for x in inputs):
        return len(inputs)
    return 1


def titles(request: JSON) -> list[str | None] | None:
    """One title (or None) per input, None when the request has no title; checked as
    :func:`check` does."""
    value = request.get("title")
    if value is None:
        return None
    count = _count(request.get("input"))
    if isinstance(value, str):
        found: list[str | None] = [value] * count
    elif isinstance(value, list) and all(t is None or isinstance(t, str) for t in value):
        if len(value) != count:
            raise _invalid("title", f"must hold one title per input ({count}), not {len(value)}")
        found = list(value)
    else:
        raise _invalid("title", "must be a string or an array of strings, one per input")
    if any(t is not None for t in found) and task_type(request) != TITLED:
        raise _invalid("title", f"is only taken with task_type {TITLED}")
    return found


def check(request: JSON) -> None:
    """A 400 for a bad ``task_type`` or ``title``, before any provider is chosen."""
    task_type(request)
    titles(request)


def hints(request: JSON, count: int) -> list[JSON]:
    """Per input, Google's hint fields as Vertex AI names them (``task_type``, ``title``)."""
    kind = task_type(request)
    named = titles(request) or [None] * count
    out: list[JSON] = []
    for i in range(count):
        item: JSON = {}
        if kind is not None:
            item["task_type"] = kind
        if i < len(named) and named[i] is not None:
            item["title"] = named[i]
        out.append(item)
    return out


def cohere_input_type(request: JSON) -> str | None:
    """The Cohere ``input_type`` the task type means, None when it has no equivalent."""
    kind = task_type(request)
    return COHERE_INPUT_TYPES.get(kind) if kind is not None else None


def without_hints(request: JSON) -> JSON:
    """``request`` without the hints, for providers whose API has none (and may refuse unknown
    fields, as OpenAI's does)."""
    if "task_type" not in request and "title" not in request:
        return request
    return {k: v for k, v in request.items() if k not in ("task_type", "title")}
