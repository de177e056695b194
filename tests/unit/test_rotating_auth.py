"""Several credentials of one provider: used in turn, all of them scrubbed, none in a repr."""

from __future__ import annotations

from pydantic import SecretStr

from switchboard.config.schema import ProviderConfig
from switchboard.providers import registry
from switchboard.routing.table import make_client
from switchboard.upstream.auth import RotatingAuth, StaticHeaderAuth
from switchboard.upstream.request import UpstreamRequest

KEYS = ["sk-first-credential-0123456789", "sk-second-credential-0123456789"]


async def test_credentials_are_used_in_turn_and_all_scrubbed() -> None:
    auth = RotatingAuth([StaticHeaderAuth.bearer(k) for k in KEYS])
    sent = []
    for _ in range(4):
        request = UpstreamRequest("POST", "https://x.test", b"{}", {})
        await auth.apply(request)
        sent.append(request.headers["Authorization"])
    assert sent == [f"Bearer {KEYS[0]}", f"Bearer {KEYS[1]}"] * 2
    assert sorted(auth.secrets()) == sorted(KEYS)
    assert all(k not in repr(auth) for k in KEYS)


async def test_a_client_with_several_keys_scrubs_each_and_one_key_stays_a_session_header() -> None:
    config = ProviderConfig(name="p", type="openai", api_base="http://127.0.0.1:9/v1",
                            api_keys=[SecretStr(k) for k in KEYS])
    client = make_client(registry.resolve(config), KEYS)
    assert isinstance(client.auth, RotatingAuth)
    body = f"bad key {KEYS[0]} and {KEYS[1]}".encode()
    assert client.scrub(body) == b"bad key [redacted] and [redacted]"
    single = make_client(registry.resolve(config), KEYS[:1])
    assert isinstance(single.auth, StaticHeaderAuth)
