"""The Anthropic Messages inbound API (implemented in the ``switchboard.http.anthropic`` package)."""

from __future__ import annotations

from switchboard.http.anthropic import MESSAGES, AnthropicMessages, CountTokensEndpoint

__all__ = ["MESSAGES", "AnthropicMessages", "CountTokensEndpoint"]
