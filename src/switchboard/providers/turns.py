"""How adapters keep a conversation's order and turns where the provider's format cannot say it
directly (Anthropic, Bedrock Converse, Gemini): one wording for all of them.

- A system (or developer) message after the conversation has started stays where it is, as text
  of a user turn starting with :data:`SYSTEM_MARK`: moving it to the top would change what it
  applies to.
- An assistant message with nothing to send keeps its turn with the text :data:`EMPTY_TURN`, so
  the user turns around it are not merged into one (a trailing one, a prefill of nothing, is
  left out).
"""

from __future__ import annotations

SYSTEM_MARK = "System: "
EMPTY_TURN = "(no content)"
