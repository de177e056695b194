"""Credential scrubbing of upstream error text, and the secrets each auth scheme declares."""

from __future__ import annotations

import base64
import html
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from switchboard.config.schema import Timeouts
from switchboard.providers.errors import text_message
from switchboard.upstream.auth import StaticHeaderAuth
from switchboard.upstream.client import UpstreamClient
from switchboard.upstream.google_auth import ServiceAccountAuth, service_account_from_info
from switchboard.upstream.scrub import MARKER, forms, header_secrets, redact
from switchboard.upstream.sigv4 import Credentials, SigV4Auth
from switchboard.upstream.userinfo import UrlCredential, split_userinfo

KEY = "sk-proj-Abc/def+GHI0123456789xyzXYZ"


def scrubbed(text: str, *secrets: str) -> str:
    return redact(text.encode(), forms(secrets)).decode()


def test_the_key_in_every_common_form_is_replaced() -> None:
    text = (
        f"Incorrect API key provided: Bearer {KEY}. url={quote(KEY, safe='')} "
        f'json={KEY.replace("/", chr(92) + "/")} start={KEY[:14]}*** end=***{KEY[-13:]}'
    )
    out = scrubbed(text, KEY)
    assert out == (
        "Incorrect API key provided: Bearer [redacted]. url=[redacted] "
        "json=[redacted] start=[redacted]*** end=***[redacted]"
    )


def test_text_without_a_secret_is_returned_unchanged() -> None:
    body = b'{"error": {"message": "model not found"}}'
    assert redact(body, forms([KEY])) is body
    assert redact(body, []) is body


def test_short_values_are_not_secrets_and_short_fragments_are_kept() -> None:
    assert scrubbed("the key abc is wrong", "abc") == "the key abc is wrong"
    assert scrubbed(f"starts with {KEY[:8]}", KEY) == f"starts with {KEY[:8]}"


def test_overlapping_matches_become_one_marker() -> None:
    assert scrubbed(f"{KEY}{KEY}", KEY) == MARKER.decode()
    assert scrubbed(f"[{KEY}]", KEY, KEY[:20]) == "[[redacted]]"


def test_header_secrets_by_name_or_by_look() -> None:
    found = header_secrets({
        "Authorization": "Bearer tok-1234567890",
        "x-api-key": "k-12345678",
        "X-Trace": "short",
        "X-Opaque": "Zq8Yv7Xw6Vu5Ts4Rr3Qp2",
        "OpenAI-Project": "analytics",
    })
    assert found == ["tok-1234567890", "k-12345678", "Zq8Yv7Xw6Vu5Ts4Rr3Qp2"]


def test_static_and_sigv4_schemes_list_their_secrets() -> None:
    assert StaticHeaderAuth.bearer(KEY).secrets() == [KEY]
    assert StaticHeaderAuth.header("api-key", KEY).secrets() == [KEY]
    assert StaticHeaderAuth.bearer(None).secrets() == []
    sig = SigV4Auth(Credentials("AKIDEXAMPLE12345", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY", "FQoGZXIvYXdzEJr"),
                    "us-east-1", "bedrock")
    assert sig.secrets() == ["AKIDEXAMPLE12345", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY", "FQoGZXIvYXdzEJr"]


def test_service_account_lists_its_key_material_and_current_token() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = service_account_from_info(
        {"client_email": "sa@p.iam.gserviceaccount.com", "private_key_id": "kid", "private_key": pem}
    )
    auth = ServiceAccountAuth(account, provider="vertex")
    lines = [line for line in pem.splitlines() if "-----" not in line]
    assert auth.secrets() == lines
    auth._token = "ya29.a0AfH6SMBx-token-value-0123456789"
    assert auth.secrets()[-1] == "ya29.a0AfH6SMBx-token-value-0123456789"
    assert "ya29" not in repr(auth) and lines[0] not in repr(account)
    echoed = f'{{"error": {{"message": "bad token ya29.a0AfH6SMBx-token-value-0123456789 {lines[3]}"}}}}'
    client = UpstreamClient("vertex", auth, 10, {}, Timeouts())
    assert client.scrub(echoed.encode()) == b'{"error": {"message": "bad token [redacted] [redacted]"}}'


def test_client_scrubs_the_auth_and_the_custom_headers() -> None:
    client = UpstreamClient(
        "p", StaticHeaderAuth.bearer(KEY), 10, {"X-Custom-Token": "ctok-0011223344"}, Timeouts()
    )
    out = client.scrub(f"key {KEY} and ctok-0011223344".encode())
    assert out == b"key [redacted] and [redacted]"


def test_user_info_leaves_the_url_and_is_scrubbed_in_every_form() -> None:
    url, credential = split_userinfo("https://proxy%40corp:p%3Ass-0123456789@host:8443/v1?x=1")
    assert url == "https://host:8443/v1?x=1" and credential is not None
    assert (credential.user, credential.password) == ("proxy@corp", "p:ss-0123456789")
    token = base64.b64encode(b"proxy@corp:p:ss-0123456789").decode()
    assert credential.headers == {"Authorization": f"Basic {token}"}
    assert "0123456789" not in repr(credential)
    assert split_userinfo("http://host/v1") == ("http://host/v1", None)
    assert split_userinfo("http://TOKEN-abcdef012345@host")[1] == UrlCredential("TOKEN-abcdef012345", None)
    # Scrubbed with the provider's key: the Basic value, user:password, the password.
    client = UpstreamClient("p", StaticHeaderAuth.header("x-api-key", KEY), 10, {}, Timeouts(),
                            url_credential=credential)
    echoed = f"sent Basic {token}, i.e. proxy@corp:p:ss-0123456789 (password p:ss-0123456789), key {KEY}"
    assert client.scrub(echoed.encode()) == (
        b"sent Basic [redacted], i.e. [redacted] (password [redacted]), key [redacted]")


def test_a_key_echoed_html_escaped_in_an_error_page_is_replaced_before_the_page_is_read() -> None:
    """An HTML error page (a proxy's) echoes what it was sent with ``&``, ``<``, ``"`` escaped;
    the page's words become the client's message only after its entities are decoded, so the
    escaped forms are scrubbed too."""
    secret = 'pa&ss<word>"0123456789-abcdef'
    page = f"<html><body><p>Bad credential: {html.escape(secret)}</p></body></html>".encode()
    message = text_message(redact(page, forms([secret])))
    assert message == "Bad credential: [redacted]"
    unquoted = f"<p>Bad credential: {html.escape(secret, quote=False)}</p>".encode()
    assert text_message(redact(unquoted, forms([secret]))) == "Bad credential: [redacted]"
