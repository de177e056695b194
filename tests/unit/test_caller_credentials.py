"""Caller credentials in the small: which header each provider type gets, how the Anthropic OAuth
beta joins the configured ones, error bodies scrubbed of the caller's credential, and the
configured header name checked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.config.schema import AuthConfig, CallerCredentialsConfig, Timeouts
from switchboard.pipeline.caller_credentials import FORMS, apply
from switchboard.upstream.auth import StaticHeaderAuth
from switchboard.upstream.client import UpstreamClient
from switchboard.upstream.request import UpstreamRequest

KEY = "sk-caller-0123456789abcdefghij"
OAUTH = "sk-ant-oat01-0123456789abcdefghij"


@pytest.mark.parametrize(
    ("provider_type", "credential", "headers"),
    [
        ("openai", KEY, {"Authorization": f"Bearer {KEY}"}),
        ("openai_compatible", KEY, {"Authorization": f"Bearer {KEY}"}),
        ("mistral", KEY, {"Authorization": f"Bearer {KEY}"}),
        ("cohere", KEY, {"Authorization": f"Bearer {KEY}"}),
        ("azure", KEY, {"api-key": KEY}),
        ("gemini", KEY, {"x-goog-api-key": KEY}),
        ("anthropic", KEY, {"x-api-key": KEY}),
        ("anthropic", OAUTH, {"Authorization": f"Bearer {OAUTH}", "anthropic-beta": "oauth-2025-04-20"}),
    ],
)
def test_each_provider_type_gets_its_own_auth_header(
    provider_type: str, credential: str, headers: dict[str, str]
) -> None:
    assert FORMS[provider_type](credential) == headers


def test_types_that_sign_or_exchange_credentials_have_no_form() -> None:
    assert "bedrock" not in FORMS and "vertex" not in FORMS


def test_the_oauth_beta_joins_the_adapters_betas_once() -> None:
    upstream = UpstreamRequest("POST", "http://x/v1/messages", headers={"anthropic-beta": "a-1, b-2"})
    apply(upstream, FORMS["anthropic"](OAUTH))
    expected = {"Authorization": f"Bearer {OAUTH}", "anthropic-beta": "a-1,b-2,oauth-2025-04-20"}
    assert upstream.credentials == expected
    again = UpstreamRequest("POST", "http://x", headers={"anthropic-beta": "oauth-2025-04-20"})
    apply(again, FORMS["anthropic"](OAUTH))
    assert again.credentials is not None and again.credentials["anthropic-beta"] == "oauth-2025-04-20"
    plain = UpstreamRequest("POST", "http://x")
    apply(plain, FORMS["openai"](KEY))
    assert plain.credentials == {"Authorization": f"Bearer {KEY}"} and plain.headers == {}


def test_error_bodies_are_scrubbed_of_the_callers_credential_and_the_stored_one() -> None:
    client = UpstreamClient("p", StaticHeaderAuth.bearer("sk-stored-key-0123456789"), 1, {}, Timeouts())
    body = f"Incorrect API key provided: {KEY} (stored sk-stored-key-0123456789) {OAUTH[:14]}".encode()
    out = client.scrub(body, {"Authorization": f"Bearer {KEY}"})
    assert KEY.encode() not in out and b"sk-stored-key" not in out
    assert client.scrub(body) == body.replace(b"sk-stored-key-0123456789", b"[redacted]")
    oauth = client.scrub(f"bad token {OAUTH}".encode(), FORMS["anthropic"](OAUTH))
    assert oauth == b"bad token [redacted]"


def test_the_header_name_is_checked() -> None:
    default = CallerCredentialsConfig()
    assert default.header == "x-provider-authorization" and not default.enabled
    assert CallerCredentialsConfig(header="X-Upstream-Key").header == "x-upstream-key"
    for bad in ("Authorization", "x-api-key", "Content-Type", "x-request-id", "has space", "", "h" * 65):
        with pytest.raises(ValidationError):
            CallerCredentialsConfig(header=bad)
    with pytest.raises(ValidationError):
        AuthConfig.model_validate({"master_key": "m" * 16, "caller_credentials": {"enable": True}})
