"""``/v1/messages/batches``: JSON in and out, errors in Anthropic's shape. The operations are
the files edge's (http/files/edge.py) and their terminal http/files/message_batches.py.

Anthropic's Files API (beta) is not served: a ``/v1/files`` request carrying
``anthropic-version`` is answered with an Anthropic-shaped error saying so (``ANTHROPIC_FILES``),
never the OpenAI files API's shapes."""

from __future__ import annotations

from switchboard.http.anthropic.json_inbound import AnthropicJson

MESSAGE_BATCHES = AnthropicJson("batches")
ANTHROPIC_FILES = AnthropicJson("files")
