"""The mock's Gemini and Vertex API: as strict as Google's, in Google's error format."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.testclient import TestClient

from switchboard.mock.app import create_mock_app
from switchboard.mock.gemini import signature

KEY = "AIza-mock-key"
URL = "/v1beta/models/gemini-2.5-flash:generateContent"
VERTEX = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
USER = {"role": "user", "parts": [{"text": "hi"}]}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_mock_app(api_key=KEY))


def post(client: TestClient, body: Any, url: str = URL, key: str | None = KEY) -> Any:
    return client.post(url, json=body, headers={"x-goog-api-key": key} if key else {})


def rejected(client: TestClient, body: Any, status: int = 400) -> str:
    answer = post(client, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == status and error["status"]
    return str(error["message"])


def test_answers_text(client: TestClient) -> None:
    body = post(client, {"contents": [USER]}).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"].endswith("You said: hi")
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"]["totalTokenCount"] > 0


def test_keys(client: TestClient) -> None:
    wrong = post(client, {"contents": [USER]}, key="nope")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert post(client, {"contents": [USER]}, key=None).json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [USER], "system": "x"}, 'Unknown name "system"'),
        ({"contents": [USER], "generationConfig": {"max_tokens": 3}}, 'Unknown name "max_tokens"'),
        (
            {"contents": [USER, {"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
            "function_response.name: Name cannot be empty",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "%%"}}]}
                ]
            },
            "Base64",
        ),
        (
            {
                "contents": [USER],
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "f", "parameters": {"type": "object", "additionalProperties": False}}
                        ]
                    }
                ],
            },
            'Unknown name "additionalProperties"',
        ),
        (
            {
                "contents": [USER],
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
            },
            "only be set when the Function calling mode is ANY",
        ),
    ],
)
def test_strict_rejections(client: TestClient, body: Any, expected: str) -> None:
    assert expected in rejected(client, body)


def test_gemini_3_requires_thought_signature(client: TestClient) -> None:
    call = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
    answer = {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
    url = "/v1beta/models/gemini-3-pro:generateContent"
    assert post(client, {"contents": [USER, call, answer]}, url).status_code == 400
    call["parts"][0]["thoughtSignature"] = signature("f")  # type: ignore[index]
    assert post(client, {"contents": [USER, call, answer]}, url).status_code == 200


def test_labels_exist_on_vertex_only(client: TestClient) -> None:
    assert 'Unknown name "labels"' in rejected(client, {"contents": [USER], "labels": {"team": "a"}})


def test_altered_thought_signature_is_refused(client: TestClient) -> None:
    altered = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}
    call = {"role": "model", "parts": [altered]}
    answer = {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
    assert "Corrupted thought signature" in rejected(client, {"contents": [USER, call, answer]})


def test_thinking_config_and_media_resolution_are_checked(client: TestClient) -> None:
    both = {"thinkingConfig": {"thinkingBudget": 10, "thinkingLevel": "low"}}
    assert "not supported together" in rejected(client, {"contents": [USER], "generationConfig": both})
    odd = {"mediaResolution": "TINY"}
    assert "media_resolution" in rejected(client, {"contents": [USER], "generationConfig": odd})
    low = {"mediaResolution": "MEDIA_RESOLUTION_LOW"}
    assert post(client, {"contents": [USER], "generationConfig": low}).status_code == 200


def test_thoughts_come_when_asked(client: TestClient) -> None:
    config = {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    answer = post(client, {"contents": [USER], "generationConfig": config}).json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[0]["text"] and "thought" not in parts[1]
    plain = post(client, {"contents": [USER]}).json()["candidates"][0]["content"]["parts"]
    assert all("thought" not in p for p in plain)


def test_function_call_then_answer(client: TestClient) -> None:
    tools = [
        {
            "functionDeclarations": [
                {
                    "name": "get",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"n": {"type": "INTEGER"}},
                        "required": ["n"],
                    },
                }
            ]
        }
    ]
    plain = post(client, {"contents": [USER], "tools": tools}).json()
    assert "thoughtSignature" not in plain["candidates"][0]["content"]["parts"][0]  # thinking off
    thinking = {"thinkingConfig": {"thinkingBudget": 512}}
    first = post(client, {"contents": [USER], "tools": tools, "generationConfig": thinking}).json()
    part = first["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"] == {"name": "get", "args": {"n": 1}}
    assert part["thoughtSignature"] == signature("get")
    reply = {"role": "user", "parts": [{"functionResponse": {"name": "get", "response": {"v": 2}}}]}
    second = post(
        client, {"contents": [USER, first["candidates"][0]["content"], reply], "tools": tools}
    ).json()
    assert second["candidates"][0]["content"]["parts"][0]["text"] == 'The tool returned: {"v":2}'


def test_parallel_calls_directive_answers_with_several_calls(client: TestClient) -> None:
    tools = [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]
    ask = {"role": "user", "parts": [{"text": "hi mock:parallel_calls=3"}]}
    thinking = {"thinkingConfig": {"thinkingBudget": 512}}
    body = post(client, {"contents": [ask], "tools": tools, "generationConfig": thinking}).json()
    parts = body["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["name"] for p in parts] == ["a", "b", "a"]
    assert [("thoughtSignature" in p) for p in parts] == [True, False, False]  # the step's first only


def test_faults_in_google_format(client: TestClient) -> None:
    limited = post(
        client, {"contents": [{"role": "user", "parts": [{"text": "mock:status=429 mock:retry_after=4"}]}]}
    )
    assert limited.status_code == 429
    assert limited.json()["error"]["details"][0]["retryDelay"] == "4s"
    assert "retry-after" not in limited.headers  # Google's hint is the RetryInfo alone
    text = "mock:status=429 mock:retry_after=4 mock:retry_header=in_a_while"
    proxied = post(client, {"contents": [{"role": "user", "parts": [{"text": text}]}]})
    assert proxied.headers["retry-after"] == "in a while"  # as given, beside the RetryInfo
    assert proxied.json()["error"]["details"][0]["retryDelay"] == "4s"
    safety = post(client, {"contents": [{"role": "user", "parts": [{"text": "mock:safety=1"}]}]}).json()
    assert safety["candidates"][0]["finishReason"] == "SAFETY" and "content" not in safety["candidates"][0]


def test_stream_is_sse(client: TestClient) -> None:
    url = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    answer = client.post(url, json={"contents": [USER]}, headers={"x-goog-api-key": KEY})
    events = [json.loads(line[6:]) for line in answer.text.split("\r\n\r\n") if line.startswith("data: ")]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events).endswith("You said: hi")
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _assertion(key: rsa.RSAPrivateKey, aud: str, kid: str = "kid1", lifetime: int = 3600) -> str:
    now = int(time.time())
    claims = {
        "iss": "sa@p.iam",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
    }
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    signing = f"{head}.{_b64(json.dumps(claims).encode())}"
    return f"{signing}.{_b64(key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256()))}"


def test_vertex_token_flow(client: TestClient) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    aud = "http://testserver/vertex/token"
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

    def token(assertion: str) -> Any:
        return client.post("/vertex/token", data={"grant_type": grant, "assertion": assertion})

    assert (
        token(_assertion(key, aud)).json()["error_description"] == "Invalid JWT Signature."
    )  # not published
    published = {"client_email": "sa@p.iam", "private_key_id": "kid1", "public_key_pem": public.decode()}
    assert client.post("/vertex/keys", json=published).status_code == 204
    assert "aud" in token(_assertion(key, "https://elsewhere/token")).json()["error_description"]
    assert "short-lived" in token(_assertion(key, aud, lifetime=7200)).json()["error_description"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert token(_assertion(other, aud)).json()["error_description"] == "Invalid JWT Signature."
    issued = token(_assertion(key, aud)).json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] > 3000
    assert client.post(VERTEX, json={"contents": [USER]}).json()["error"]["status"] == "UNAUTHENTICATED"
    ok = client.post(  # labels are Vertex AI's own field
        VERTEX, json={"contents": [USER], "labels": {"team": "a"}},
        headers={"authorization": f"Bearer {issued['access_token']}"},
    )
    assert ok.status_code == 200 and ok.json()["candidates"]


def test_safety_settings_are_checked_as_google_does(client: TestClient) -> None:
    good = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    assert post(client, {"contents": [USER], "safetySettings": good}).status_code == 200
    assert "threshold" in rejected(client, {"contents": [USER], "safetySettings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_SOME"}]})
    assert "category" in rejected(client, {"contents": [USER], "safetySettings": [
        {"category": "VIOLENCE", "threshold": "BLOCK_NONE"}]})
    assert "Unknown name" in rejected(client, {"contents": [USER], "safetySettings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF", "level": 1}]})
    # method is a Vertex AI field: the Gemini API does not know it.
    assert "Unknown name" in rejected(client, {"contents": [USER], "safetySettings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF", "method": "SEVERITY"}]})


@pytest.mark.parametrize("dims", [0, 3073, 10**8, 2**64 - 1, True, 8.0])
def test_embedding_dimensions_no_model_has_are_refused(client: TestClient, dims: Any) -> None:
    """Such a vector was built: 10**8 held gigabytes (the built-in mock runs in the gateway's
    process), 2**64 - 1 was a 500."""
    embed = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    item = {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hi"}]},
            "outputDimensionality": dims}
    refused = post(client, {"requests": [item]}, embed)
    assert refused.status_code == 400 and "an integer from 1 to 3072" in refused.json()["error"]["message"]
    keyless = TestClient(create_mock_app())  # Vertex's :predict, its token not checked
    predict = VERTEX.replace("gemini-2.5-flash:generateContent", "text-embedding-005:predict")
    body = {"instances": [{"content": "hi"}], "parameters": {"outputDimensionality": dims}}
    refused = keyless.post(predict, json=body)
    assert refused.status_code == 400 and "an integer from 1 to 3072" in refused.json()["error"]["message"]
    widest = post(client, {"requests": [{**item, "outputDimensionality": 3072}]}, embed)
    assert len(widest.json()["embeddings"][0]["values"]) == 3072
