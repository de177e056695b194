"""A ``response_format`` json_schema's ``description`` for providers whose structured output
takes a schema alone (Gemini's responseSchema, Cohere's json_schema, Anthropic's
output_config.format).

OpenAI reads the description as what the response format is for, to decide how to answer in it;
a schema's own top-level ``description`` tells the model the same, so that is where it goes
(after the schema's own, when it has one), rather than being left out.
"""

from __future__ import annotations

from typing import Any


def described_schema(spec: Any) -> dict[str, Any] | None:
    """``spec["schema"]`` (``spec`` is the ``json_schema`` object) with ``spec["description"]``
    folded into its description; None when there is no schema object."""
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        return None
    schema: dict[str, Any] = spec["schema"]
    description = spec.get("description")
    if not isinstance(description, str) or not description:
        return schema
    own = schema.get("description")
    if isinstance(own, str) and own:
        description = f"{description}\n\n{own}"
    return {**schema, "description": description}
