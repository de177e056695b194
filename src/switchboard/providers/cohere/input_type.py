"""Cohere Embed's ``input_type`` (what the texts are for), one check for Cohere's own API and for
Cohere's models on Bedrock: both take one of the same four names as a string
(https://docs.cohere.com/reference/embed, https://docs.aws.amazon.com/bedrock/latest/userguide/
model-parameters-embed.html). OpenAI's API has no such field: it comes as an extra body field."""

from __future__ import annotations

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON
from switchboard.providers.embedding_task import cohere_input_type

# The names both APIs take for text (Cohere's "image" is for image inputs, which neither adapter
# sends); the order is the one the error lists them in.
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


def input_type(request: JSON, default: str) -> str:
    """The request's ``input_type``; when it sent none, the one its ``task_type`` means
    (providers/embedding_task.py), else ``default``. Anything else than one of ``INPUT_TYPES``
    (another name, or not a string at all) is a 400 naming it, rather than sent on for the
    provider to refuse, or silently replaced by the default."""
    value = request.get("input_type")
    if value is None:
        return cohere_input_type(request) or default
    if not isinstance(value, str) or value not in INPUT_TYPES:  # an array cannot be looked up
        raise InvalidRequest(f"input_type must be one of {', '.join(INPUT_TYPES)}", param="input_type",
                             code="invalid_value")
    return value
