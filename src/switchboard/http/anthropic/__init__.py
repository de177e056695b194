"""The Anthropic Messages API, inbound: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Any configured model, of any provider, can be called with the official Anthropic SDKs. See
docs/api-anthropic.md for the field mapping and its limits.
"""

from switchboard.http.anthropic.count_tokens import COUNT_TOKENS, AnthropicCountTokens
from switchboard.http.anthropic.messages import MESSAGES, AnthropicMessages

__all__ = ["COUNT_TOKENS", "MESSAGES", "AnthropicCountTokens", "AnthropicMessages"]
