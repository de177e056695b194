"""How a refusal's chat ``param`` is named for a Gemini API caller (http/gemini/sources.py), for
the names the end-to-end tests cannot make an adapter or upstream give
(tests/e2e/test_refusal_names.py drives the refusals themselves)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.http.gemini.request import generate_request
from switchboard.http.gemini.sources import contents_param

BODY: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "a"}, {"text": "b"}]},
    "contents": [
        {"role": "user", "parts": [{"text": "q"}]},
        {"role": "model", "parts": [
            {"text": "calling"},
            {"functionCall": {"name": "f", "args": {}}},
            {"functionCall": {"id": "c2", "name": "g", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "f", "response": {"r": 1}}},
            {"functionResponse": {"id": "c2", "name": "g", "response": {"r": 2}}},
            {"text": "thinking", "thought": True},
            {"text": "look"},
            {"inlineData": {"mimeType": "image/png", "data": "aGk="}},
            {"fileData": {"fileUri": "https://example.com/d.pdf", "mimeType": "application/pdf"}},
        ]},
    ],
}


@pytest.mark.parametrize(("param", "named"), [
    ("messages[0]", "systemInstruction"),
    ("messages[0].content", "systemInstruction"),
    ("messages[1]", "contents[0]"),
    ("messages[1].role", "contents[0].role"),
    ("messages[1].content", "contents[0].parts[0].text"),  # a lone text part
    ("messages[2].content", "contents[1].parts[0].text"),
    ("messages[2].tool_calls[0].function.arguments", "contents[1].parts[1].functionCall.args"),
    ("messages[2].tool_calls[0].id", "contents[1].parts[1].functionCall"),  # an id the gateway made
    ("messages[2].tool_calls[1].id", "contents[1].parts[2].functionCall.id"),
    ("messages[2].tool_calls[1].function.name", "contents[1].parts[2].functionCall.name"),
    ("messages[3].tool_call_id", "contents[2].parts[0].functionResponse.name"),  # paired by name
    ("messages[4].tool_call_id", "contents[2].parts[1].functionResponse.id"),
    ("messages[4].content", "contents[2].parts[1].functionResponse.response"),
    # The user message after the tool messages: the thought is not sent, so its parts are the
    # text, the image and the file.
    ("messages[5].content", "contents[2].parts"),
    ("messages[5].content[0].text", "contents[2].parts[3].text"),
    ("messages[5].content[1]", "contents[2].parts[4]"),
    ("messages[5].content[1].image_url.url", "contents[2].parts[4].inlineData"),
    ("messages[5].content[2].file.file_data", "contents[2].parts[5].fileData.fileUri"),
    ("messages[5].content[2].file.format", "contents[2].parts[5].fileData.mimeType"),
    ("messages[5].content[2].type", "contents[2].parts[5].fileData"),
    ("messages[5].content[7]", "contents[2].parts"),
    ("messages[6]", None),  # a message the request did not come with
    # An OpenAI-type upstream's forms.
    ("messages.[5].content.[1].image_url.url", "contents[2].parts[4].inlineData"),
    ("messages.2.tool_calls.0.function.arguments", "contents[1].parts[1].functionCall.args"),
    ("tools[0].function.name", None),
])
def test_a_chat_param_is_named_by_the_part_it_came_from(param: str, named: str | None) -> None:
    decoded = generate_request(orjson.dumps(BODY), "m", False)
    upstream = not param.startswith("messages[") and param.startswith("messages")
    assert contents_param(param, decoded.request["messages"], decoded.sources, upstream=upstream) == named
