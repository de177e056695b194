"""Canonical document parts and tool ``is_error`` through every adapter without Anthropic's blocks:
what each upstream body carries, and the 400 for what it cannot take."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from switchboard.errors import InvalidRequest
from switchboard.providers import documents
from tests.unit.test_capability_matrix import upstream_body

PDF = base64.b64encode(b"%PDF-1.4 tiny").decode()
TEXT_KEYS = ["bedrock", "gemini", "vertex", "cohere", "mistral", "openai", "azure", "openai-compatible:vllm"]


def document(source: dict[str, Any], title: str | None = "Notes") -> dict[str, Any]:
    return {"type": "document", "document": {"source": source, **({"title": title} if title else {})}}


def asking(*parts: dict[str, Any]) -> dict[str, Any]:
    content = [*parts, {"type": "text", "text": "Sum up"}]
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


def first_part(key: str, body: dict[str, Any]) -> Any:
    if key in ("gemini", "vertex"):
        return body["contents"][0]["parts"][0]
    return body["messages"][0]["content"][0]


TEXT_PART = {"bedrock": {"text": "Notes\n\nsky"}, "gemini": {"text": "Notes\n\nsky"},
             "vertex": {"text": "Notes\n\nsky"}}


@pytest.mark.parametrize("key", TEXT_KEYS)
@pytest.mark.parametrize("source", [
    {"type": "text", "media_type": "text/plain", "data": "sky"},
    {"type": "content", "content": [{"type": "text", "text": "sky"}]},
    {"type": "base64", "media_type": "text/plain", "data": base64.b64encode(b"sky").decode()},
], ids=["text", "content", "base64-text"])
def test_a_plain_text_document_is_sent_as_text_title_first(key: str, source: dict[str, Any]) -> None:
    part = first_part(key, upstream_body(key, asking(document(source))))
    assert part == TEXT_PART.get(key, {"type": "text", "text": "Notes\n\nsky"})


def test_bedrock_sends_a_pdf_as_a_document_block_named_from_the_title() -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    body = upstream_body("bedrock", asking(document(source, "Q3 report: final/v2")))
    assert first_part("bedrock", body) == {
        "document": {"format": "pdf", "name": "Q3 report final v2", "source": {"bytes": PDF}}}
    untitled = upstream_body("bedrock", asking(document(source, None)))
    assert first_part("bedrock", untitled)["document"]["name"] == "document-0-0"


def test_bedrock_refuses_a_document_type_converse_lacks() -> None:
    source = {"type": "base64", "media_type": "image/svg+xml", "data": PDF}
    with pytest.raises(InvalidRequest) as err:
        upstream_body("bedrock", asking(document(source)))
    assert err.value.param == "messages[0].content[0].document.source.media_type"


@pytest.mark.parametrize("key", ["gemini", "vertex"])
def test_gemini_sends_a_pdf_inline(key: str) -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    part = first_part(key, upstream_body(key, asking(document(source))))
    assert part == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}


@pytest.mark.parametrize("key", ["cohere", "mistral"])
def test_text_only_providers_refuse_a_pdf_naming_it(key: str) -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    with pytest.raises(InvalidRequest, match="application/pdf documents are not supported") as err:
        upstream_body(key, asking(document(source)))
    assert err.value.param == "messages[0].content[0].document.source"


_DATA = "messages[0].content[0].document.source.data"


@pytest.mark.parametrize("key", TEXT_KEYS)
@pytest.mark.parametrize(("source", "param"), [
    ({"type": "url", "url": "https://example.com/a.pdf"}, "messages[0].content[0].document.source.type"),
    ({"type": "base64", "media_type": "application/pdf", "data": "not base64!"},
     "messages[0].content[0].document.source.data"),
    ({"type": "content", "content": [{"type": "image"}]}, "messages[0].content[0].document.source.content"),
    # The data, not the source's type, is what is wrong (the type was named).
    ({"type": "base64", "media_type": "application/pdf", "data": ""}, _DATA),
    ({"type": "base64", "media_type": "application/pdf", "data": 7}, _DATA),
    ({"type": "text", "data": ["x"]}, _DATA),
], ids=["url", "bad-base64", "image-content", "empty-base64", "base64-number", "text-list"])
def test_a_document_no_adapter_can_send_is_a_400_naming_it(
    key: str, source: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        upstream_body(key, asking(document(source)))
    assert err.value.param == param


def test_a_document_without_a_source_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        documents.read({"type": "document", "document": {"title": "x"}}, "messages[0].content[0]", "gemini")
    assert err.value.param == "messages[0].content[0].document"


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def tool_turn(content: Any, is_error: bool = False) -> dict[str, Any]:
    result = {"role": "tool", "tool_call_id": "call_1", "content": content}
    if is_error:
        result["is_error"] = True
    call = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    return {"model": "m", "tools": TOOLS, "messages": [{"role": "user", "content": "hi"}, call, result]}


def tool_result(key: str, body: dict[str, Any]) -> Any:
    if key in ("gemini", "vertex"):
        return body["contents"][2]["parts"][0]["functionResponse"]["response"]
    if key == "bedrock":
        return body["messages"][2]["content"][0]["toolResult"]
    return body["messages"][2]["content"]


ERROR_RESULTS = {
    "bedrock": {"toolUseId": "call_1", "content": [{"text": "no such file"}], "status": "error"},
    "gemini": {"result": "Error: no such file"},
    "vertex": {"result": "Error: no such file"},
}


@pytest.mark.parametrize("key", TEXT_KEYS)
def test_a_tool_error_is_flagged_or_prefixed(key: str) -> None:
    result = tool_result(key, upstream_body(key, tool_turn("no such file", is_error=True)))
    assert result == ERROR_RESULTS.get(key, "Error: no such file")


def test_an_openai_compatible_server_gets_no_is_error_field() -> None:
    body = upstream_body("openai-compatible:vllm", tool_turn("no such file", is_error=True))
    assert "is_error" not in body["messages"][2]


@pytest.mark.parametrize("key", TEXT_KEYS)
def test_a_text_document_in_a_tool_result_is_kept(key: str) -> None:
    content = [{"type": "text", "text": "found: "}, document({"type": "text", "data": "sky"})]
    result = tool_result(key, upstream_body(key, tool_turn(content)))
    if key == "bedrock":
        assert result["content"] == [{"text": "found: "}, {"text": "Notes\n\nsky"}]
    elif key in ("gemini", "vertex"):
        assert result == {"result": "found: Notes\n\nsky"}
    elif key in ("cohere", "openai", "azure", "openai-compatible:vllm"):  # parts kept
        assert result == [{"type": "text", "text": "found: "}, {"type": "text", "text": "Notes\n\nsky"}]
    else:  # mistral: one string
        assert result == "found: Notes\n\nsky"
