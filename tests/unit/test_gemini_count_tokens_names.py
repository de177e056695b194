"""A refusal of a ``countTokens`` request's messages names the caller's ``contents[i]...``, as a
``generateContent`` refusal does (http/gemini/sources.py), not the chat form's ``messages[k]``.

No stage of the count chain refuses a message today, so one is added at the end of each chain
here: it refuses the last chat message's image part, as an adapter or upstream names a part."""

from __future__ import annotations

import httpx
import pytest

from switchboard.app import SwitchboardApp
from switchboard.context import RequestContext, Result
from switchboard.errors import InvalidRequest
from switchboard.gateway import Gateway
from switchboard.pipeline.chain import Handler, Stage
from switchboard.settings.loader import validate

MASTER = "sk-master-key-for-tests"
CONTENTS = [{"role": "user", "parts": [{"text": "hello"}]},
            {"role": "model", "parts": [{"text": "hi"}]},
            {"role": "user", "parts": [{"text": "look"},
                                       {"inlineData": {"mimeType": "image/png", "data": "aGk="}}]}]
SYSTEM = {"parts": [{"text": "Be brief."}]}


async def _refuse(ctx: RequestContext, call_next: Handler) -> Result:
    last = f"messages[{len(ctx.request['messages']) - 1}].content[1]"  # the image part
    raise InvalidRequest(f"{last}: image type 'image/png' is not taken here", param=last)


class _Refusing:
    name = "refuse"
    __call__ = staticmethod(_refuse)


class RefusingGateway(Gateway):
    def operation_stages(self, operation: str) -> list[Stage]:
        return [*super().operation_stages(operation), _Refusing()]


@pytest.fixture
async def http() -> httpx.AsyncClient:
    settings = validate(
        {
            "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
            "models": [{"name": "m", "provider": "p", "model": "m"}],
            "auth": {"master_key": MASTER},
        },
        "test",
        env={},
    )
    app = SwitchboardApp(settings, RefusingGateway(settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.mark.parametrize(("method", "body", "named"), [
    ("generateContent", {"contents": CONTENTS}, "contents[2].parts[1]"),
    ("countTokens", {"contents": CONTENTS}, "contents[2].parts[1]"),
    ("generateContent", {"systemInstruction": SYSTEM, "contents": CONTENTS}, "contents[2].parts[1]"),
    # A whole request: its system instruction is the first chat message; the path is the one sent.
    ("countTokens", {"generateContentRequest": {"systemInstruction": SYSTEM, "contents": CONTENTS}},
     "generateContentRequest.contents[2].parts[1]"),
])
async def test_a_refused_message_names_the_gemini_part_on_every_method(
    http: httpx.AsyncClient, method: str, body: dict[str, object], named: str
) -> None:
    resp = await http.post(f"/v1beta/models/m:{method}", json=body, headers={"x-goog-api-key": MASTER})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["message"] == f"{named}: image type 'image/png' is not taken here"
