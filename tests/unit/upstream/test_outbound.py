"""A provider's outbound settings (upstream/outbound.py): the proxy URL taken apart once, its
credentials kept out of reprs and messages and scrubbed from upstream errors; ``egress.proxy``
filled into the file's providers; nothing built for a provider that sets neither key."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from switchboard.config.schema import ProviderConfig, Settings, Timeouts
from switchboard.upstream import outbound
from switchboard.upstream.auth import StaticHeaderAuth
from switchboard.upstream.client import UpstreamClient

PASSWORD = "p@ss:w0rd-secret"


def _settings(egress: dict[str, Any], *providers: dict[str, Any]) -> Settings:
    return Settings.model_validate({
        "auth": {"master_key": "sk-test-master-key-123"},
        "egress": egress,
        "providers": [{"type": "openai", **p} for p in providers],
    })


def test_a_proxy_url_is_parsed_once_with_its_credentials_kept_out_of_sight() -> None:
    proxy = outbound.parse_proxy("http://corp%40user:p%40ss%3Aw0rd-secret@proxy.internal:3128")
    assert (proxy.host, proxy.port, proxy.shown) == ("proxy.internal", 3128, "http://proxy.internal:3128")
    token = base64.b64encode(f"corp@user:{PASSWORD}".encode()).decode()
    assert proxy.authorization == f"Basic {token}"
    assert PASSWORD not in repr(proxy) and token not in repr(proxy)
    assert {PASSWORD, token} <= set(proxy.secrets())
    assert outbound.parse_proxy("http://proxy.internal").port == 80
    assert outbound.parse_proxy("http://proxy.internal:8080").authorization is None


def test_upstream_errors_are_scrubbed_of_the_proxy_credentials() -> None:
    settings = _settings({}, {"name": "p", "proxy": "http://u:p%40ss%3Aw0rd-secret@proxy:3128"})
    egress = outbound.build(settings.providers[0])
    client = UpstreamClient("p", StaticHeaderAuth({}), 4, {}, Timeouts(), outbound=egress)
    token = base64.b64encode(f"u:{PASSWORD}".encode()).decode()
    scrubbed = client.scrub(f"proxy said: bad password {PASSWORD}, header Basic {token}".encode())
    assert PASSWORD.encode() not in scrubbed and token.encode() not in scrubbed


def test_egress_proxy_is_every_file_providers_unless_it_names_its_own() -> None:
    settings = _settings(
        {"proxy": "http://proxy:3128"},
        {"name": "default"}, {"name": "own", "proxy": "http://other:8080"},
        {"name": "none", "proxy": None}, {"name": "empty", "proxy": ""},
    )
    proxies = {p.name: p.proxy.get_secret_value() if p.proxy else None for p in settings.providers}
    assert proxies == {"default": "http://proxy:3128", "own": "http://other:8080",
                       "none": None, "empty": None}


def test_a_provider_without_tls_or_proxy_gets_nothing_built() -> None:
    assert outbound.build(ProviderConfig(name="p", type="openai")) is None


@pytest.mark.parametrize(("proxy", "message"), [
    ("https://u:secret@proxy:3128", "unsupported proxy scheme 'https'"),
    ("socks5://proxy:1080", "unsupported proxy scheme 'socks5'"),
    ("http://proxy:3128/path", "no path, query or fragment"),
    ("http://:3128", "needs a host"),
    ("proxy:3128", "expected a URL"),
])
def test_a_proxy_that_is_not_an_http_url_is_refused(proxy: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings({}, {"name": "p", "proxy": proxy})
    with pytest.raises(ValidationError, match=message):
        _settings({"proxy": proxy})
