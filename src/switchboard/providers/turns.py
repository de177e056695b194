"""How adapters keep a conversation's order and turns where the provider's format cannot say it
directly (Anthropic, Bedrock Converse, Gemini; for a refusal also Cohere and Mistral): one
wording for all of them.

- A system (or developer) message after the conversation has started stays where it is, as text
  of a user turn starting with :data:`SYSTEM_MARK`: moving it to the top would change what it
  applies to.
- An assistant message with nothing to send keeps its turn with the text :data:`EMPTY_TURN`, so
  the user turns around it are not merged into one (a trailing one, a prefill of nothing, is
  left out).
- An assistant message whose only content is ``refusal`` (an earlier reply's refusal, which
  OpenAI takes in place of content) is read as a refusal part, which every translated type sends
  as the assistant's text: :func:`assistant_content`.
"""

from __future__ import annotations

from typing import Any

SYSTEM_MARK = "System: "
EMPTY_TURN = "(no content)"


def assistant_content(msg: dict[str, Any]) -> Any:
    """The content of an assistant message; when it has none (absent or null), its ``refusal``
    text as one refusal part. OpenAI's own refused replies carry ``content: null`` and the text in
    ``refusal``, and clients send them back as they came: without this the turn would reach a
    translated provider empty. A refusal next to content is not looked at (content wins)."""
    content = msg.get("content")
    if content is None and isinstance(msg.get("refusal"), str):
        return [{"type": "refusal", "refusal": msg["refusal"]}]
    return content
