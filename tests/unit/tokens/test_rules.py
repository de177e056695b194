"""The counting rules beyond the golden chat cases: which encoding a model uses, the estimate for
other providers, images, embeddings and completions inputs, the completion bound, odd shapes,
and the estimate shared through the request context."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import pytest

from switchboard import catalog, tokens
from switchboard.context import RequestContext
from switchboard.tokens import documents, images
from tests.unit.tokens.cases import data_url, pdf, png


@dataclass(frozen=True)
class Info:
    model: str
    max_output_tokens: int | None = None


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"), ("o1-preview", "o200k_base"), ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"), ("chatgpt-4o-latest", "o200k_base"), ("openai/gpt-oss-120b", "o200k_base"),
        ("gpt-4", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"), ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"), ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"), ("GPT-4O", "o200k_base"),
        ("claude-sonnet-4-5", None), ("gemini-2.5-pro", None), ("mistral-large-latest", None),
        ("command-r-plus", None), ("anthropic.claude-3-haiku", None), ("", None),
    ],
)
def test_the_encoding_follows_the_model(model: str, encoding: str | None) -> None:
    assert tokens.encoding_for(model) == encoding


def test_other_providers_get_the_o200k_count_times_the_documented_factor() -> None:
    request = {"messages": [{"role": "user", "content": "Bonjour, comment ça va aujourd'hui ?"}]}
    exact = tokens.estimate(request, "chat", model="gpt-4o")
    assert tokens.OTHER_PROVIDER_FACTOR == 1.2
    for model in ("claude-sonnet-4-5", "gemini-2.5-flash", "my-local-llama"):
        assert tokens.estimate(request, "chat", model=model) == math.ceil(exact * 1.2)


def test_the_model_comes_from_the_catalog_record_then_the_route_then_the_request() -> None:
    request = {"model": "claude-alias", "messages": [{"role": "user", "content": "x " * 50}]}
    by_request = tokens.estimate(request, "chat")
    by_route = tokens.estimate(request, "chat", model="gpt-4")
    by_info = tokens.estimate(request, "chat", Info("gpt-4o"), model="gpt-4")
    assert by_route == tokens.count(request, "chat", "cl100k_base")
    assert by_info == tokens.count(request, "chat", "o200k_base")
    assert by_request == math.ceil(by_info * 1.2)


def image_request(url: str, detail: str | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {"url": url} if detail is None else {"url": url, "detail": detail}
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": image}]}]}


def test_image_costs() -> None:
    empty = tokens.estimate({"messages": [{"role": "user", "content": []}]}, "chat", model="gpt-4o")
    remote = "https://example.com/a.png"

    def cost(url: str, detail: str | None, model: str = "gpt-4o") -> int:
        return tokens.estimate(image_request(url, detail), "chat", model=model) - empty

    assert cost(remote, "low") == 85
    assert cost(remote, "high") == cost(remote, "auto") == cost(remote, None) == 85 + 4 * 170  # 1024x1024
    assert cost(data_url("image/png", png(512, 512)), "high") == 85 + 170
    assert cost(data_url("image/png", png(513, 100)), "high") == 85 + 2 * 170
    assert cost(data_url("image/png", png(2048, 768)), "high") == 85 + 8 * 170  # the widest case
    assert cost(remote, "low", "gpt-4o-mini") == 2833
    assert cost(remote, "high", "gpt-4o-mini") == 2833 + 4 * 5667
    # Not an image, or not base64: the size is unknown and assumed.
    assert cost("data:image/png;base64,bm90IGFuIGltYWdl", "high") == 765
    assert cost("data:image/png,rawbytes", "high") == 765
    assert cost("data:image/png;base64,%%%%", "high") == 765


def _claude_image_cost(url: str, model: str, detail: str | None = None) -> int:
    """The image's part of a Claude model's estimate: the text's estimate is its count times 1.2;
    what is left is the image, rounded up by at most 2 (the figure is carried through the factor,
    docs/tokens.md)."""
    text = tokens.count({"messages": [{"role": "user", "content": []}]}, "chat", "o200k_base")
    with_image = tokens.estimate(image_request(url, detail), "chat", model=model)
    return with_image - math.ceil(text * 1.2)


def test_claude_images_cost_a_token_per_28_px_patch() -> None:
    """Claude models (Anthropic, and Claude on Bedrock and Vertex): Anthropic's rule, not OpenAI's
    tiles times 1.2; the image's figure is not multiplied by the factor the text is. Models before
    Opus 4.7 read at most 1568 px on the long edge and 1,568 tokens an image."""
    models = ("claude-sonnet-4-5", "anthropic.claude-3-5-haiku-20241022-v1:0", "claude-opus-4-6",
              "us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-3-5-sonnet-v2@20241022",
              "claude-opus-4-20250514", "claude-opus-4-1-20250805")
    remote = "https://example.com/a.png"
    for model in models:
        assert images.claude_vision(model) == images.CLAUDE_STANDARD
        for url, n in (
            (data_url("image/png", png(200, 200)), 64),  # 8 x 8 patches
            (data_url("image/png", png(1000, 500)), 648),  # 36 x 18
            (remote, 1369),  # the assumed 1024 x 1024: 37 x 37
            (data_url("image/png", png(1024, 1024)), 1369),
            (data_url("image/png", png(3136, 800)), 840),  # long edge over 1568 px: 1568 x 400, 56 x 15
            (data_url("image/png", png(4000, 3000)), 1568),  # over the 1,568 tokens after that: the budget
            (data_url("image/png", png(1092, 1200)), 1568),  # 39 x 43 = 1,677: over the budget
            ("data:image/png;base64,bm90IGFuIGltYWdl", 1369),  # unreadable bytes: as a remote image
        ):
            assert n <= _claude_image_cost(url, model) <= n + 2, (model, n)
        assert 1369 <= _claude_image_cost(remote, model, "low") <= 1371  # Anthropic has no detail levels
    # Other models keep OpenAI's tiles times 1.2 (1024 x 1024: 765 -> 918).
    assert _claude_image_cost(remote, "gemini-2.5-pro") == 918


def test_claude_opus_4_7_and_later_read_larger_images() -> None:
    """Opus 4.7 and later (and a later generation) read up to 2576 px on the long edge and 4,784
    tokens an image; a small image costs the same patches on every Claude model."""
    for model in ("claude-opus-4-7", "claude-opus-4-8", "anthropic.claude-opus-4-7-v1:0",
                  "claude-opus-4-7@20260416", "anthropic/claude-opus-4.8", "claude-sonnet-5",
                  "claude-haiku-5-5"):
        assert images.claude_vision(model) == images.CLAUDE_HIGH, model
        for url, n in (
            (data_url("image/png", png(200, 200)), 64),
            (data_url("image/png", png(1024, 1024)), 1369),
            (data_url("image/png", png(1920, 1080)), 2691),  # 69 x 39: not scaled down
            (data_url("image/png", png(3136, 800)), 2208),  # scaled to 2576 x 657: 92 x 24
            (data_url("image/png", png(4000, 3000)), 4784),  # over the budget
        ):
            assert n <= _claude_image_cost(url, model) <= n + 2, (model, n)


def test_image_sizes_from_headers() -> None:
    assert images.size_of_bytes(png(31, 7)) == (31, 7)
    assert images.size_of_bytes(b"\xff\xd8\xff") is None  # a JPEG cut short
    assert images.size_of_bytes(b"GIF89a\x00\x00\x05\x00") is None  # zero width
    assert images.size_of_url("https://example.com/x.png") is None
    # The scheme, media type and ;base64 in any case, as every provider reads them.
    inline = data_url("image/png", png(31, 7)).split(",", 1)[1]
    assert images.size_of_url(f"DATA:IMAGE/PNG;BASE64,{inline}") == (31, 7)


def test_embeddings_and_completions_inputs() -> None:
    text = "The quick brown fox"
    n = tokens.count_text(text, "cl100k_base")
    model = "text-embedding-3-small"
    assert tokens.estimate({"input": text}, "embeddings", model=model) == n
    assert tokens.estimate({"input": [text, text]}, "embeddings", model=model) == 2 * n
    assert tokens.estimate({"input": [1, 2, 3]}, "embeddings", model=model) == 3  # token ids
    assert tokens.estimate({"input": [[1, 2], [3]]}, "embeddings", model=model) == 3
    assert tokens.estimate({"prompt": text}, "completions", model="gpt-3.5-turbo-instruct") == n
    assert tokens.estimate({"prompt": [text, "x"]}, "completions", model="gpt-3.5-turbo-instruct") == n + 1
    assert tokens.estimate({"input": text}, "models", model=model) == 0


def test_max_completion_tokens() -> None:
    f = tokens.max_completion_tokens
    assert f({"max_completion_tokens": 50, "max_tokens": 80}) == 50
    assert f({"max_tokens": 80}) == 80
    assert f({}, "chat", Info("gpt-4o", max_output_tokens=16384)) == 16384
    assert f({"max_tokens": 80, "n": 3}) == 240
    assert f({}, "chat", Info("x")) is None and f({}) is None
    assert f({"input": "x"}, "embeddings") == 0
    assert f({"max_tokens": True, "n": True}, "chat", Info("m", 10)) == 10  # booleans are not counts


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    "request_body",
    [
        {},
        {"messages": "not a list"},
        {"messages": [None, 3, "x", {"role": 5, "content": {"a": 1}}]},
        user([None, {"type": "image_url"}, {"type": "text", "text": 3}]),
        user([{"type": "image_url", "image_url": {"url": 7, "detail": 1}}]),
        {"messages": [{"role": "assistant", "tool_calls": [
            None, {"function": "x"}, {"function": {"arguments": {"a": 1}}}]}]},
        user([{"type": "input_audio", "input_audio": {"data": "AAAA"}}]),
        {"messages": [], "tools": [None, {"type": "function", "function": {"name": "f", "parameters": {
            "properties": {"a": None, "b": {"type": ["string", "null"], "enum": [1, None]}}}}}]},
        {"messages": [], "tools": [{"type": "web_search"}], "response_format": {"type": "json_schema"}},
        {"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]},
    ],
)
def test_odd_shapes_are_counted_without_raising(request_body: dict[str, Any]) -> None:
    for model in ("gpt-4o", "gpt-4", "claude-3-haiku"):
        assert tokens.estimate(request_body, "chat", model=model) >= 0


def test_response_format_schema_and_other_parts_count() -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    assert tokens.estimate({**base, "response_format": schema}, "chat", model="gpt-4o") > tokens.estimate(
        base, "chat", model="gpt-4o")


class _Target:
    model = "gpt-4"


class _Route:
    target = _Target()
    counted_as = "gpt-4"


def test_the_context_computes_the_estimate_once() -> None:
    ctx = RequestContext("r", "chat", None, {}, b"", 0.0)  # type: ignore[arg-type]
    ctx.request = {"model": "alias", "messages": [{"role": "user", "content": "count me"}]}
    ctx.route = _Route()  # type: ignore[assignment]
    first = ctx.prompt_tokens_estimate()
    assert first == tokens.count(ctx.request, "chat", "cl100k_base")
    ctx.request["messages"].append({"role": "user", "content": "more " * 100})
    assert ctx.prompt_tokens_estimate() == first == ctx.prompt_tokens  # computed once, then shared


def test_inline_data_of_other_parts_counts_at_most_a_kilobyte() -> None:
    small = user([{"type": "input_audio", "input_audio": {"data": "QUJD" * 200, "format": "wav"}}])
    big = user([{"type": "input_audio", "input_audio": {"data": "QUJD" * 200_000, "format": "wav"}}])
    assert tokens.estimate(big, "chat", model="gpt-4o") == tokens.estimate(
        user([{"type": "input_audio", "input_audio": {"data": ("QUJD" * 256), "format": "wav"}}]), "chat",
        model="gpt-4o")
    assert tokens.estimate(small, "chat", model="gpt-4o") < tokens.estimate(big, "chat", model="gpt-4o")


async def test_a_large_body_is_counted_off_the_event_loop_with_the_same_result() -> None:
    text = "Ein ziemlich langer Satz, der sich wiederholt. " * 4000
    ctx = RequestContext("r", "chat", None, {}, b"x" * 200_000, 0.0)  # type: ignore[arg-type]
    ctx.request = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    assert await ctx.count_prompt_tokens() == tokens.estimate(ctx.request, "chat") == ctx.prompt_tokens


def test_the_catalog_record_serves_as_model_info() -> None:
    shipped = catalog.default()
    gpt = shipped.lookup("openai", "gpt-4o-mini")
    claude = shipped.lookup("anthropic", "claude-3-5-haiku-latest")
    assert gpt is not None and claude is not None and gpt.max_output_tokens and claude.max_output_tokens
    request = {"model": "alias", "messages": [{"role": "user", "content": "hello there"}]}
    assert tokens.estimate(request, "chat", gpt) == tokens.count(request, "chat", "o200k_base")
    assert tokens.estimate(request, "chat", claude) == math.ceil(
        tokens.count(request, "chat", "o200k_base") * tokens.OTHER_PROVIDER_FACTOR)
    assert tokens.max_completion_tokens(request, "chat", claude) == claude.max_output_tokens


def _pdf_request(part: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [part]}]}


def _pdf_parts(data: bytes) -> list[dict[str, Any]]:
    """One PDF as each part that carries one: an Anthropic document block, an OpenAI file part
    (what the Gemini API's inline PDF becomes too)."""
    encoded = base64.b64encode(data).decode()
    return [
        {"type": "document", "document": {"source": {"type": "base64", "media_type": "application/pdf",
                                                     "data": encoded}}},
        {"type": "file", "file": {"filename": "a.pdf",
                                  "file_data": f"data:application/pdf;base64,{encoded}"}},
        {"type": "file", "file": {"file_data": f"DATA:Application/PDF;BASE64,{encoded}"}},
    ]


def test_a_pdf_costs_its_pages_times_the_documented_figure() -> None:
    assert documents.PDF_PAGE_TOKENS == 3000
    empty = {"messages": [{"role": "user", "content": []}]}
    for data, pages in ((pdf(1), 1), (pdf(10), 10), (pdf(10, packed=True), 10), (pdf(3, packed=True), 3)):
        for part in _pdf_parts(data):
            # An OpenAI model: the figure as it is; another provider's: carried through the factor.
            exact = tokens.estimate(_pdf_request(part), "chat", model="gpt-4o") - tokens.estimate(
                empty, "chat", model="gpt-4o")
            assert exact == pages * 3000
            for model in ("claude-sonnet-4-5", "gemini-2.5-pro"):
                other = tokens.estimate(_pdf_request(part), "chat", model=model) - math.ceil(
                    tokens.count(empty, "chat", "o200k_base") * 1.2)
                assert pages * 3000 <= other <= pages * 3000 + 2


def test_pdf_pages_are_page_objects_not_the_page_tree() -> None:
    def pages(data: bytes) -> int:
        return documents.pdf_pages(documents.Pdf(base64.b64encode(data).decode()))

    assert pages(pdf(1)) == 1 and pages(pdf(12)) == 12  # the /Type /Pages node is not a page
    assert pages(b"%PDF-1.4\n<</Type /Page >>\n<</Type/Page>>\n<</Type /Pages>>\n<</Type /PageLabel>>") == 2
    assert pages(b"%PDF-1.4 no pages found") == 1  # at least one
    assert documents.pdf_pages(documents.Pdf("%%%% not base64")) == 1
    # A file over the bytes read: its start and its end are read, the page objects found there
    # scaled to its size (here 7 at the end of 20 MB: about 2.5 times that); object streams are
    # all there is already.
    assert documents.SCAN_BYTES == 8 * 1024 * 1024
    assert pages(pdf(7, filler=20_000_000)) == 17
    assert pages(pdf(7, filler=20_000_000, packed=True)) == 7


def test_a_text_document_counts_as_its_text() -> None:
    text = "Quarterly figures, region by region. " * 300
    n = tokens.count_text(text, "o200k_base")
    encoded = base64.b64encode(text.encode()).decode()
    title = tokens.count_text("Q3", "o200k_base")
    empty = tokens.estimate({"messages": [{"role": "user", "content": []}]}, "chat", model="gpt-4o")
    sources: list[tuple[dict[str, Any], int]] = [
        ({"source": {"type": "text", "data": text}}, n),
        ({"title": "Q3", "source": {"type": "text", "data": text}}, n + title),
        ({"source": {"type": "content", "content": [{"type": "text", "text": text}]}}, n),
        ({"source": {"type": "base64", "media_type": "text/plain", "data": encoded}}, n),
    ]
    parts = [({"type": "document", "document": doc}, expected) for doc, expected in sources]
    parts.append(({"type": "file", "file": {"file_data": f"data:text/plain;base64,{encoded}"}}, n))
    for part, expected in parts:
        assert tokens.estimate(_pdf_request(part), "chat", model="gpt-4o") - empty == expected
    # What is not in the request (a URL, a file id) still counts as the part's JSON.
    by_url = {"type": "document", "document": {"source": {"type": "url", "url": "https://example.com/a.pdf"}}}
    assert 0 < tokens.estimate(_pdf_request(by_url), "chat", model="gpt-4o") - empty < 30
