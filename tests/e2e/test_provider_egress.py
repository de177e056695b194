"""Reaching providers from inside a corporate network (``providers[].tls``, ``providers[].proxy``,
``egress.proxy``), end to end with the official SDK: a provider serving a certificate of a
private CA made here, mutual TLS, and a CONNECT proxy written here (tests/egress_servers.py).
What a caller sees when the certificate is not trusted, the proxy refuses or is down, and what
the admin API and the log show of the proxy's credentials (nothing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.sdk import ask
from tests.e2e.test_media_openai import wav
from tests.e2e.test_provider_vertex import EMAIL, write_service_account
from tests.egress_servers import ConnectProxy, PrivateCA, TlsFront, TlsUpstream
from tests.servers import MASTER_KEY, Gateway, Mock, Process, refused_port, spawn, start_gateway

PROXY_USER = "corp-user"
PROXY_PASSWORD = "proxy-pass-7f3e9a1c"  # never in an answer, the admin API or the log
WRONG_PASSWORD = "wrong-pass-5b2d8e4f"
DOWN_PASSWORD = "down-pass-9c1a6b3d"


@dataclass
class World:
    gateway: Gateway
    ca: PrivateCA
    upstream: TlsUpstream
    mtls: TlsUpstream
    proxy: ConnectProxy  # egress.proxy, with credentials
    open_proxy: ConnectProxy  # one provider's own, without

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0)

    def ask(self, model: str) -> str | None:
        return self.client.chat.completions.create(model=model, messages=ask("hi")).choices[0].message.content

    def refusal(self, model: str) -> dict[str, Any]:
        with pytest.raises(openai.APIStatusError) as exc:
            self.client.chat.completions.create(model=model, messages=ask("hi"))
        assert exc.value.status_code == 502, exc.value.response.text
        error: dict[str, Any] = exc.value.response.json()["error"]
        return error


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("egress")
    ca = PrivateCA(tmp)
    server_cert, server_key = ca.issue("upstream")
    client_cert, client_key = ca.issue("gateway-client", client=True)
    # A client certificate the mutual-TLS upstream does not trust: another CA's.
    stranger_cert, stranger_key = PrivateCA(tmp, name="other").issue("stranger", client=True)
    upstream = TlsUpstream(server_cert, server_key)
    mtls = TlsUpstream(server_cert, server_key, client_ca=ca.cert_file)
    proxy = ConnectProxy((PROXY_USER, PROXY_PASSWORD))
    open_proxy = ConnectProxy()
    trusted = {"ca_file": str(ca.cert_file)}

    def provider(name: str, api_base: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": "openai", "api_base": api_base, "api_key": "sk-upstream-key", **extra}

    providers = [
        provider("trusted", upstream.url, tls=trusted, proxy=None),
        provider("untrusted", upstream.url, proxy=None),
        provider("unverified", upstream.url, tls={"verify": False}, proxy=""),
        provider("mtls", mtls.url, proxy=None,
                 tls={**trusted, "client_cert": str(client_cert), "client_key": str(client_key)}),
        provider("mtls-nocert", mtls.url, tls=trusted, proxy=None),
        provider("mtls-stranger", mtls.url, proxy=None,
                 tls={**trusted, "client_cert": str(stranger_cert), "client_key": str(stranger_key)}),
        provider("proxied-default", upstream.url, tls=trusted),  # egress.proxy
        provider("proxied-own", upstream.url, tls=trusted, proxy=f"http://127.0.0.1:{open_proxy.port}"),
        provider("proxied-wrong", upstream.url, tls=trusted,
                 proxy=f"http://{PROXY_USER}:{WRONG_PASSWORD}@127.0.0.1:{proxy.port}"),
        provider("proxied-down", upstream.url, tls=trusted,
                 proxy=f"http://{PROXY_USER}:{DOWN_PASSWORD}@127.0.0.1:{refused_port()}"),
    ]
    config = {
        "providers": providers,
        "models": [
            *({"name": p["name"], "provider": p["name"], "model": p["name"]} for p in providers),
            {"name": "down-then-direct", "provider": "proxied-down", "model": "proxied-down"},
        ],
        "egress": {"proxy": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"},
        "router": {"fallbacks": {"down-then-direct": ["trusted"]}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, tmp)
    yield World(gateway, ca, upstream, mtls, proxy, open_proxy)
    gateway.process.stop()
    for server in (upstream, mtls, proxy, open_proxy):
        server.stop()


def test_a_private_ca_in_ca_file_is_trusted(world: World) -> None:
    before = world.proxy.tunnels
    assert world.ask("trusted") == "tls:trusted"
    assert world.proxy.tunnels == before  # proxy: null opts out of egress.proxy


def test_without_the_ca_the_certificate_is_refused_with_a_clear_502(world: World) -> None:
    # The same origin as "trusted", whose connections it never gets: pools are per provider.
    assert world.ask("trusted") == "tls:trusted"
    error = world.refusal("untrusted")
    assert error["code"] == "upstream_unreachable"
    assert "provider 'untrusted'" in error["message"]
    assert "certificate verify failed" in error["message"]
    assert world.ask("trusted") == "tls:trusted"


def test_verify_false_connects_and_is_warned_about_once(world: World) -> None:
    assert world.ask("unverified") == "tls:unverified"
    warnings = [line for line in world.gateway.process.lines if "tls.verify is false" in line]
    assert len(warnings) == 1 and "provider 'unverified'" in warnings[0]


def test_mutual_tls_with_the_client_certificate(world: World) -> None:
    assert world.ask("mtls") == "tls:mtls"
    assert "gateway-client" in world.mtls.clients


def test_mutual_tls_without_a_client_certificate_is_refused(world: World) -> None:
    """The server refuses after the TLS 1.3 handshake, as the connection's end: the message
    says so and what does it; the request went out, so it stays an upstream error, not a
    connection that could not be made (a router retrying only those must not resend it)."""
    served = world.mtls.requests
    error = world.refusal("mtls-nocert")
    assert error["code"] == "upstream_error"
    assert error["message"] == (
        "provider 'mtls-nocert' closed a new connection before answering (the request was sent); a server "
        "requiring a client certificate does this (tls.client_cert: none is configured)")
    assert world.mtls.requests == served


def test_mutual_tls_with_a_certificate_the_server_refuses(world: World) -> None:
    served = world.mtls.requests
    error = world.refusal("mtls-stranger")
    assert error["code"] == "upstream_error"
    assert error["message"] == (
        "provider 'mtls-stranger' closed a new connection before answering (the request was sent); a "
        "server refusing the client certificate (tls.client_cert) does this")
    assert "stranger" not in error["message"].replace("mtls-stranger", "")  # no file path or content
    assert world.mtls.requests == served


def test_egress_proxy_tunnels_a_provider_without_its_own(world: World) -> None:
    before = world.proxy.tunnels
    for _ in range(3):
        assert world.ask("proxied-default") == "tls:proxied-default"
    assert world.proxy.tunnels > before
    assert world.proxy.targets[-1] == f"127.0.0.1:{world.upstream.port}"


def test_a_providers_own_proxy_replaces_the_default(world: World) -> None:
    before, default = world.open_proxy.tunnels, world.proxy.tunnels
    assert world.ask("proxied-own") == "tls:proxied-own"
    assert world.open_proxy.tunnels == before + 1
    assert world.proxy.tunnels == default


def test_a_proxy_refusing_the_tunnel_is_a_502_naming_it_without_credentials(world: World) -> None:
    refused = world.proxy.refused
    error = world.refusal("proxied-wrong")
    assert error["code"] == "upstream_unreachable"
    assert f"proxy http://127.0.0.1:{world.proxy.port}" in error["message"]
    assert "407" in error["message"]
    assert WRONG_PASSWORD not in error["message"] and PROXY_USER not in error["message"]
    assert world.proxy.refused > refused  # (retried, as a connection error is)


def test_a_proxy_that_is_down_is_a_502_naming_it(world: World) -> None:
    error = world.refusal("proxied-down")
    assert error["code"] == "upstream_unreachable"
    assert "provider 'proxied-down'" in error["message"] and "proxy http://127.0.0.1:" in error["message"]
    assert DOWN_PASSWORD not in error["message"]


def test_a_proxy_that_is_down_falls_back_like_a_connect_error(world: World) -> None:
    assert world.ask("down-then-direct") == "tls:trusted"


def test_the_admin_api_masks_proxy_credentials(world: World) -> None:
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    resp = httpx.get(f"{world.gateway.url}/admin/v1/providers", headers=admin)
    assert resp.status_code == 200, resp.text
    shown = {p["name"]: p for p in resp.json()["data"]}
    assert shown["proxied-default"]["proxy"] == f"http://{PROXY_USER}:[hidden]@127.0.0.1:{world.proxy.port}"
    assert shown["proxied-own"]["proxy"] == f"http://127.0.0.1:{world.open_proxy.port}"
    assert shown["trusted"]["proxy"] is None
    assert shown["mtls"]["tls"]["client_cert"].endswith("gateway-client.pem")
    for secret in (PROXY_PASSWORD, WRONG_PASSWORD, DOWN_PASSWORD):
        assert secret not in resp.text


@pytest.mark.parametrize("field", [{"proxy": "http://proxy:3128"}, {"tls": {"verify": False}},
                                   {"options": {"proxy": "http://proxy:3128"}}])
def test_stored_providers_take_neither_tls_nor_proxy(world: World, field: dict[str, Any]) -> None:
    body = {"name": "stored", "type": "openai", "api_base": world.upstream.url, **field}
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    resp = httpx.post(f"{world.gateway.url}/admin/v1/providers", json=body, headers=admin)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] in ("proxy", "tls", "options.proxy")


def test_the_log_holds_no_proxy_credential(world: World) -> None:
    world.refusal("proxied-wrong")
    world.refusal("proxied-down")
    output = world.gateway.process.output
    assert "proxied-down" in output  # the failures were logged
    for secret in (PROXY_PASSWORD, WRONG_PASSWORD, DOWN_PASSWORD):
        assert secret not in output


# -- bad configuration ---------------------------------------------------------------------


def _check(tmp_path: Path, provider: dict[str, Any], **extra: Any) -> Process:
    config = {
        "providers": [{"name": "p", "type": "openai", "api_base": "https://127.0.0.1:9/v1", **provider}],
        "models": [{"name": "m", "provider": "p", "model": "m"}],
        "auth": {"master_key": "sk-test-master-key-123"},
        **extra,
    }
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = spawn(["config", "check", str(path)])
    proc.wait_exit(60)
    assert proc.proc.returncode == 2, proc.output
    assert "Traceback" not in proc.output
    return proc


def test_a_missing_ca_file_is_a_config_error_naming_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    proc = _check(tmp_path, {"tls": {"ca_file": str(missing)}})
    assert f"providers[0].tls.ca_file: '{missing}' does not exist" in proc.output


def test_a_file_that_is_not_pem_is_named_never_shown(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("TOP-SECRET-NOT-A-CERTIFICATE\n")
    proc = _check(tmp_path, {"tls": {"ca_file": str(garbage)}})
    assert f"providers[0].tls.ca_file: '{garbage}'" in proc.output
    assert "TOP-SECRET" not in proc.output


def test_a_client_key_not_matching_its_certificate_is_a_config_error(tmp_path: Path) -> None:
    ca = PrivateCA(tmp_path)
    cert, _ = ca.issue("one", client=True)
    _, other_key = ca.issue("two", client=True)
    proc = _check(tmp_path, {"tls": {"client_cert": str(cert), "client_key": str(other_key)}})
    assert "providers[0].tls.client_cert/client_key" in proc.output
    assert "PRIVATE KEY" not in proc.output


def test_a_client_cert_without_its_key_is_a_config_error(tmp_path: Path) -> None:
    proc = _check(tmp_path, {"tls": {"client_cert": str(tmp_path / "c.pem")}})
    assert "client_cert and client_key go together" in proc.output


@pytest.mark.parametrize("where", ["provider", "egress"])
def test_an_https_proxy_is_a_config_error_shown_without_its_password(tmp_path: Path, where: str) -> None:
    proxy = f"https://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:3128"
    proc = _check(tmp_path, {"proxy": proxy} if where == "provider" else {},
                  **({"egress": {"proxy": proxy}} if where == "egress" else {}))
    assert "unsupported proxy scheme 'https'" in proc.output
    assert PROXY_PASSWORD not in proc.output


# -- every path to a provider: Vertex's token, Bedrock, a streamed upload ---------------------


@dataclass
class MockWorld:
    gateway: Gateway
    proxy: ConnectProxy
    front: TlsFront

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0)


@pytest.fixture(scope="module")
def mock_world(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockWorld]:
    """The mock upstream (every provider format) behind HTTPS of a private CA, reached only
    through a proxy with credentials (egress.proxy)."""
    tmp = tmp_path_factory.mktemp("egress-mock")
    ca = PrivateCA(tmp)
    front = TlsFront(*ca.issue("front"), backend=mock_upstream.port)
    proxy = ConnectProxy((PROXY_USER, PROXY_PASSWORD))
    account = tmp / "sa.json"
    # The service account's token endpoint is the mock's, over the same HTTPS front.
    write_service_account(account, mock_upstream, EMAIL, publish=True)
    info = json.loads(account.read_text())
    account.write_text(json.dumps({**info, "token_uri": f"{front.url}/vertex/token"}))
    tls = {"ca_file": str(ca.cert_file)}
    config = {
        "providers": [
            {"name": "vertex", "type": "vertex", "api_base": front.url, "vertex_project": "mock-project",
             "vertex_location": "us-central1", "credentials_file": str(account), "tls": tls},
            {"name": "vertex-wrong", "type": "vertex", "api_base": front.url,
             "vertex_project": "mock-project", "vertex_location": "us-central1",
             "credentials_file": str(account), "tls": tls,
             "proxy": f"http://{PROXY_USER}:{WRONG_PASSWORD}@127.0.0.1:{proxy.port}"},
            {"name": "aws", "type": "bedrock", "api_base": front.url, "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1", "tls": tls},
            {"name": "openai", "type": "openai", "api_base": f"{front.url}/v1", "api_key": "${UPSTREAM_KEY}",
             "tls": tls},
            {"name": "plain", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
             "api_key": "${UPSTREAM_KEY}"},
            {"name": "plain-wrong", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
             "api_key": "${UPSTREAM_KEY}",
             "proxy": f"http://{PROXY_USER}:{WRONG_PASSWORD}@127.0.0.1:{proxy.port}"},
        ],
        "models": [
            {"name": "vertex-flash", "provider": "vertex", "model": "gemini-2.5-flash"},
            {"name": "vertex-wrong", "provider": "vertex-wrong", "model": "gemini-2.5-flash"},
            {"name": "claude", "provider": "aws", "model": "anthropic.claude-3-7-sonnet-20250219-v1:0"},
            {"name": "whisper-1", "provider": "openai", "model": "whisper-1"},
            {"name": "plain-http", "provider": "plain", "model": "gpt-4o-mini"},
            {"name": "plain-http-wrong", "provider": "plain-wrong", "model": "gpt-4o-mini"},
        ],
        "egress": {"proxy": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gateway = start_gateway(config, tmp)
    yield MockWorld(gateway, proxy, front)
    gateway.process.stop()
    front.stop()
    proxy.stop()


def test_vertex_fetches_its_token_and_calls_through_the_proxy(mock_world: MockWorld) -> None:
    before = mock_world.proxy.tunnels
    answer = mock_world.client.chat.completions.create(model="vertex-flash", messages=ask("hi"))
    assert answer.choices[0].message.content
    # One tunnel for the token endpoint (its own session), one for the call.
    assert mock_world.proxy.tunnels >= before + 2
    assert set(mock_world.proxy.targets[before:]) == {f"127.0.0.1:{mock_world.front.port}"}


def test_a_proxy_refusing_vertexs_token_fetch_is_a_502_naming_it(mock_world: MockWorld) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        mock_world.client.chat.completions.create(model="vertex-wrong", messages=ask("hi"))
    assert exc.value.status_code == 502
    error = exc.value.response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert "provider 'vertex-wrong'" in error["message"] and "access token" in error["message"]
    assert f"proxy http://127.0.0.1:{mock_world.proxy.port} refused the tunnel: HTTP 407" in error["message"]
    assert WRONG_PASSWORD not in error["message"]


def test_bedrock_calls_through_the_proxy(mock_world: MockWorld) -> None:
    before = mock_world.proxy.tunnels
    answer = mock_world.client.chat.completions.create(model="claude", messages=ask("hi"))
    assert answer.choices[0].message.content
    assert mock_world.proxy.tunnels == before + 1


def test_a_streamed_upload_goes_through_the_proxy_with_the_providers_tls(mock_world: MockWorld) -> None:
    before = mock_world.proxy.tunnels
    audio = ("a.wav", wav(0.1), "audio/wav")
    done = mock_world.client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert isinstance(done.text, str)
    assert mock_world.proxy.tunnels == before + 1


def test_a_plain_http_provider_goes_through_the_proxy_in_its_forward_form(mock_world: MockWorld) -> None:
    before, tunnels = mock_world.proxy.forwarded, mock_world.proxy.tunnels
    answer = mock_world.client.chat.completions.create(model="plain-http", messages=ask("hi"))
    assert answer.choices[0].message.content
    assert mock_world.proxy.forwarded == before + 1
    assert mock_world.proxy.tunnels == tunnels


def test_a_forward_proxys_407_is_a_502_naming_it(mock_world: MockWorld) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        mock_world.client.chat.completions.create(model="plain-http-wrong", messages=ask("hi"))
    assert exc.value.status_code == 502
    error = exc.value.response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert f"proxy http://127.0.0.1:{mock_world.proxy.port} refused the request: HTTP 407" in error["message"]
    assert WRONG_PASSWORD not in error["message"]
