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
- A tool message whose ``tool_call_id`` names no call of an earlier assistant message is a 400
  naming ``messages[i].tool_call_id`` where the provider refuses such a result (Anthropic: "each
  tool_result block must have a corresponding tool_use block in the previous message"; Bedrock
  Converse, Mistral and Cohere likewise, Cohere's error reference: "tool call id not found in
  previous tool calls"; Gemini needs the call's function name): :func:`check_answers`. A result
  that follows another turn than its call's is left to the provider, which says so itself.
- A conversation left with no turn at all (its only user text blank, or only system messages)
  is a 400 naming ``messages``, where the provider would refuse an empty list naming its own
  field (Anthropic "at least one message is required", Converse "The messages field is
  required"): :func:`require_turns`.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from switchboard.errors import InvalidRequest

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


def call_ids(msg: dict[str, Any]) -> list[str]:
    """The ids of an assistant message's tool calls (those that have one)."""
    calls = msg.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str) and c["id"]]


def check_answers(msg: dict[str, Any], i: int, calls: Container[str], provider_type: str) -> None:
    """A 400 naming ``messages[i].tool_call_id`` when the tool message ``msg`` answers none of
    ``calls`` (the ids of the tool calls made before it), instead of the provider's refusal of
    the translated request. A missing or empty id is left to the adapter's own check."""
    call_id = msg.get("tool_call_id")
    if isinstance(call_id, str) and call_id and call_id not in calls:
        raise InvalidRequest(
            f"'messages[{i}].tool_call_id' ({call_id[:80]!r}) answers no tool call of an earlier "
            f"assistant message: provider type '{provider_type}' refuses a tool result without "
            "its call; send the assistant message with that call, or leave the result out",
            param=f"messages[{i}].tool_call_id",
            code="invalid_value",
        )


def require_turns(turns: list[Any], provider_type: str) -> None:
    """A 400 naming ``messages`` when the translated conversation has no turn to send."""
    if not turns:
        raise InvalidRequest(
            f"'messages' has nothing to send to provider type '{provider_type}': every user message is "
            "empty or whitespace only (blank text is left out); send at least one message with content",
            param="messages",
            code="invalid_value",
        )


def check_results(messages: list[dict[str, Any]], provider_type: str) -> None:
    """:func:`check_answers` over a whole conversation, for adapters that need nothing else from
    the walk."""
    calls: set[str] = set()
    for i, msg in enumerate(messages):
        if msg.get("role") == "assistant":
            calls.update(call_ids(msg))
        elif msg.get("role") == "tool":
            check_answers(msg, i, calls, provider_type)
