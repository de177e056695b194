"""Image and file URLs read one way on every provider: the openai SDK -> gateway -> each
provider's mock (and the anthropic SDK for the Anthropic-format API's url sources).

URL schemes are case-insensitive (RFC 3986), and so are a data URL's media type and its
``;base64`` token: ``HTTPS://`` and ``DATA:IMAGE/PNG;BASE64,`` are accepted and go upstream in
the provider's own form, the scheme in lower case, and the token count sizes such an image as it
does a ``data:`` one. A data URL (an image's, a file's) or audio data that is not base64 is a 400
naming the part, before anything is sent.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway
from tests.unit.tokens.cases import data_url, png

PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEB_IMAGE = "https://images.example/cat.png"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def image_urls_config(mock: Mock) -> dict[str, Any]:
    key = "${UPSTREAM_KEY}"
    return {
        "providers": [
            {"name": "oa", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": key},
            {"name": "az", "type": "azure", "api_base": mock.url, "api_key": key},
            {"name": "vllm", "type": "openai-compatible", "preset": "vllm", "api_base": f"{mock.url}/v1",
             "api_key": key},
            {"name": "mi", "type": "mistral", "api_base": f"{mock.url}/mistral/v1", "api_key": key},
            {"name": "co", "type": "cohere", "api_base": mock.url, "api_key": key},
            {"name": "an", "type": "anthropic", "api_base": mock.url, "api_key": key},
            {"name": "br", "type": "bedrock", "api_base": mock.url, "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": key, "aws_region": "us-east-1"},
            {"name": "ge", "type": "gemini", "api_base": mock.url, "api_key": key},
        ],
        "models": [
            {"name": "openai", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "azure", "provider": "az", "model": "my-gpt4o-deployment"},
            {"name": "vllm", "provider": "vllm", "model": "mock-gpt"},
            {"name": "mistral", "provider": "mi", "model": "mistral-small-latest"},
            {"name": "cohere", "provider": "co", "model": "command-a-03-2025"},
            {"name": "anthropic", "provider": "an", "model": "claude-sonnet-4-5"},
            {"name": "bedrock", "provider": "br", "model": BEDROCK_MODEL},
            {"name": "gemini", "provider": "ge", "model": "gemini-2.5-flash"},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
    }


@pytest.fixture(scope="module")
def image_gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(image_urls_config(mock_upstream), tmp_path_factory.mktemp("image-urls"))
    yield gw
    gw.process.stop()


@pytest.fixture
def sdk(image_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=image_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


# The image part (the message's second part) as each provider's request carries it.
def _chat_image(body: dict[str, Any]) -> Any:
    return body["messages"][0]["content"][1]["image_url"]["url"]


def _anthropic_image(body: dict[str, Any]) -> Any:
    return body["messages"][0]["content"][1]["source"]


def _bedrock_image(body: dict[str, Any]) -> Any:
    return body["messages"][0]["content"][1]["image"]


def _gemini_image(body: dict[str, Any]) -> Any:
    return body["contents"][0]["parts"][1]["inlineData"]


SENT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "openai": _chat_image, "azure": _chat_image, "vllm": _chat_image, "mistral": _chat_image,
    "cohere": _chat_image, "anthropic": _anthropic_image, "bedrock": _bedrock_image, "gemini": _gemini_image,
}
# What the pixel (a data URL, in whatever case) becomes upstream.
INLINE_PIXEL: dict[str, Any] = {
    **dict.fromkeys(("openai", "azure", "vllm", "mistral", "cohere"), f"data:image/png;base64,{PIXEL_PNG}"),
    "anthropic": {"type": "base64", "media_type": "image/png", "data": PIXEL_PNG},
    "bedrock": {"format": "png", "source": {"bytes": PIXEL_PNG}},
    "gemini": {"mimeType": "image/png", "data": PIXEL_PNG},
}
# Providers whose upstream takes the URL and fetches it itself (so the mock may fetch it too).
BY_URL = ("openai", "azure", "vllm", "mistral", "anthropic")


def sent_image(mock: Mock, sdk: openai.OpenAI, model: str, url: str) -> Any:
    """The image part the provider received for a user message holding ``url``."""
    marker = new_marker()
    sdk.chat.completions.create(model=model, max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"What is this? mock:capture={marker}"},
        {"type": "image_url", "image_url": {"url": url}},
    ]}])
    (seen,) = captured(mock, marker)
    return SENT[model](seen["body"])


CASES = ["DATA:image/png;base64,", "data:IMAGE/PNG;base64,", "Data:Image/Png;BASE64,"]


@pytest.mark.parametrize("model", SENT)
@pytest.mark.parametrize("head", CASES)
def test_a_data_url_is_read_whatever_its_case(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, head: str
) -> None:
    assert sent_image(mock_upstream, sdk, model, head + PIXEL_PNG) == INLINE_PIXEL[model]


@pytest.mark.parametrize("model", BY_URL)
def test_an_upper_case_https_url_is_sent_as_a_url(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    sent = sent_image(mock_upstream, sdk, model, "HTTPS://images.example/cat.png")
    assert sent == ({"type": "url", "url": WEB_IMAGE} if model == "anthropic" else WEB_IMAGE)


@pytest.mark.parametrize("model", ["cohere", "bedrock", "gemini"])
def test_an_upper_case_http_url_is_fetched_where_the_provider_needs_it(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    # Bedrock and Gemini get the bytes (the gateway fetches them); Cohere fetches the URL itself.
    url = f"HTTP://127.0.0.1:{mock_upstream.port}/images/pixel.png"
    sent = sent_image(mock_upstream, sdk, model, url)
    if model == "cohere":
        assert sent == url.replace("HTTP://", "http://")
    else:
        assert set(sent) == set(INLINE_PIXEL[model])


BAD_DATA_URLS = {
    "not base64": "data:image/png;base64,not base64!",
    "bad padding": "data:image/png;base64,iVBORw0KGgo",
    "no data": "data:image/png;base64,",
    "not base64-encoded": "data:image/png,rawbytes",
}


@pytest.mark.parametrize("model", SENT)
@pytest.mark.parametrize("url", BAD_DATA_URLS.values(), ids=list(BAD_DATA_URLS))
def test_a_data_url_that_is_not_base64_is_a_400_naming_the_part(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, url: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": [
            {"type": "text", "text": f"What is this? mock:capture={marker}"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}])
    assert exc.value.status_code == 400
    assert exc.value.param == "messages[0].content[1].image_url.url"
    assert "data URL" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


def test_an_upper_case_url_source_on_the_anthropic_api_reaches_another_provider(
    image_gateway: Gateway, mock_upstream: Mock
) -> None:
    client = anthropic.Anthropic(base_url=image_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    marker = new_marker()
    client.messages.create(model="openai", max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"What is this? mock:capture={marker}"},
        {"type": "image", "source": {"type": "url", "url": "HTTPS://images.example/cat.png"}},
    ]}])
    (seen,) = captured(mock_upstream, marker)
    assert _chat_image(seen["body"]) == WEB_IMAGE


# -- the token count reads a data URL in any case ----------------------------------------------------


def test_an_upper_case_data_url_is_counted_at_its_real_size(sdk: openai.OpenAI) -> None:
    # 1000 x 500 is 2 tiles at high detail; a size not read from the image is assumed 1024 x 1024 (4).
    image = data_url("image/png", png(1000, 500))

    def counted(url: str) -> int:
        return sdk.responses.input_tokens.count(model="openai", input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": url, "detail": "high"}]}]).input_tokens

    lower = counted(image)
    assert counted("DATA:" + image.removeprefix("data:")) == lower
    assert counted("Data:IMAGE/PNG;BASE64," + image.split(",", 1)[1]) == lower
    assert counted(WEB_IMAGE) == lower + 2 * 5667  # gpt-4o-mini's tile cost, 2 more tiles


# -- audio and file data: base64 checked before the call -------------------------------------------------

WAV = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt ").decode()
PDF = base64.b64encode(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n").decode()
# The providers that take input_audio parts, and what each sends upstream for one.
AUDIO_SENT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "openai": lambda body: body["messages"][0]["content"][1]["input_audio"],
    "azure": lambda body: body["messages"][0]["content"][1]["input_audio"],
    "vllm": lambda body: body["messages"][0]["content"][1]["input_audio"],
    "gemini": lambda body: body["contents"][0]["parts"][1]["inlineData"],
}
AUDIO_UPSTREAM: dict[str, Any] = {
    **{model: {"data": WAV, "format": "wav"} for model in ("openai", "azure", "vllm")},
    "gemini": {"mimeType": "audio/wav", "data": WAV},
}
# The providers that take file parts with a data URL, and what each sends upstream for one.
FILE_SENT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "openai": lambda body: body["messages"][0]["content"][1]["file"]["file_data"],
    "azure": lambda body: body["messages"][0]["content"][1]["file"]["file_data"],
    "vllm": lambda body: body["messages"][0]["content"][1]["file"]["file_data"],
    "anthropic": lambda body: body["messages"][0]["content"][1]["source"],
    "gemini": lambda body: body["contents"][0]["parts"][1]["inlineData"],
}
FILE_UPSTREAM: dict[str, Any] = {
    **dict.fromkeys(("openai", "azure", "vllm"), f"data:application/pdf;base64,{PDF}"),
    "anthropic": {"type": "base64", "media_type": "application/pdf", "data": PDF},
    "gemini": {"mimeType": "application/pdf", "data": PDF},
}


def _ask(sdk: openai.OpenAI, model: str, part: dict[str, Any], marker: str) -> None:
    sdk.chat.completions.create(model=model, max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"What is this? mock:capture={marker}"}, part]}])  # type: ignore[list-item]


@pytest.mark.parametrize("model", AUDIO_SENT)
def test_audio_data_goes_upstream(sdk: openai.OpenAI, mock_upstream: Mock, model: str) -> None:
    marker = new_marker()
    _ask(sdk, model, {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}, marker)
    (seen,) = captured(mock_upstream, marker)
    assert AUDIO_SENT[model](seen["body"]) == AUDIO_UPSTREAM[model]


@pytest.mark.parametrize("model", FILE_SENT)
def test_an_upper_case_file_data_url_goes_upstream_in_the_providers_form(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    file = {"file_data": f"DATA:Application/PDF;BASE64,{PDF}", "filename": "a.pdf"}
    _ask(sdk, model, {"type": "file", "file": file}, marker)
    (seen,) = captured(mock_upstream, marker)
    assert FILE_SENT[model](seen["body"]) == FILE_UPSTREAM[model]


BAD_BASE64 = {"not base64": "not base64!", "bad padding": "UklGRg", "url-safe": "ab-_", "empty": ""}


@pytest.mark.parametrize("model", AUDIO_SENT)
@pytest.mark.parametrize("data", BAD_BASE64.values(), ids=list(BAD_BASE64))
def test_audio_data_that_is_not_base64_is_a_400_naming_the_part(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, data: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        _ask(sdk, model, {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}, marker)
    assert exc.value.status_code == 400 and exc.value.code == "invalid_value"
    assert exc.value.param == "messages[0].content[1].input_audio.data"
    assert "base64" in exc.value.message or "no data" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


MISSING_FORMAT = {"left out": ({"data": WAV}, "missing_required_parameter"),
                  "null": ({"data": WAV, "format": None}, "missing_required_parameter"),
                  "empty": ({"data": WAV, "format": ""}, "invalid_value"),
                  "a number": ({"data": WAV, "format": 3}, "invalid_value")}


@pytest.mark.parametrize("model", AUDIO_SENT)
@pytest.mark.parametrize(("audio", "code"), MISSING_FORMAT.values(), ids=list(MISSING_FORMAT))
def test_audio_without_a_format_is_a_400_naming_the_format(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, audio: dict[str, Any], code: str
) -> None:
    # OpenAI requires input_audio.format; without one Gemini was sent mimeType "audio/None".
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        _ask(sdk, model, {"type": "input_audio", "input_audio": audio}, marker)
    assert exc.value.status_code == 400 and exc.value.code == code
    assert exc.value.param == "messages[0].content[1].input_audio.format"
    assert "format" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


@pytest.mark.parametrize("model", FILE_SENT)
@pytest.mark.parametrize("url", BAD_DATA_URLS.values(), ids=list(BAD_DATA_URLS))
def test_a_file_data_url_that_is_not_base64_is_a_400_naming_the_part(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, url: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        _ask(sdk, model, {"type": "file", "file": {"file_data": url.replace("image/png", "application/pdf"),
                                                   "filename": "a.pdf"}}, marker)
    assert exc.value.status_code == 400 and exc.value.code == "invalid_value"
    assert exc.value.param == "messages[0].content[1].file.file_data"
    assert "data URL" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


# The providers that send a binary document part in a file block of their own (providers/documents.py).
DOCUMENT_SENT = ("gemini", "bedrock")
BAD_DOCUMENTS = {"not base64": "not base64!", "padding past the data": PDF + "=", "url-safe": "ab-_"}


@pytest.mark.parametrize("model", DOCUMENT_SENT)
@pytest.mark.parametrize("data", BAD_DOCUMENTS.values(), ids=list(BAD_DOCUMENTS))
def test_a_binary_document_that_is_not_base64_is_a_400_naming_its_data(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str, data: str
) -> None:
    marker = new_marker()
    source = {"type": "base64", "media_type": "application/pdf", "data": data}
    with pytest.raises(openai.BadRequestError) as exc:
        _ask(sdk, model, {"type": "document", "document": {"source": source}}, marker)
    assert exc.value.status_code == 400
    assert exc.value.param == "messages[0].content[1].document.source.data"
    assert "document data is not valid base64" in exc.value.message
    assert captured(mock_upstream, marker, timeout=0.2) == []


@pytest.mark.parametrize("model", DOCUMENT_SENT)
def test_a_binary_document_goes_upstream_as_written(
    sdk: openai.OpenAI, mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    source = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    _ask(sdk, model, {"type": "document", "document": {"source": source, "title": "Report"}}, marker)
    (seen,) = captured(mock_upstream, marker)
    sent = (seen["body"]["contents"][0]["parts"][1]["inlineData"]["data"] if model == "gemini"
            else seen["body"]["messages"][0]["content"][1]["document"]["source"]["bytes"])
    assert sent == PDF


# -- document URLs (the Anthropic-format API's url sources) --------------------------------------------


DOCUMENT_URL = {"type": "url", "url": "HTTPS://docs.example/Report.pdf"}
SENT_DOCUMENT_URL = {"type": "url", "url": "https://docs.example/Report.pdf"}


def test_upper_case_url_sources_reach_anthropic_in_lower_case(
    image_gateway: Gateway, mock_upstream: Mock
) -> None:
    # The Messages API to an anthropic deployment: the body passed through, its URLs' schemes lowered.
    client = anthropic.Anthropic(base_url=image_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    marker = new_marker()
    client.messages.create(model="anthropic", max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"Summarise. mock:capture={marker}"},
        {"type": "document", "source": DOCUMENT_URL},  # type: ignore[list-item, typeddict-item]
        {"type": "image", "source": {"type": "url", "url": "Https://images.example/cat.png"}},
    ]}])
    (seen,) = captured(mock_upstream, marker)
    content = seen["body"]["messages"][0]["content"]
    assert content[1]["source"] == SENT_DOCUMENT_URL
    assert content[2]["source"] == {"type": "url", "url": WEB_IMAGE}


def test_an_upper_case_document_url_of_a_chat_request_reaches_anthropic_in_lower_case(
    sdk: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    _ask(sdk, "anthropic", {"type": "document", "document": {"source": DOCUMENT_URL}}, marker)
    (seen,) = captured(mock_upstream, marker)
    assert seen["body"]["messages"][0]["content"][1]["source"] == SENT_DOCUMENT_URL
