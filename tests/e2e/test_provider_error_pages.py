"""Every provider type behind a proxy or load balancer that answers in plain text or HTML.

A provider's API may sit behind something that answers a failure with its own page rather than
the API's JSON error: nginx's "502 Bad Gateway" page, a plain-text "Too Many Requests", Google's
front end's HTML page (a kilobyte of CSS before its words). The client gets that page's words as
the error message (one line, no markup or style sheet, credentials it echoes scrubbed), at the
status each provider type maps that HTTP status to, never a bare "returned HTTP 502".

The fake server answers by the first segment of the request's path, which each provider's
``api_base`` starts with: ``/nginx502/…`` an nginx page, ``/text429/…`` plain text quoting the
credential headers it was sent, ``/google404/…`` Google's front end's page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.test_provider_vertex import write_service_account
from tests.fake_http import QuietHandler, serving
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, start_gateway

NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
             "</body>\r\n</html>\r\n")
# Google's front end's page (as it answers an unknown path), its style sheet shortened.
GOOGLE_404 = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <meta name=viewport content=\"initial-scale=1, minimum-scale=1, width=device-width\">\n"
    "  <title>Error 404 (Not Found)!!1</title>\n  <style>\n"
    "    *{margin:0;padding:0}html,code{font:15px/22px arial,sans-serif}"
    + "html{background:#fff;color:#222}" * 40
    + "\n  </style>\n  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>\n"
    "  <p><b>404.</b> <ins>That&#39;s an error.</ins>\n"
    "  <p>The requested URL <code>/x</code> was not found on this server.  "
    "<ins>That&#39;s all we know.</ins>\n"
)
GOOGLE_404_WORDS = ("Error 404 (Not Found)!!1 404. That's an error. The requested URL /x was not found on "
                    "this server. That's all we know.")
BEDROCK_SECRET = "bedrock-secret-key-for-error-pages"


class _Proxy(QuietHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        page = self.path.split("/")[1]
        if page == "nginx502":
            self._send(502, "text/html", NGINX_502)
        elif page == "text429":
            sent = " ".join(f"{name}: {self.headers[name]}" for name in
                            ("authorization", "x-api-key", "api-key", "x-goog-api-key") if self.headers[name])
            self._send(429, "text/plain", f"Too Many Requests\n(for {sent})\n")
        elif page == "google404":
            self._send(404, "text/html; charset=UTF-8", GOOGLE_404)
        else:
            self._send(500, "text/plain", "unexpected request")

    def _send(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


TYPES = ("openai", "azure", "anthropic", "cohere", "mistral", "gemini", "vertex", "bedrock")
PAGES = ("nginx502", "text429", "google404")


def _provider(kind: str, name: str, base: str, key_file: Path) -> dict[str, Any]:
    provider: dict[str, Any] = {"name": name, "type": kind, "api_base": base}
    if kind == "vertex":
        provider.update(vertex_project="mock-project", credentials_file=str(key_file))
    elif kind == "bedrock":
        provider.update(aws_access_key_id="AKIDTEST", aws_secret_access_key=BEDROCK_SECRET,
                        aws_region="us-east-1")
    else:
        provider["api_key"] = "${UPSTREAM_KEY}"
    return provider


def _model(kind: str) -> str:
    return {"gemini": "gemini-2.5-flash", "vertex": "gemini-2.5-flash", "bedrock": "anthropic.claude-3-haiku",
            "anthropic": "claude-sonnet-4-5", "cohere": "command-r", "mistral": "mistral-small-latest"
            }.get(kind, "gpt-4o-mini")


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serving(_Proxy) as root:
        yield from _gateway(root, mock_upstream, tmp_path_factory)


def _gateway(root: str, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("error-pages")
    key_file = folder / "sa.json"
    write_service_account(key_file, mock_upstream, "pages@mock-project.iam.gserviceaccount.com", publish=True)
    providers, models = [], []
    for kind in TYPES:
        for page in PAGES:
            name = f"{kind}-{page}"
            suffix = "/v1" if kind in ("openai", "mistral") else ""
            providers.append(_provider(kind, name, f"{root}/{page}{suffix}", key_file))
            models.append({"name": name, "provider": name, "model": _model(kind)})
    config = {"providers": providers, "models": models, "router": {"num_retries": 0},
              "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"}}
    gw = start_gateway(config, folder)
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _failure(client: openai.OpenAI, model: str, stream: bool) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                               stream=stream)
        if stream:
            list(reply)
    return info.value


def _message(error: openai.APIStatusError) -> str:
    assert isinstance(error.body, dict)
    return str(error.body["message"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", TYPES)
def test_a_proxys_html_page_gives_its_words(client: openai.OpenAI, kind: str, stream: bool) -> None:
    error = _failure(client, f"{kind}-nginx502", stream)
    assert error.status_code == 502
    assert error.code == "upstream_error"
    message = _message(error)
    assert message.endswith("failed with HTTP 502: 502 Bad Gateway 502 Bad Gateway nginx"), message


@pytest.mark.parametrize("kind", TYPES)
def test_a_plain_text_answer_keeps_the_status_mapping_and_no_credential(
    client: openai.OpenAI, kind: str
) -> None:
    error = _failure(client, f"{kind}-text429", False)
    assert error.status_code == 429
    assert error.type == "rate_limit_error"
    message = _message(error)
    assert message.startswith("Too Many Requests (for "), message
    assert "\n" not in message
    assert UPSTREAM_KEY not in message and BEDROCK_SECRET not in message
    if kind not in ("bedrock", "vertex"):  # a static key, echoed and scrubbed
        assert "[redacted]" in message


@pytest.mark.parametrize("kind", ["gemini", "vertex"])
def test_googles_front_end_page_gives_its_words_not_its_style_sheet(client: openai.OpenAI, kind: str) -> None:
    error = _failure(client, f"{kind}-google404", False)
    assert error.status_code == 404
    assert _message(error) == GOOGLE_404_WORDS
