"""Caller credentials, end to end: a caller authenticated by its Switchboard key sends its own
provider credential in ``x-provider-authorization`` and the provider gets that instead of the
stored one (OpenAI key; Anthropic API key; Anthropic OAuth token as Bearer with the OAuth beta).
The upstreams here are mocks that accept only the caller's credential, so a call succeeds only
if the caller's credential, and not the stored one, reached them. Refused (400) when the
deployment or the provider does not allow it and for provider types that cannot use it; never
logged. Every test runs on the embedded default and on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.mcp_servers import start_mcp_server
from tests.servers import (
    MASTER_KEY,
    Gateway,
    Mock,
    captured,
    new_marker,
    openai_config,
    refused_port,
    start_gateway,
    start_mock,
)
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
HEADER = "x-provider-authorization"
CALLER_KEY = "sk-caller-own-key-0123456789abcdefXYZ"
CALLER_OAUTH = "sk-ant-oat01-caller-oauth-token-0123456789abcdefXYZ"
WRONG_CALLER_KEY = "sk-caller-wrong-key-9876543210zyxwvuTSR"
CONFIGURED_BETA = "prompt-caching-2024-07-31"


@pytest.fixture(scope="module")
def caller_mocks() -> Iterator[tuple[Mock, Mock]]:
    """Upstreams that accept only the caller's key, and only the caller's OAuth token."""
    by_key, by_oauth = start_mock(api_key=CALLER_KEY), start_mock(api_key=CALLER_OAUTH)
    yield by_key, by_oauth
    by_key.process.stop()
    by_oauth.process.stop()


@pytest.fixture(scope="module")
def open_mock() -> Iterator[Mock]:
    """An upstream that takes any key: the gateway's stored one and the callers' alike."""
    mock = start_mock(api_key=None)
    yield mock
    mock.process.stop()


def byo_config(mock: Mock, by_key: Mock, by_oauth: Mock, open_mock: Mock) -> dict[str, Any]:
    config = openai_config(mock, log_level="debug", access_log=True)
    allow = {"api_key": "${UPSTREAM_KEY}", "allow_caller_credentials": True}  # a stored key they refuse
    config["providers"] += [
        # One account for the callers without a credential of their own, any caller's with one.
        {"name": "byo-shared", "type": "openai", "api_base": f"{open_mock.url}/v1", **allow},
        {"name": "byo-openai", "type": "openai", "api_base": f"{by_key.url}/v1", **allow},
        {"name": "byo-anthropic", "type": "anthropic", "api_base": by_key.url, **allow},
        {"name": "byo-anthropic-oauth", "type": "anthropic", "api_base": by_oauth.url,
         "anthropic_beta": [CONFIGURED_BETA], **allow},
        {"name": "locked-openai", "type": "openai", "api_base": f"{by_key.url}/v1",
         "api_key": "${UPSTREAM_KEY}"},
        {"name": "byo-bedrock", "type": "bedrock", "api_base": by_key.url, "aws_access_key_id": "AKIDTEST",
         "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1",
         "allow_caller_credentials": True},
    ]
    # Opted-in providers nothing listens for: their groups fall back (or retry) elsewhere.
    for name in ("byo-dead-fallback", "byo-dead-mixed", "byo-dead-anthropic"):
        config["providers"].append({"name": name, "type": "openai", "api_base": f"http://127.0.0.1:{refused_port()}/v1",
                                    **allow})
    config["models"] += [
        {"name": "byo-down", "provider": "byo-dead-fallback", "model": "gpt-4o-mini"},
        {"name": "byo-mixed", "provider": "byo-dead-mixed", "model": "gpt-4o-mini"},
        {"name": "byo-mixed", "provider": "locked-openai", "model": "gpt-4o-mini"},
        {"name": "byo-down-to-claude", "provider": "byo-dead-anthropic", "model": "gpt-4o-mini"},
    ]
    config["router"] = {"fallbacks": {"byo-down": ["locked-gpt"], "byo-down-to-claude": ["byo-claude"]},
                        "groups": {name: {"allow_pinning": True} for name in ("shared-gpt", "byo-mixed")}}
    config["models"] += [
        {"name": "shared-gpt", "provider": "byo-shared", "model": "gpt-4o-mini", "deployment": name}
        for name in ("limited", "unpaid")
    ]
    config["models"] += [
        {"name": "byo-gpt", "provider": "byo-openai", "model": "gpt-4o-mini"},
        {"name": "byo-claude", "provider": "byo-anthropic", "model": "claude-sonnet-4-5"},
        {"name": "byo-claude-oauth", "provider": "byo-anthropic-oauth", "model": "claude-sonnet-4-5"},
        {"name": "locked-gpt", "provider": "locked-openai", "model": "gpt-4o-mini"},
        {"name": "byo-bedrock", "provider": "byo-bedrock", "model": "amazon.titan-text-express-v1"},
        {"name": "byo-native", "provider": "byo-openai", "model": "gpt-4o-mini", "responses": "native"},
        {"name": "native-gpt", "provider": "local-openai", "model": "gpt-4o-mini", "responses": "native"},
    ]
    config["auth"]["caller_credentials"] = {"enabled": True}
    return config


@dataclass
class Deployment:
    kind: str
    gateway: Gateway  # caller credentials enabled
    plain: Gateway  # the default: caller credentials off
    key: str  # a developer key for every model

    def sdk(self, credential: str | None = None) -> openai.OpenAI:
        headers = {HEADER: credential} if credential is not None else None
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.key, max_retries=0, timeout=30,
                             default_headers=headers)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest,
    mock_upstream: Mock,
    caller_mocks: tuple[Mock, Mock],
    open_mock: Mock,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    config = byo_config(mock_upstream, *caller_mocks, open_mock)
    plain = openai_config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        database = {"url": postgres.create_database(f"byo_{uuid.uuid4().hex[:8]}")}
        config.update(database=database, redis={"url": redis.url})
        plain.update(database=database, redis={"url": redis.url})
    gw = start_gateway(config, tmp_path_factory.mktemp(f"byo-{request.param}"))
    plain_gw = start_gateway(plain, tmp_path_factory.mktemp(f"byo-plain-{request.param}"))
    created = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text
    yield Deployment(request.param, gw, plain_gw, created.json()["key"])
    gw.process.stop()
    plain_gw.process.stop()


def upstream_saw(mock: Mock, marker: str) -> dict[str, Any]:
    (seen,) = captured(mock, marker, outcome="completed")
    assert seen["status"] == 200, seen
    headers: dict[str, Any] = seen["headers"]
    assert HEADER not in headers  # never forwarded as it came
    text = json.dumps(seen)
    assert CALLER_KEY not in text and CALLER_OAUTH not in text
    return headers


def test_an_openai_provider_is_called_with_the_callers_key(
    deployment: Deployment, caller_mocks: tuple[Mock, Mock]
) -> None:
    by_key, _ = caller_mocks
    # The stored key is not one this upstream accepts: without the caller's, the call fails.
    with pytest.raises(openai.APIStatusError):
        deployment.sdk().chat.completions.create(model="byo-gpt", messages=ask("stored key"))
    marker = new_marker()
    reply = deployment.sdk(CALLER_KEY).chat.completions.create(
        model="byo-gpt", messages=ask(f"mine mock:capture={marker}"))
    assert reply.choices[0].message.content and "mine" in reply.choices[0].message.content
    headers = upstream_saw(by_key, marker)
    assert headers["authorization"] == "<redacted>"  # the mock hides credentials it was sent
    # "Bearer <key>" works as well, and streams do too.
    chunks = deployment.sdk(f"Bearer {CALLER_KEY}").chat.completions.create(
        model="byo-gpt", messages=ask("streamed with mine"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("streamed with mine")
    stored = deployment.sdk().chat.completions.create(model="gpt-4o-mini", messages=ask("x"))
    assert stored.choices  # without a caller credential, the stored one as always


def test_an_anthropic_provider_is_called_with_the_callers_api_key(
    deployment: Deployment, caller_mocks: tuple[Mock, Mock]
) -> None:
    by_key, _ = caller_mocks
    marker = new_marker()
    reply = deployment.sdk(CALLER_KEY).chat.completions.create(
        model="byo-claude", messages=ask(f"anthropic key mock:capture={marker}"))
    assert reply.choices[0].message.content
    headers = upstream_saw(by_key, marker)
    assert headers["x-api-key"] == "<redacted>" and "authorization" not in headers
    # Anthropic clients of the gateway send it the same way.
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=deployment.key, max_retries=0,
                                 default_headers={HEADER: CALLER_KEY})
    hi: Any = [{"role": "user", "content": "hi"}]
    assert client.messages.create(model="byo-claude", max_tokens=20, messages=hi).content
    assert client.messages.count_tokens(model="byo-claude", messages=hi).input_tokens > 0  # answered here
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.count_tokens(model="locked-gpt", messages=hi)
    assert "does not accept credentials from callers" in str(refused.value.body)  # Anthropic's shape: no code


def test_an_anthropic_oauth_token_is_sent_as_bearer_with_the_oauth_beta(
    deployment: Deployment, caller_mocks: tuple[Mock, Mock]
) -> None:
    _, by_oauth = caller_mocks
    marker = new_marker()
    reply = deployment.sdk(CALLER_OAUTH).chat.completions.create(
        model="byo-claude-oauth", messages=ask(f"subscription user mock:capture={marker}"))
    assert reply.choices[0].message.content
    headers = upstream_saw(by_oauth, marker)
    assert headers["authorization"] == "<redacted>" and "x-api-key" not in headers
    assert headers["anthropic-beta"].split(",") == [CONFIGURED_BETA, "oauth-2025-04-20"]
    with pytest.raises(openai.APIStatusError):  # the stored key alone is refused by this upstream
        deployment.sdk().chat.completions.create(model="byo-claude-oauth", messages=ask("x"))


def refused(client: openai.OpenAI, model: str) -> tuple[int, str]:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=model, messages=ask("x"))
    return err.value.status_code, str(err.value.body["code"])  # type: ignore[index]


EMPTY_ZIP = "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="
# Responses fields naming objects of the provider account, and the param each is refused with.
ACCOUNT_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"conversation": "conv_someone_elses"}, "conversation"),
    ({"conversation": {"id": "conv_someone_elses"}}, "conversation"),
    ({"prompt": {"id": "pmpt_someone_elses", "version": "2"}}, "prompt"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                {"type": "file_search", "vector_store_ids": ["vs_someone_elses"]}]},
     "tools[1].vector_store_ids"),
    ({"tools": [{"type": "code_interpreter", "container": "cntr_someone_elses"}]}, "tools[0].container"),
    # The shell tool's hosted container: an existing one by id, skills uploaded to the account,
    # and an environment type the gateway does not know (it may name an object).
    ({"tools": [{"type": "shell", "environment": {"type": "container_reference",
                                                  "container_id": "cntr_someone_elses"}}]},
     "tools[0].environment.container_id"),
    ({"tools": [{"type": "shell", "environment": {
        "type": "container_auto", "skills": [
            {"type": "inline", "name": "n", "description": "d",
             "source": {"type": "base64", "media_type": "application/zip", "data": EMPTY_ZIP}},
            {"type": "skill_reference", "skill_id": "skill_someone_elses"}]}}]},
     "tools[0].environment.skills[1]"),
    ({"tools": [{"type": "shell", "environment": {"type": "container_snapshot", "snapshot_id": "snap_1"}}]},
     "tools[0].environment"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}},
                {"type": "shell", "environment": {"type": "container_reference", "container_id": "cntr_x"}}]},
     "tools[1].environment.container_id"),
]


def test_a_native_response_names_account_objects_only_with_the_callers_credential(
    deployment: Deployment, mock_upstream: Mock, caller_mocks: tuple[Mock, Mock]
) -> None:
    # On the gateway's credential, a conversation, prompt or vector store id would be read in the
    # account every caller shares: refused before anything is sent, saying why.
    by_key, _ = caller_mocks
    for extra, param in ACCOUNT_FIELDS:
        marker = new_marker()
        with pytest.raises(openai.BadRequestError) as err:
            deployment.sdk().responses.create(model="native-gpt", input=f"hi mock:capture={marker}",
                                              **extra)  # type: ignore[call-overload]
        assert err.value.code == "unsupported_parameter" and err.value.param == param
        assert "provider credential" in err.value.message and f"'{param}'" in err.value.message
        assert captured(mock_upstream, marker, timeout=0.5) == []
        # With the caller's own credential the account is the caller's: sent as written.
        marker = new_marker()
        reply = deployment.sdk(CALLER_KEY).responses.create(
            model="byo-native", input=f"hi mock:capture={marker}", **extra)  # type: ignore[call-overload]
        assert reply.status == "completed"
        [seen] = captured(by_key, marker, outcome="completed")
        assert all(seen["body"][name] == value for name, value in extra.items())
    # A native request naming none of them is served on the gateway's credential as always: a
    # shell tool in a new container (with inline skills) or on the caller's machine, a computer.
    for tools in ([{"type": "web_search"}],
                  [{"type": "shell", "environment": {"type": "container_auto", "memory_limit": "4g"}}],
                  [{"type": "shell", "environment": {
                      "type": "local", "skills": [{"name": "n", "description": "d", "path": "/skills/n"}]}}],
                  [{"type": "shell"}],
                  [{"type": "computer_use_preview", "environment": "browser", "display_width": 1024,
                    "display_height": 768}]):
        marker = new_marker()
        reply = deployment.sdk().responses.create(model="native-gpt", input=f"hi mock:capture={marker}",
                                                  tools=tools)  # type: ignore[arg-type]
        assert reply.status == "completed"
        [seen] = captured(mock_upstream, marker, outcome="completed")
        assert seen["body"]["tools"] == tools


def test_a_native_response_references_stored_items_only_with_the_callers_credential(
    deployment: Deployment, mock_upstream: Mock, caller_mocks: tuple[Mock, Mock]
) -> None:
    # An item_reference names an item stored upstream: on the gateway's credential that can only
    # be one of the shared account's (the gateway stores nothing there: store is false), so it is
    # refused, naming the item; the caller's own account may hold it.
    by_key, _ = caller_mocks

    def items(marker: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"hi mock:capture={marker}"},
                {"type": "item_reference", "id": "msg_someone_elses"}]

    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        deployment.sdk().responses.create(model="native-gpt", input=items(marker))  # type: ignore[arg-type]
    assert err.value.code == "unsupported_parameter" and err.value.param == "input[1]"
    assert "'input[1]' names an item of the provider account" in err.value.message
    assert "provider credential" in err.value.message
    assert captured(mock_upstream, marker, timeout=0.5) == []
    marker = new_marker()
    reply = deployment.sdk(CALLER_KEY).responses.create(model="byo-native", input=items(marker))  # type: ignore[arg-type]
    assert reply.status == "completed"
    [seen] = captured(by_key, marker, outcome="completed")
    assert seen["body"]["input"][1] == {"type": "item_reference", "id": "msg_someone_elses"}
    # Tools loaded by a tool search are tools of the request: the same objects are refused there.
    loaded = [{"role": "user", "content": "hi"},
              {"type": "tool_search_output", "call_id": "ts1", "execution": "client", "tools": [
                  {"type": "shell",
                   "environment": {"type": "container_reference", "container_id": "cntr_x"}}]}]
    with pytest.raises(openai.BadRequestError) as err:
        deployment.sdk().responses.create(model="native-gpt", input=loaded)  # type: ignore[arg-type]
    assert err.value.code == "unsupported_parameter"
    assert err.value.param == "input[1].tools[0].environment.container_id"
    # A code interpreter asked to create its own container is no object of the account.
    reply = deployment.sdk().responses.create(model="native-gpt", input="hi", tools=[
        {"type": "code_interpreter", "container": {"type": "auto"}}])
    assert reply.status == "completed"


# Output items sent back as input, naming the container they ran in, and the param refused.
REPLAYED: list[tuple[dict[str, Any], str]] = [
    ({"type": "code_interpreter_call", "id": "ci_1", "status": "completed", "code": "print(1)",
      "container_id": "cntr_someone_elses", "outputs": None}, "input[1].container_id"),
    ({"type": "shell_call", "id": "sh_1", "call_id": "call_sh_1", "status": "completed",
      "action": {"commands": ["ls"]},
      "environment": {"type": "container_reference", "container_id": "cntr_someone_elses"}},
     "input[1].environment.container_id"),
]


@pytest.mark.parametrize(("item", "param"), REPLAYED)
def test_a_native_response_replays_containers_only_with_the_callers_credential(
    deployment: Deployment, mock_upstream: Mock, caller_mocks: tuple[Mock, Mock], item: dict[str, Any],
    param: str,
) -> None:
    # A replayed tool call names the container it ran in: on the gateway's credential one of the
    # shared account's, whoever ran it, so refused like an item_reference; the caller's own
    # account may hold it.
    by_key, _ = caller_mocks

    def items(marker: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"hi mock:capture={marker}"}, item]

    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as err:
        deployment.sdk().responses.create(model="native-gpt", input=items(marker))  # type: ignore[arg-type]
    assert err.value.code == "unsupported_parameter" and err.value.param == param
    assert f"'{param}' names a container of the provider account" in err.value.message
    assert captured(mock_upstream, marker, timeout=0.5) == []
    marker = new_marker()
    reply = deployment.sdk(CALLER_KEY).responses.create(model="byo-native", input=items(marker))  # type: ignore[arg-type]
    assert reply.status == "completed"
    [seen] = captured(by_key, marker, outcome="completed")
    assert seen["body"]["input"][1] == item


def test_mcp_connectors_are_refused_on_native_deployments_whatever_the_credential(
    deployment: Deployment, mock_upstream: Mock, caller_mocks: tuple[Mock, Mock]
) -> None:
    # A connector (an OpenAI-hosted MCP wrapper of Gmail, Drive, ...) is reached with the OAuth
    # token of the request, not with the provider account: not an account object, but the gateway
    # runs MCP tools itself, so it is refused in 'tools' and, alike, among the tools a tool search
    # loads, which would otherwise reach a native deployment as written.
    by_key, _ = caller_mocks
    connector = {"type": "mcp", "server_label": "gmail", "connector_id": "connector_gmail",
                 "require_approval": "never"}
    loaded = {"type": "tool_search_output", "call_id": "ts1", "execution": "client", "tools": [connector]}
    for caller, model in ((None, "native-gpt"), (CALLER_KEY, "byo-native")):
        marker = new_marker()
        with pytest.raises(openai.BadRequestError) as err:
            deployment.sdk(caller).responses.create(model=model, input=f"hi mock:capture={marker}",
                                                    tools=[connector])  # type: ignore[list-item]
        assert err.value.code == "unsupported_parameter" and err.value.param == "tools[0].connector_id"
        with pytest.raises(openai.BadRequestError) as err:
            deployment.sdk(caller).responses.create(model=model, input=[  # type: ignore[arg-type]
                {"role": "user", "content": f"hi mock:capture={marker}"}, loaded])
        assert err.value.code == "unsupported_parameter" and err.value.param == "input[1].tools[0]"
        assert "MCP tools loaded by a tool search" in err.value.message
        assert captured(by_key if caller else mock_upstream, marker, timeout=0.5) == []


def test_a_shell_call_replayed_from_the_callers_machine_is_served(
    deployment: Deployment, mock_upstream: Mock
) -> None:
    marker = new_marker()
    item = {"type": "shell_call", "id": "sh_1", "call_id": "call_sh_1", "status": "completed",
            "action": {"commands": ["ls"]}, "environment": {"type": "local"}}
    reply = deployment.sdk().responses.create(model="native-gpt", input=[  # type: ignore[arg-type]
        {"role": "user", "content": f"hi mock:capture={marker}"}, item])
    assert reply.status == "completed"
    [seen] = captured(mock_upstream, marker, outcome="completed")
    assert seen["body"]["input"][1] == item


def test_refused_where_not_allowed_or_not_possible(deployment: Deployment) -> None:
    plain = openai.OpenAI(base_url=deployment.plain.base_url, api_key=MASTER_KEY, max_retries=0,
                          default_headers={HEADER: CALLER_KEY})
    assert refused(plain, "gpt-4o-mini") == (400, "caller_credentials_disabled")
    assert refused(deployment.sdk(CALLER_KEY), "locked-gpt") == (400, "caller_credentials_disabled")
    assert refused(deployment.sdk(CALLER_KEY), "byo-bedrock") == (400, "caller_credentials_unsupported")
    with pytest.raises(openai.BadRequestError) as err:
        deployment.sdk(CALLER_KEY).embeddings.create(model="text-embedding-3-small", input="x")
    assert err.value.body["code"] == "caller_credentials_disabled"  # type: ignore[index]
    # Authentication comes first: a provider credential is no substitute for a Switchboard key.
    resp = httpx.post(f"{deployment.gateway.base_url}/chat/completions", headers={HEADER: CALLER_KEY},
                      json={"model": "byo-gpt", "messages": ask("x")}, timeout=10)
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "value", ["", "short", "sk-has a space-0123456789", "Bearer short1", "x" * 4097, "sk-ünïcode-0123"]
)
def test_malformed_credentials_are_400(deployment: Deployment, value: str) -> None:
    resp = httpx.post(
        f"{deployment.gateway.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {deployment.key}", HEADER: value.encode()},
        json={"model": "byo-gpt", "messages": ask("x")},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_caller_credentials"
    assert len(value) < 8 or value[:20] not in resp.text
    assert httpx.get(f"{deployment.gateway.url}/health/ready", timeout=10).status_code == 200


def test_the_credential_is_never_logged_or_echoed(deployment: Deployment) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    resp = httpx.post(
        f"{deployment.gateway.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {deployment.key}", HEADER: WRONG_CALLER_KEY,
                 "x-request-id": request_id},
        json={"model": "byo-gpt", "messages": ask("wrong key")},
        timeout=10,
    )
    assert resp.status_code == 401 and WRONG_CALLER_KEY not in resp.text
    assert resp.json()["error"]["code"] == "caller_credentials_rejected"
    deployment.gateway.process.wait_for_all(request_id, "request failed")
    good = deployment.sdk(CALLER_KEY).chat.completions.create(model="byo-gpt", messages=ask("fine"))
    assert good.choices
    bad = httpx.post(f"{deployment.gateway.base_url}/chat/completions", timeout=10,
                     headers={"Authorization": f"Bearer {deployment.key}", HEADER: CALLER_KEY,
                              "x-request-id": request_id + "-2"},
                     json={"model": "locked-gpt", "messages": ask("x")})
    assert bad.status_code == 400 and CALLER_KEY not in bad.text
    deployment.gateway.process.wait_for_all(request_id + "-2", "request failed")
    log = deployment.gateway.process.output
    for secret in (CALLER_KEY, WRONG_CALLER_KEY, CALLER_OAUTH, CALLER_KEY[:16], WRONG_CALLER_KEY[-16:]):
        assert secret not in log


def test_a_fallback_never_gets_the_callers_credential_unless_its_provider_opted_in(
    deployment: Deployment, caller_mocks: tuple[Mock, Mock]
) -> None:
    # byo-down's provider is unreachable; its fallback locked-gpt did not opt in (and its upstream
    # would accept the caller's key): it is left out, and the caller gets the primary's failure.
    with pytest.raises(openai.APIStatusError) as err:
        deployment.sdk(CALLER_KEY).chat.completions.with_raw_response.create(
            model="byo-down", messages=ask("fall back"))
    assert err.value.status_code == 502, err.value.body
    assert err.value.response.headers["x-switchboard-model"] == "byo-down"
    # Without a caller credential the same fallback serves with the provider's stored key, as always.
    assert refused(deployment.sdk(), "byo-down")[0] == 502  # locked-openai's upstream refuses the stored key


def test_a_retry_never_sends_the_callers_credential_to_a_deployment_that_did_not_opt_in(
    deployment: Deployment,
) -> None:
    # byo-mixed: an opted-in deployment that is down and one whose provider did not opt in.
    for _ in range(4):
        with pytest.raises(openai.APIStatusError) as err:
            deployment.sdk(CALLER_KEY).chat.completions.create(model="byo-mixed", messages=ask("retry"))
        assert err.value.status_code in (502, 503), err.value.body
        tried = err.value.response.headers.get("x-switchboard-deployment")  # none once it cools down
        assert tried is None or tried.startswith("byo-dead-mixed/"), tried


def test_a_pin_on_a_deployment_that_takes_no_caller_credential_is_refused_naming_it(
    deployment: Deployment,
) -> None:
    pin = {"x-switchboard-deployment": "locked-openai/gpt-4o-mini"}
    with pytest.raises(openai.BadRequestError) as err:
        deployment.sdk(CALLER_KEY).chat.completions.create(
            model="byo-mixed", messages=ask("pinned"), extra_headers=pin)
    body: Any = err.value.body
    assert body["code"] == "caller_credentials_disabled", body
    assert "'locked-openai/gpt-4o-mini'" in body["message"]
    # Without a caller credential the pin is served with the provider's stored key, as always.
    with pytest.raises(openai.APIStatusError) as stored:
        deployment.sdk().chat.completions.create(model="byo-mixed", messages=ask("pinned"), extra_headers=pin)
    assert stored.value.status_code == 502  # the caller mock refuses the stored key: it was sent


def test_a_fallback_gets_the_credential_in_its_own_providers_form(
    deployment: Deployment, caller_mocks: tuple[Mock, Mock]
) -> None:
    by_key, _ = caller_mocks
    marker = new_marker()
    reply = deployment.sdk(CALLER_KEY).chat.completions.with_raw_response.create(
        model="byo-down-to-claude", messages=ask(f"to anthropic mock:capture={marker}"))
    assert reply.headers["x-switchboard-model"] == "byo-claude"
    headers = upstream_saw(by_key, marker)
    assert headers["x-api-key"] == "<redacted>" and "authorization" not in headers



@pytest.mark.parametrize(("deployment_name", "fault"), [
    ("limited", "mock:status=429 mock:retry_after=0"),  # the caller's account's rate limit
    ("unpaid", "mock:status=429 mock:error_code=insufficient_quota"),  # its quota, used up
])
def test_the_callers_own_account_limits_never_take_the_deployment_out_for_others(
    deployment: Deployment, deployment_name: str, fault: str
) -> None:
    # Rate limits and quotas are the account's: on the caller's own account they say nothing of
    # the deployment, which every other caller reaches with the provider's stored key.
    pin = {"x-switchboard-deployment": deployment_name}
    for _ in range(4):  # more than the cooldown's failures in a row (3), retries included
        with pytest.raises(openai.RateLimitError) as err:
            deployment.sdk(CALLER_KEY).chat.completions.create(
                model="shared-gpt", messages=ask(f"mine {fault}"), extra_headers=pin)
        assert err.value.response.headers["x-switchboard-deployment"] == deployment_name
    reply = deployment.sdk().chat.completions.with_raw_response.create(
        model="shared-gpt", messages=ask("on the stored key"), extra_headers=pin)
    assert reply.status_code == 200
    assert reply.headers["x-switchboard-deployment"] == deployment_name
    assert reply.parse().choices[0].message.content


def test_every_model_call_of_a_tool_loop_carries_the_callers_credential(
    mock_upstream: Mock, caller_mocks: tuple[Mock, Mock], open_mock: Mock,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A request naming MCP tools runs one model call per step (mcp/loop.py); the provider
    (which takes only the caller's key) must get the caller's credential on each, not just the
    first."""
    by_key, _ = caller_mocks
    notes = start_mcp_server("notes")
    config = byo_config(mock_upstream, *caller_mocks, open_mock)
    config["mcp_servers"] = [{"name": "notes", "url": notes.url}]
    gw = start_gateway(config, tmp_path_factory.mktemp("byo-mcp"))
    try:
        created = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
        assert created.status_code == 201, created.text
        client = openai.OpenAI(base_url=gw.base_url, api_key=created.json()["key"], max_retries=0, timeout=60,
                               default_headers={HEADER: CALLER_KEY})
        marker = new_marker()
        response = client.responses.create(
            model="byo-gpt", input=f"Read a note mock:capture={marker}",
            tools=[{"type": "mcp", "server_label": "notes", "require_approval": "never"}])  # type: ignore[list-item]
        assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
        assert [seen["status"] for seen in captured(by_key, marker, count=2)] == [200, 200]
    finally:
        gw.process.stop()
        notes.process.stop()
