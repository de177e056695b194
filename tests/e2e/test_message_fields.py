"""Message-level fields of a chat request (docs/providers.md, "Message fields"): passed to OpenAI
as written, refused by a provider that has no such field (a 400 naming the message's key), or
dropped there under ``drop_params``, never dropped in silence. Also an assistant turn that is only
an earlier refusal (sent as its text where translated), and system and assistant content parts a
provider takes only as text (a 400 naming the part)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

AUDIO = {"id": "audio_abc"}
REFUSED = "I can't help with that."
PIXEL = ("data:image/png;base64,"
         "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    stored = {"api_key": "${UPSTREAM_KEY}"}
    config: dict[str, Any] = {
        "providers": [
            # A single-tenant deployment: the audio reply named by id is the caller's own.
            {"name": "oa", "type": "openai", "api_base": f"{mock_upstream.url}/v1", **stored,
             "allow_account_objects": True},
            {"name": "claude", "type": "anthropic", "api_base": mock_upstream.url, **stored},
            {"name": "az", "type": "azure", "api_base": mock_upstream.url, **stored},
            {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, **stored},
            {"name": "co", "type": "cohere", "api_base": mock_upstream.url, **stored},
            {"name": "mi", "type": "mistral", "api_base": f"{mock_upstream.url}/mistral/v1", **stored},
            {"name": "aws", "type": "bedrock", "api_base": mock_upstream.url, "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1"},
        ],
        "models": [
            {"name": "gpt", "provider": "oa", "model": "gpt-4o-audio-preview"},
            {"name": "claude", "provider": "claude", "model": "claude-sonnet-4-5"},
            {"name": "azure", "provider": "az", "model": "my-gpt4o-deployment"},
            {"name": "claude-lenient", "provider": "claude", "model": "claude-sonnet-4-5",
             "drop_params": True},
            {"name": "gemini", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "cohere", "provider": "co", "model": "command-a-03-2025"},
            {"name": "mistral", "provider": "mi", "model": "mistral-small-latest"},
            {"name": "bedrock", "provider": "aws", "model": "anthropic.claude-3-7-sonnet-20250219-v1:0"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("message-fields"))
    yield gateway
    gateway.process.stop()


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def replaying_audio(marker: str) -> list[Any]:
    """A conversation whose assistant turn is only an earlier audio reply, named by its id (OpenAI
    takes such a message without content)."""
    return [{"role": "user", "content": f"say hi mock:capture={marker}"},
            {"role": "assistant", "audio": AUDIO},
            {"role": "user", "content": "and again"}]


def upstream_body(mock: Mock, marker: str) -> dict[str, Any]:
    (seen,) = captured(mock, marker, outcome="completed")
    assert seen["status"] == 200, seen
    body: dict[str, Any] = seen["body"]
    return body


def nothing_sent(mock: Mock, marker: str) -> None:
    # The refusal answered before any upstream call; a call would have been recorded before it.
    assert captured(mock, marker, timeout=0.2) == []


def refusal(client: openai.OpenAI, model: str, messages: list[Any]) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=messages)
    assert err.value.status_code == 400
    error = err.value.body
    assert isinstance(error, dict) and error["code"] == "unsupported_parameter", error
    assert error["type"] == "invalid_request_error"
    return error


def test_an_audio_reply_without_content_reaches_openai(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    resp = client.chat.completions.create(model="gpt", messages=replaying_audio(marker))
    assert resp.choices[0].message.content
    assert upstream_body(mock_upstream, marker)["messages"][1] == {"role": "assistant", "audio": AUDIO}


def test_an_audio_reply_is_refused_by_anthropic_naming_the_message(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    error = refusal(client, "claude", replaying_audio(marker))
    assert error["param"] == "messages[1].audio"
    assert "audio" in error["message"] and "'anthropic'" in error["message"]
    assert "drop_params" in error["message"]
    nothing_sent(mock_upstream, marker)


@pytest.mark.parametrize("drop", ["model", "request"])
def test_drop_params_keeps_the_assistant_turn_without_the_audio(
    client: openai.OpenAI, mock_upstream: Mock, drop: str
) -> None:
    marker = new_marker()
    model, extra = ("claude-lenient", None) if drop == "model" else ("claude", {"drop_params": True})
    resp = client.chat.completions.create(model=model, messages=replaying_audio(marker), extra_body=extra)
    assert resp.choices[0].message.content
    sent = upstream_body(mock_upstream, marker)
    assert "audio" not in str(sent["messages"])
    # The turn stays in place (empty, as any empty assistant turn), so the user turns stay apart.
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "(no content)"}]


def test_participant_names_reach_openai_and_are_refused_by_anthropic(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    messages: list[Any] = [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": f"hi mock:capture={marker}", "name": "ann"}]
    client.chat.completions.create(model="gpt", messages=messages)
    assert upstream_body(mock_upstream, marker)["messages"][1]["name"] == "ann"

    marker = new_marker()
    messages[1]["content"] = f"hi mock:capture={marker}"
    assert refusal(client, "claude", messages)["param"] == "messages[1].name"
    nothing_sent(mock_upstream, marker)

    client.chat.completions.create(model="claude-lenient", messages=messages)
    assert upstream_body(mock_upstream, marker)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": f"hi mock:capture={marker}"}]}]


def test_a_legacy_function_call_is_refused_by_anthropic(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    messages: list[Any] = [
        {"role": "user", "content": f"weather? mock:capture={marker}"},
        {"role": "assistant", "content": None, "function_call": {"name": "weather", "arguments": "{}"}},
        {"role": "user", "content": "well?"},
    ]
    assert refusal(client, "claude", messages)["param"] == "messages[1].function_call"
    nothing_sent(mock_upstream, marker)


# ---- an assistant turn that is only an earlier refusal -----------------------------------------


def replaying_refusal(marker: str) -> list[Any]:
    """A conversation whose assistant turn is an earlier refused reply as OpenAI returned it:
    content null, the text in ``refusal`` (OpenAI takes it back so)."""
    return [{"role": "user", "content": f"do the bad thing mock:capture={marker}"},
            {"role": "assistant", "content": None, "refusal": REFUSED},
            {"role": "user", "content": "then something else"}]


# Where each translated type's upstream body holds the assistant turn's text.
ASSISTANT_TEXT = {
    "claude": lambda body: body["messages"][1]["content"][0]["text"],
    "gemini": lambda body: body["contents"][1]["parts"][0]["text"],
    "bedrock": lambda body: body["messages"][1]["content"][0]["text"],
    "mistral": lambda body: body["messages"][1]["content"],
    "cohere": lambda body: body["messages"][1]["content"][0]["text"],
}


@pytest.mark.parametrize("model", list(ASSISTANT_TEXT))
def test_a_refusal_without_content_is_sent_as_the_assistants_text(
    client: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    resp = client.chat.completions.create(model=model, messages=replaying_refusal(marker))
    assert resp.choices[0].message.content
    assert ASSISTANT_TEXT[model](upstream_body(mock_upstream, marker)) == REFUSED


def test_a_refusal_without_content_reaches_openai_as_written(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    client.chat.completions.create(model="gpt", messages=replaying_refusal(marker))
    assert upstream_body(mock_upstream, marker)["messages"][1] == {
        "role": "assistant", "content": None, "refusal": REFUSED}


# ---- system and assistant content parts a provider takes only as text ----------------------------


def invalid(client: openai.OpenAI, model: str, messages: list[Any]) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=messages)
    error = err.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error", error
    return error


IMAGE = {"type": "image_url", "image_url": {"url": PIXEL}}
AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
FILE_PART = {"type": "file",
             "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}


@pytest.mark.parametrize("part", [IMAGE, AUDIO_PART, FILE_PART], ids=["image_url", "input_audio", "file"])
@pytest.mark.parametrize(("model", "role"), [("mistral", "system"), ("mistral", "assistant"),
                                             ("bedrock", "assistant")])
def test_non_text_parts_where_only_text_is_taken_are_refused_naming_the_part(
    client: openai.OpenAI, mock_upstream: Mock, model: str, role: str, part: dict[str, Any]
) -> None:
    """Mistral's system and assistant messages take text chunks only, Converse's assistant turns
    text only (images and documents in user turns): the part is refused, never left out."""
    marker = new_marker()
    said = {"role": role, "content": [{"type": "text", "text": "Look:"}, part]}
    asking = {"role": "user", "content": f"hi mock:capture={marker}"}
    messages: list[Any] = ([said, asking] if role == "system"
                           else [asking, said, {"role": "user", "content": "and?"}])
    index = 0 if role == "system" else 1
    error = invalid(client, model, messages)
    assert error["param"] == f"messages[{index}].content[1].type", error
    assert part["type"] in error["message"], error
    nothing_sent(mock_upstream, marker)


@pytest.mark.parametrize(("model", "role"), [("mistral", "system"), ("mistral", "assistant"),
                                             ("bedrock", "assistant")])
def test_text_and_refusal_parts_there_are_still_sent_as_text(
    client: openai.OpenAI, mock_upstream: Mock, model: str, role: str
) -> None:
    marker = new_marker()
    parts = [{"type": "text", "text": "Noted. "}, {"type": "refusal", "refusal": "No."}]
    if role == "system":
        messages: list[Any] = [{"role": "system", "content": parts[:1]},
                               {"role": "user", "content": f"hi mock:capture={marker}"}]
    else:
        messages = [{"role": "user", "content": f"hi mock:capture={marker}"},
                    {"role": "assistant", "content": parts}, {"role": "user", "content": "and?"}]
    client.chat.completions.create(model=model, messages=messages)
    sent = upstream_body(mock_upstream, marker)
    if model == "mistral":
        assert sent["messages"][0 if role == "system" else 1]["content"] == (
            "Noted. " if role == "system" else "Noted. No.")
    else:
        assert [b["text"] for b in sent["messages"][1]["content"]] == ["Noted. ", "No."]


# ---- keys inside messages and formats (tests/unit/test_sdk_params.py decides each) -------------


def replaying_custom_call(marker: str) -> list[Any]:
    """A conversation with an earlier call of an OpenAI custom (free-form) tool and its result."""
    return [{"role": "user", "content": f"run it mock:capture={marker}"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "custom", "custom": {"name": "shell", "input": "ls"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
            {"role": "user", "content": "and now?"}]


def test_a_custom_tool_call_reaches_openai_as_written(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    client.chat.completions.create(model="gpt", messages=replaying_custom_call(marker))
    assert upstream_body(mock_upstream, marker)["messages"][1]["tool_calls"][0]["custom"]["input"] == "ls"


@pytest.mark.parametrize("model", ["claude", "bedrock", "gemini", "cohere", "mistral"])
def test_a_custom_tool_call_is_refused_where_translated(
    client: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    """Before: a server error on Anthropic and Cohere, the call left out on Bedrock and Mistral."""
    marker = new_marker()
    error = refusal(client, model, replaying_custom_call(marker))
    assert error["param"] == "messages[1].tool_calls[0].type"
    assert "custom tool calls" in error["message"]
    nothing_sent(mock_upstream, marker)


def test_drop_params_removes_the_custom_call_and_its_result(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    client.chat.completions.create(model="claude-lenient", messages=replaying_custom_call(marker))
    sent = upstream_body(mock_upstream, marker)["messages"]
    assert "call_1" not in str(sent) and "a.txt" not in str(sent)
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]


_FORMAT: Any = {"type": "json_schema", "json_schema": {
    "name": "city", "description": "The capital city asked for",
    "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.mark.parametrize(("model", "path"), [
    ("gemini", ("generationConfig", "responseSchema", "description")),
    ("cohere", ("response_format", "json_schema", "description")),
    ("claude", ("tools", 0, "description")),  # the forced JSON tool
])
def test_the_json_schema_description_reaches_the_provider(
    client: openai.OpenAI, mock_upstream: Mock, model: str, path: tuple[Any, ...]
) -> None:
    marker = new_marker()
    client.chat.completions.create(model=model, response_format=_FORMAT,
                                   messages=[{"role": "user", "content": f"France? mock:capture={marker}"}])
    sent: Any = upstream_body(mock_upstream, marker)
    for key in path:
        sent = sent[key]
    assert sent == "The capital city asked for"


def test_a_file_name_is_not_sent_to_the_gemini_api(client: openai.OpenAI, mock_upstream: Mock) -> None:
    # The Gemini API's blob has no name field and refuses displayName (Vertex AI's takes it).
    marker = new_marker()
    client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": [
        {"type": "text", "text": f"summarise mock:capture={marker}"}, FILE_PART]}])
    parts = upstream_body(mock_upstream, marker)["contents"][0]["parts"]
    assert set(parts[1]["inlineData"]) == {"mimeType", "data"}


# LiteLLM's field for the media type of a URL; OpenAI's image_url has only url and detail.
TYPED_IMAGE = {"type": "image_url",
               "image_url": {"url": "https://img.example.com/cat?id=1", "format": "image/png"}}
PDF_BY_URL = {"type": "file", "file": {"file_data": "https://files.example.com/report?id=3",
                                      "format": "application/pdf"}}


@pytest.mark.parametrize("model", ["gpt", "azure"])
def test_an_image_urls_format_is_not_sent_to_openai(
    client: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"what is it? mock:capture={marker}"}, TYPED_IMAGE]}])
    image = upstream_body(mock_upstream, marker)["messages"][0]["content"][1]
    assert image == {"type": "image_url", "image_url": {"url": TYPED_IMAGE["image_url"]["url"]}}


def test_a_files_format_reaches_gemini_as_the_mime_type(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": [
        {"type": "text", "text": f"summarise mock:capture={marker}"}, PDF_BY_URL]}])
    parts = upstream_body(mock_upstream, marker)["contents"][0]["parts"]
    url = PDF_BY_URL["file"]["file_data"]
    assert parts[1] == {"fileData": {"mimeType": "application/pdf", "fileUri": url}}


@pytest.mark.parametrize("model", ["gpt", "azure"])
def test_a_file_by_url_is_refused_for_openai_naming_the_field(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": [PDF_BY_URL]}])
    assert info.value.param == "messages[0].content[0].file.file_data"
    assert "not by URL" in info.value.message
