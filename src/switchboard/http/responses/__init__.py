"""The OpenAI Responses API, inbound: ``POST /v1/responses`` (translated to every provider),
``POST /v1/responses/input_tokens`` (the count of its input), ``GET``/``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and ``POST /v1/responses/{id}/cancel``.

See docs/api-responses.md for what is translated, kept and refused.
"""

from switchboard.http.responses.api import STORED, ResponsesAPI, ResponsesInputTokens
from switchboard.http.responses.state import PREFIX, HistoryStage, Responses

__all__ = ["PREFIX", "STORED", "HistoryStage", "Responses", "ResponsesAPI", "ResponsesInputTokens"]
