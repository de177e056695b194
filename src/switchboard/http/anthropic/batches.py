"""``/v1/messages/batches``: JSON in and out, errors in Anthropic's shape. The operations are
the files edge's (http/files/edge.py) and their terminal http/files/message_batches.py."""

from __future__ import annotations

from switchboard.http.anthropic.json_inbound import AnthropicJson

MESSAGE_BATCHES = AnthropicJson("batches")
