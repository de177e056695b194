"""Objects of the provider account named in a model request (docs/access.md, "Objects of the
provider account"): the gateway calls providers with its own credential, one account (or cloud
identity) shared by every caller, so a request naming a file, store or storage URI of that account
is refused before anything is sent, on the translated path and the Anthropic pass-through, unless
it carries the caller's own provider credential. Inline data and public URLs keep working, and the
images the gateway fetches itself follow the egress rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.e2e.test_provider_vertex import EMAIL, write_service_account
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
HEADER = "x-provider-authorization"
FILES_URI = "https://generativelanguage.googleapis.com/v1beta/files/abc123"
DATA_SOURCES = [{"type": "azure_search", "parameters": {
    "endpoint": "https://other-tenant.search.windows.net", "index_name": "contracts",
    "authentication": {"type": "system_assigned_managed_identity"}}}]
FILE_ID = "file_011CNha8iCJcU1wXNR6q4V8w"
FILE_DOCUMENT = {"type": "document", "document": {"source": {"type": "file", "file_id": FILE_ID}}}
STORAGE_URL = "https://storage.googleapis.com/operator-bucket/report.pdf"
AUDIO = {"id": "audio_someone_elses"}
SEARCH_TOOL = {"type": "file_search", "vector_store_ids": ["vs_someone_elses"]}


@pytest.fixture(scope="module")
def world(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    folder: Path = tmp_path_factory.mktemp("account-objects")
    write_service_account(folder / "sa.json", mock_upstream, EMAIL, publish=True)
    byo = {"api_key": "${UPSTREAM_KEY}", "allow_caller_credentials": True}
    stored = {"api_key": "${UPSTREAM_KEY}"}
    config: dict[str, Any] = {
        "providers": [
            {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, **stored},
            {"name": "studio-byo", "type": "gemini", "api_base": mock_upstream.url, **byo},
            {"name": "vertex", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "vertex_location": "us-central1",
             "credentials_file": str(folder / "sa.json")},
            {"name": "claude", "type": "anthropic", "api_base": mock_upstream.url, **stored},
            {"name": "claude-byo", "type": "anthropic", "api_base": mock_upstream.url, **byo},
            {"name": "az", "type": "azure", "api_base": mock_upstream.url, **stored},
            {"name": "az-byo", "type": "azure", "api_base": mock_upstream.url, **byo},
            {"name": "oa", "type": "openai", "api_base": f"{mock_upstream.url}/v1", **stored},
            {"name": "oa-byo", "type": "openai", "api_base": f"{mock_upstream.url}/v1", **byo},
            # A single-tenant operator's: callers may name what the account holds.
            {"name": "vertex-open", "type": "vertex", "api_base": mock_upstream.url,
             "vertex_project": "mock-project", "vertex_location": "us-central1",
             "credentials_file": str(folder / "sa.json"), "allow_account_objects": True},
            {"name": "az-open", "type": "azure", "api_base": mock_upstream.url, **stored,
             "allow_account_objects": True},
            {"name": "oa-open", "type": "openai", "api_base": f"{mock_upstream.url}/v1", **stored,
             "allow_account_objects": True},
            {"name": "claude-open", "type": "anthropic", "api_base": mock_upstream.url, **stored,
             "allow_account_objects": True},
        ],
        "models": [
            {"name": "gemini", "provider": "studio", "model": "gemini-2.5-flash"},
            {"name": "gemini-byo", "provider": "studio-byo", "model": "gemini-2.5-flash"},
            {"name": "vertex", "provider": "vertex", "model": "gemini-2.5-flash"},
            {"name": "claude", "provider": "claude", "model": "claude-sonnet-4-5"},
            {"name": "claude-byo", "provider": "claude-byo", "model": "claude-sonnet-4-5"},
            {"name": "azure", "provider": "az", "model": "my-gpt4o-deployment"},
            {"name": "azure-byo", "provider": "az-byo", "model": "my-gpt4o-deployment"},
            {"name": "gpt", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "gpt-byo", "provider": "oa-byo", "model": "gpt-4o-mini"},
            {"name": "vertex-open", "provider": "vertex-open", "model": "gemini-2.5-flash"},
            {"name": "azure-open", "provider": "az-open", "model": "my-gpt4o-deployment"},
            {"name": "gpt-open", "provider": "oa-open", "model": "gpt-4o-mini"},
            {"name": "claude-open", "provider": "claude-open", "model": "claude-sonnet-4-5"},
            {"name": "gpt-native", "provider": "oa", "model": "gpt-4o-mini", "responses": "native"},
            {"name": "gpt-open-native", "provider": "oa-open", "model": "gpt-4o-mini", "responses": "native"},
        ],
        # Files and batches on the shared OpenAI account; a file uploaded for a model of the
        # opted-in entry (x-switchboard-model) lives in that one.
        "files": {"provider": "oa"},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}", "caller_credentials": {"enabled": True}},
    }
    gw = start_gateway(config, folder)
    created = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text
    yield gw, created.json()["key"]
    gw.process.stop()


def sdk(world: tuple[Gateway, str], own_credential: bool = False) -> openai.OpenAI:
    gw, key = world
    headers = {HEADER: UPSTREAM_KEY} if own_credential else None
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30,
                         default_headers=headers)


def asking(marker: str, *parts: dict[str, Any]) -> list[Any]:
    return [{"role": "user", "content": [{"type": "text", "text": f"look mock:capture={marker}"}, *parts]}]


def nothing_sent(mock: Mock, marker: str) -> None:
    # The refusal answered before any upstream call; a call would have been recorded before it.
    assert captured(mock, marker, timeout=0.2) == []


def refused(client: openai.OpenAI, model: str, marker: str, *parts: dict[str, Any], **extra: Any) -> Any:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model, messages=asking(marker, *parts), **extra)
    error = err.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_parameter", error
    assert "provider account" in error["message"] and "credential" in error["message"]
    return error


def upstream_body(mock: Mock, marker: str) -> dict[str, Any]:
    (seen,) = captured(mock, marker, outcome="completed")
    assert seen["status"] == 200, seen
    body: dict[str, Any] = seen["body"]
    return body


# ---- Gemini API and Vertex AI: gs:// objects, Files API URIs ---------------------------------------


@pytest.mark.parametrize("model", ["gemini", "vertex"])
@pytest.mark.parametrize(("part", "param"), [
    ({"type": "image_url", "image_url": {"url": "gs://operator-bucket/secret.png"}}, "image_url.url"),
    ({"type": "image_url", "image_url": {"url": "GS://operator-bucket/secret.png"}}, "image_url.url"),
    ({"type": "file", "file": {"file_data": "gs://operator-bucket/report.pdf"}}, "file.file_data"),
    ({"type": "file", "file": {"file_data": FILES_URI}}, "file.file_data"),
    ({"type": "file", "file": {"file_data": "https://GenerativeLanguage.googleapis.com./v1beta/files/x"}},
     "file.file_data"),
    # A Cloud Storage object by its https URL (path style, virtual-hosted, the console's host) in
    # a file part, which Google fetches (an http(s) image the gateway fetches itself, anonymously).
    ({"type": "file", "file": {"file_data": STORAGE_URL}}, "file.file_data"),
    ({"type": "file", "file": {"file_data": "https://operator-bucket.Storage.GoogleAPIs.com/report.pdf"}},
     "file.file_data"),
    ({"type": "file", "file": {"file_data": "https://storage.cloud.google.com/operator-bucket/report.pdf"}},
     "file.file_data"),
])
def test_storage_and_files_api_uris_are_refused(
    world: tuple[Gateway, str], mock_upstream: Mock, model: str, part: dict[str, Any], param: str
) -> None:
    marker = new_marker()
    error = refused(sdk(world), model, marker, part)
    assert error["param"] == f"messages[0].content[1].{param}"
    nothing_sent(mock_upstream, marker)


def test_the_responses_api_translated_to_gemini_refuses_them_too(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        sdk(world).responses.create(model="vertex", store=False, input=[{"role": "user", "content": [
            {"type": "input_text", "text": f"look mock:capture={marker}"},
            {"type": "input_image", "image_url": "gs://operator-bucket/secret.png"},
        ]}])
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "unsupported_parameter"
    assert "Cloud Storage" in err.value.body["message"]
    nothing_sent(mock_upstream, marker)


@pytest.mark.parametrize("model", ["gemini", "vertex"])
def test_inline_data_and_public_urls_still_reach_google(
    world: tuple[Gateway, str], mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    sdk(world).chat.completions.create(model=model, messages=asking(
        marker,
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        {"type": "file", "file": {"file_data": "https://example.com/public/report.pdf"}},
    ))
    parts = upstream_body(mock_upstream, marker)["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}
    assert parts[2] == {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/public/report.pdf"}}


def test_the_callers_own_gemini_key_may_name_its_own_files(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    sdk(world, own_credential=True).chat.completions.create(model="gemini-byo", messages=asking(
        marker,
        {"type": "file", "file": {"file_data": FILES_URI}},
        {"type": "image_url", "image_url": {"url": "gs://callers-bucket/cat.png"}},
    ))
    parts = upstream_body(mock_upstream, marker)["contents"][0]["parts"]
    assert [p["fileData"]["fileUri"] for p in parts[1:]] == [FILES_URI, "gs://callers-bucket/cat.png"]
    # The uploaded file has its type at Google; nothing guessed from an URI without an extension.
    assert "mimeType" not in parts[1]["fileData"]


def test_the_refusal_says_when_an_own_credential_would_do(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    error = refused(sdk(world), "gemini-byo", marker, {"type": "file", "file": {"file_data": FILES_URI}})
    assert "accepted only with your own provider credential" in error["message"]
    error = refused(sdk(world), "vertex", marker, {"type": "file", "file": {"file_data": "gs://b/x.pdf"}})
    assert "does not take callers' own provider credentials" in error["message"]
    nothing_sent(mock_upstream, marker)


def test_the_gemini_inbound_api_refuses_storage_and_files_api_uris(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    gw, key = world
    marker = new_marker()
    for uri in ("gs://operator-bucket/secret.png", FILES_URI):
        answer = httpx.post(
            f"{gw.url}/v1beta/models/vertex:generateContent", headers={"x-goog-api-key": key}, timeout=30,
            json={"contents": [{"role": "user", "parts": [
                {"text": f"look mock:capture={marker}"},
                {"fileData": {"mimeType": "image/png", "fileUri": uri}},
            ]}]},
        )
        assert answer.status_code == 400, answer.text
        assert "contents[0].parts[1].fileData.fileUri" in answer.text
    nothing_sent(mock_upstream, marker)


# ---- Anthropic: Files API documents, containers, MCP servers ---------------------------------------


def test_a_files_api_document_is_refused_on_the_translated_path(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    error = refused(sdk(world), "claude", marker, FILE_DOCUMENT)
    assert error["param"] == "messages[0].content[1].document.source.file_id"
    # Inside a tool result too.
    with pytest.raises(openai.BadRequestError) as err:
        sdk(world).chat.completions.create(model="claude", messages=[
            *asking(marker),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [FILE_DOCUMENT]},
        ])
    assert isinstance(err.value.body, dict)
    assert err.value.body["param"] == "messages[2].content[0].document.source.file_id"
    nothing_sent(mock_upstream, marker)


def test_inline_documents_still_reach_anthropic_and_an_own_key_may_name_files(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    source = {"type": "text", "media_type": "text/plain", "data": "x"}
    text = {"type": "document", "document": {"source": source}}
    sdk(world).chat.completions.create(model="claude", messages=asking(marker, text))
    assert upstream_body(mock_upstream, marker)["messages"][0]["content"][1]["source"]["type"] == "text"
    marker = new_marker()
    own = sdk(world, own_credential=True)
    own.chat.completions.create(model="claude-byo", messages=asking(marker, FILE_DOCUMENT))
    sent = upstream_body(mock_upstream, marker)["messages"][0]["content"][1]
    assert sent == {"type": "document", **FILE_DOCUMENT["document"]}


FILE_BLOCKS = [{"type": "document", "source": {"type": "file", "file_id": "file_011"}},
               {"type": "image", "source": {"type": "file", "file_id": "file_011"}}]


def messages_call(world: tuple[Gateway, str], model: str, marker: str, *blocks: dict[str, Any],
                  headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    """``POST /v1/messages`` (the pass-through to an ``anthropic`` deployment) asking with ``blocks``."""
    gw, key = world
    content: list[Any] = [{"type": "text", "text": f"look mock:capture={marker}"}, *blocks]
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{gw.url}/v1/messages", timeout=30, json=body,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01", **(headers or {})})


@pytest.mark.parametrize("block", FILE_BLOCKS, ids=["document", "image"])
def test_the_pass_through_sends_files_api_sources_on_an_own_key_or_an_opted_in_account(
    world: tuple[Gateway, str], mock_upstream: Mock, block: dict[str, Any]
) -> None:
    """As on the translated path: the caller's own Anthropic key opens the caller's account, and
    `allow_account_objects` makes the shared one every caller's; the block goes as written."""
    for model, headers in (("claude-byo", {HEADER: UPSTREAM_KEY}), ("claude-open", None)):
        marker = new_marker()
        answer = messages_call(world, model, marker, block, headers=headers)
        assert answer.status_code == 200, (model, answer.text)
        assert upstream_body(mock_upstream, marker)["messages"][0]["content"][1] == block, model


@pytest.mark.parametrize("block", FILE_BLOCKS, ids=["document", "image"])
def test_files_api_sources_on_the_shared_account_are_refused_naming_the_remedy(
    world: tuple[Gateway, str], mock_upstream: Mock, block: dict[str, Any]
) -> None:
    for model, remedy in (("claude", "does not take callers' own provider credentials"),
                          ("claude-byo", "accepted only with your own provider credential")):
        marker = new_marker()
        answer = messages_call(world, model, marker, block)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error", error
        assert "messages.0.content.1.source.file_id" in error["message"] and remedy in error["message"]
        nothing_sent(mock_upstream, marker)
    # Translated for another provider type, no account can read it: refused whatever the key.
    marker = new_marker()
    answer = messages_call(world, "gpt", marker, block)
    assert answer.status_code == 400, answer.text
    assert "provider type 'openai' cannot read" in answer.json()["error"]["message"]
    nothing_sent(mock_upstream, marker)


def tool_result_call(world: tuple[Gateway, str], model: str, marker: str, block: dict[str, Any],
                     headers: dict[str, str] | None = None) -> httpx.Response:
    """``POST /v1/messages`` whose last user turn answers a tool call with ``block`` inside the
    ``tool_result``."""
    gw, key = world
    messages = [
        {"role": "user", "content": f"read it mock:capture={marker}"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [block]}]},
    ]
    tools = [{"name": "read", "input_schema": {"type": "object"}}]
    return httpx.post(f"{gw.url}/v1/messages", timeout=30,
                      json={"model": model, "max_tokens": 64, "messages": messages, "tools": tools},
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01", **(headers or {})})


def test_a_files_api_document_in_a_tool_result_is_judged_like_any_other(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    """Sent as written on the caller's own key or an opted-in account, refused on the shared one
    naming the remedy, and refused whatever the key when translated for another provider type."""
    block = FILE_BLOCKS[0]
    for model, headers in (("claude-byo", {HEADER: UPSTREAM_KEY}), ("claude-open", None)):
        marker = new_marker()
        answer = tool_result_call(world, model, marker, block, headers=headers)
        assert answer.status_code == 200, (model, answer.text)
        sent = upstream_body(mock_upstream, marker)["messages"][2]["content"][0]
        assert sent["type"] == "tool_result" and sent["content"] == [block], model
    for model, remedy in (("claude", "does not take callers' own provider credentials"),
                          ("claude-byo", "accepted only with your own provider credential"),
                          ("gpt", "provider type 'openai' cannot read")):
        marker = new_marker()
        answer = tool_result_call(world, model, marker, block)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error", error
        assert "messages.2.content.0.content.0.source.file_id" in error["message"], error
        assert remedy in error["message"], error
        nothing_sent(mock_upstream, marker)


@pytest.mark.parametrize(("extra", "block", "words"), [
    ({}, FILE_BLOCKS[0], "Files API"),
    ({}, FILE_BLOCKS[1], "Files API"),
    ({}, {"type": "container_upload", "file_id": "file_011"}, "container_upload"),
    ({"container": "container_011"}, None, "container"),
    ({"container": {"skills": [{"type": "custom", "skill_id": "skill_01"}]}}, None, "container"),
    ({"mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "x",
                       "authorization_token": "t"}]}, None, "mcp_servers"),
    ({"tools": [{"type": "code_execution_20250825", "name": "code_execution"}]}, None, "server tool"),
])
def test_the_anthropic_pass_through_refuses_account_objects(
    world: tuple[Gateway, str], mock_upstream: Mock, extra: dict[str, Any], block: dict[str, Any] | None,
    words: str,
) -> None:
    gw, key = world
    marker = new_marker()
    content: list[Any] = [{"type": "text", "text": f"look mock:capture={marker}"}]
    content += [block] if block else []
    answer = httpx.post(f"{gw.url}/v1/messages", timeout=30,
                        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                        json={"model": "claude", "max_tokens": 64,
                              "messages": [{"role": "user", "content": content}], **extra})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert words in answer.json()["error"]["message"]
    nothing_sent(mock_upstream, marker)


# ---- Azure OpenAI "On your data" ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["azure", "gpt"])
def test_data_sources_are_refused(world: tuple[Gateway, str], mock_upstream: Mock, model: str) -> None:
    marker = new_marker()
    error = refused(sdk(world), model, marker, extra_body={"data_sources": DATA_SOURCES})
    assert error["param"] == "data_sources"
    nothing_sent(mock_upstream, marker)


def test_data_sources_with_the_callers_own_azure_key_are_passed(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    sdk(world, own_credential=True).chat.completions.create(
        model="azure-byo", messages=asking(marker), extra_body={"data_sources": DATA_SOURCES})
    assert upstream_body(mock_upstream, marker)["data_sources"] == DATA_SOURCES


# ---- OpenAI-shaped chat: stored audio replies, tools naming stores and containers --------------------


def replaying_audio(marker: str) -> list[Any]:
    """A conversation whose assistant turn is an audio reply named by its id (kept upstream)."""
    return [*asking(marker), {"role": "assistant", "content": "(spoken)", "audio": AUDIO},
            {"role": "user", "content": "and again"}]


@pytest.mark.parametrize("model", ["gpt", "azure"])
def test_an_audio_reply_named_by_id_is_refused(
    world: tuple[Gateway, str], mock_upstream: Mock, model: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        sdk(world).chat.completions.create(model=model, messages=replaying_audio(marker))
    assert err.value.code == "unsupported_parameter" and err.value.param == "messages[1].audio"
    assert "audio reply" in err.value.message and "provider account" in err.value.message
    nothing_sent(mock_upstream, marker)


@pytest.mark.parametrize(("tool", "param"), [
    (SEARCH_TOOL, "tools[1].vector_store_ids"),
    ({"type": "code_interpreter", "container": "cntr_someone_elses"}, "tools[1].container"),
    ({"type": "shell", "environment": {"type": "container_reference", "container_id": "cntr_x"}},
     "tools[1].environment.container_id"),
    ({"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file_someone_elses"]}},
     "tools[1].container.file_ids"),
    ({"type": "code_interpreter", "container": {"type": "container_snapshot", "id": "snap_1"}},
     "tools[1].container"),
])
def test_tools_naming_objects_of_the_account_are_refused(
    world: tuple[Gateway, str], mock_upstream: Mock, tool: dict[str, Any], param: str
) -> None:
    marker = new_marker()
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    error = refused(sdk(world), "gpt", marker, tools=[weather, tool])
    assert error["param"] == param
    nothing_sent(mock_upstream, marker)


def test_other_tools_and_text_replies_still_reach_openai(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    tools = [{"type": "custom", "custom": {"name": "patch"}},
             {"type": "code_interpreter", "container": {"type": "auto"}}]
    messages = [*asking(marker), {"role": "assistant", "content": "earlier"},
                {"role": "user", "content": "go"}]
    sdk(world).chat.completions.create(model="gpt", messages=messages, tools=tools)  # type: ignore[arg-type]
    assert upstream_body(mock_upstream, marker)["tools"] == tools


def test_the_callers_own_openai_key_may_name_its_own_objects(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    marker = new_marker()
    sdk(world, own_credential=True).chat.completions.create(
        model="gpt-byo", messages=replaying_audio(marker), tools=[SEARCH_TOOL])  # type: ignore[list-item]
    sent = upstream_body(mock_upstream, marker)
    assert sent["messages"][1]["audio"] == AUDIO and sent["tools"] == [SEARCH_TOOL]


# ---- images the gateway fetches itself ---------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://127.0.0.1:1/pixel.png",
])
def test_images_inlined_for_a_provider_are_fetched_from_public_addresses_only(
    world: tuple[Gateway, str], mock_upstream: Mock, url: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        sdk(world).chat.completions.create(
            model="gemini", messages=asking(marker, {"type": "image_url", "image_url": {"url": url}}))
    assert "private address" in json.dumps(err.value.body)
    nothing_sent(mock_upstream, marker)


def test_a_provider_opted_in_takes_objects_of_its_account(
    world: tuple[Gateway, str], mock_upstream: Mock
) -> None:
    """`allow_account_objects: true` (a deployment whose callers may all read what the account
    holds): the same fields reach the provider as written, on the gateway's credential."""
    marker = new_marker()
    sdk(world).chat.completions.create(model="vertex-open", messages=asking(
        marker, {"type": "image_url", "image_url": {"url": "gs://operator-bucket/cat.png"}}))
    parts = upstream_body(mock_upstream, marker)["contents"][0]["parts"]
    assert parts[1]["fileData"]["fileUri"] == "gs://operator-bucket/cat.png"
    marker = new_marker()
    sdk(world).chat.completions.create(model="vertex-open", messages=asking(
        marker, {"type": "file", "file": {"file_data": STORAGE_URL}}))
    parts = upstream_body(mock_upstream, marker)["contents"][0]["parts"]
    assert parts[1]["fileData"]["fileUri"] == STORAGE_URL
    marker = new_marker()
    sdk(world).chat.completions.create(model="azure-open", messages=asking(marker),
                                       extra_body={"data_sources": DATA_SOURCES})
    assert upstream_body(mock_upstream, marker)["data_sources"] == DATA_SOURCES
    marker = new_marker()
    sdk(world).chat.completions.create(model="gpt-open", messages=replaying_audio(marker),
                                       tools=[SEARCH_TOOL])  # type: ignore[list-item]
    sent = upstream_body(mock_upstream, marker)
    assert sent["messages"][1]["audio"] == AUDIO and sent["tools"] == [SEARCH_TOOL]


# ---- the opt-in on the Responses API and in batches ------------------------------------------------

# Responses fields naming objects of the account, and the param each is refused with.
RESPONSES_OBJECTS: list[tuple[dict[str, Any], str]] = [
    ({"conversation": "conv_someone_elses"}, "conversation"),
    ({"tools": [SEARCH_TOOL]}, "tools[0].vector_store_ids"),
    ({"tools": [{"type": "code_interpreter", "container": "cntr_someone_elses"}]}, "tools[0].container"),
]


@pytest.mark.parametrize(("extra", "param"), RESPONSES_OBJECTS, ids=[p for _, p in RESPONSES_OBJECTS])
def test_a_native_response_names_objects_of_an_opted_in_account(
    world: tuple[Gateway, str], mock_upstream: Mock, extra: dict[str, Any], param: str
) -> None:
    """As chat, the /v1/messages pass-through and the adapters: `allow_account_objects` lets every
    caller name what the account holds on the gateway's credential; the shared one still refuses."""
    marker = new_marker()
    reply = sdk(world).responses.create(model="gpt-open-native", input=f"hi mock:capture={marker}",
                                        **extra)  # type: ignore[call-overload]
    assert reply.status == "completed"
    sent = upstream_body(mock_upstream, marker)
    assert all(sent[name] == value for name, value in extra.items())
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        sdk(world).responses.create(model="gpt-native", input=f"hi mock:capture={marker}",
                                    **extra)  # type: ignore[call-overload]
    assert err.value.code == "unsupported_parameter" and err.value.param == param
    nothing_sent(mock_upstream, marker)


def batch_naming(world: tuple[Gateway, str], model: str, extra: dict[str, Any]) -> Any:
    """A Responses batch, its input file uploaded for ``model`` (so on that model's provider),
    whose line names what ``extra`` holds."""
    client = sdk(world)
    line = {"custom_id": "r0", "method": "POST", "url": "/v1/responses",
            "body": {"model": "gpt-4o-mini", "input": "hi", **extra}}
    source = client.files.create(file=("in.jsonl", orjson.dumps(line) + b"\n"), purpose="batch",
                                 extra_headers={"x-switchboard-model": model})
    return client.batches.create(input_file_id=source.id, endpoint="/v1/responses",
                                 completion_window="24h", metadata={"mock_gets_to_complete": "100"})


BATCH_OBJECTS = [*RESPONSES_OBJECTS, ({"previous_response_id": "resp_1"}, "previous_response_id")]


@pytest.mark.parametrize(("extra", "param"), BATCH_OBJECTS, ids=[p for _, p in BATCH_OBJECTS])
def test_a_batch_on_an_opted_in_account_may_name_its_objects(
    world: tuple[Gateway, str], extra: dict[str, Any], param: str
) -> None:
    assert batch_naming(world, "gpt-open", extra).status == "validating"
    with pytest.raises(openai.BadRequestError) as err:
        batch_naming(world, "gpt", extra)
    assert err.value.code == "unsupported_parameter" and err.value.param == "input_file_id"
    assert f"line 1 of the input file: '{param}' names " in err.value.message
