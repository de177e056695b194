"""Remote image inlining: SSRF protection and limits (pipeline/images.py)."""

from __future__ import annotations

import pytest

from switchboard.config.schema import ImagesConfig
from switchboard.errors import InvalidRequest
from switchboard.pipeline.images import ImageFetcher, remote_image_parts
from tests.servers import Mock


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x.png",
    "http://10.1.2.3/x.png",
    "http://[::1]:9/x.png",
    "http://169.254.169.254/latest/meta-data",
])
async def test_private_ip_literals_are_refused(url: str) -> None:
    fetcher = ImageFetcher(ImagesConfig())
    with pytest.raises(InvalidRequest, match="private address"):
        await fetcher.fetch(url)
    await fetcher.close()


async def test_names_resolving_to_private_addresses_are_refused(mock_upstream: Mock) -> None:
    # "localhost" passes the literal check; the resolver refuses its loopback addresses.
    fetcher = ImageFetcher(ImagesConfig())
    with pytest.raises(InvalidRequest, match="not a public address"):
        await fetcher.fetch(f"http://localhost:{mock_upstream.port}/images/pixel.png")
    await fetcher.close()


async def test_private_networks_allowed_when_configured(mock_upstream: Mock) -> None:
    fetcher = ImageFetcher(ImagesConfig(allow_private_networks=True))
    data_url = await fetcher.fetch(f"{mock_upstream.url}/images/pixel.png")
    assert data_url.startswith("data:image/png;base64,iVBOR")
    await fetcher.close()


async def test_size_and_type_limits(mock_upstream: Mock) -> None:
    fetcher = ImageFetcher(ImagesConfig(allow_private_networks=True, max_bytes=10))
    with pytest.raises(InvalidRequest, match="exceeds 10 bytes"):
        await fetcher.fetch(f"{mock_upstream.url}/images/pixel.png")
    with pytest.raises(InvalidRequest, match="unsupported content type"):
        await fetcher.fetch(f"{mock_upstream.url}/_mock/stats")
    with pytest.raises(InvalidRequest, match="HTTP 404"):
        await fetcher.fetch(f"{mock_upstream.url}/images/none.png")
    await fetcher.close()


def test_only_http_image_urls_are_collected() -> None:
    request = {"messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]},
        {"role": "user", "content": "plain"},
    ]}
    assert [p["image_url"]["url"] for p in remote_image_parts(request)] == ["https://example.com/a.png"]


def test_image_url_schemes_are_case_insensitive() -> None:
    request = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "HTTP://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "Https://example.com/b.png"}},
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
    ]}]}
    assert [p["image_url"]["url"] for p in remote_image_parts(request)] == [
        "HTTP://example.com/a.png", "Https://example.com/b.png"
    ]
