"""SigV4 signing against the official AWS test suite.

Expected values are copied from awslabs/aws-c-auth ``tests/aws-signing-test-suite/v4/<case>/``
(``header-canonical-request.txt``, ``header-string-to-sign.txt``, ``header-signed-request.txt``), the
suite AWS published as the "Signature Version 4 Test Suite": credentials AKIDEXAMPLE /
wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service "service", 20150830T123600Z.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from switchboard.upstream import sigv4
from switchboard.upstream.request import UpstreamRequest
from switchboard.upstream.sigv4 import Credentials, SigV4Auth, sign_headers

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


def _sign(method: str, url: str, credentials: Credentials | None = None) -> dict[str, str]:
    credentials = credentials or Credentials(AKID, SECRET)
    return sign_headers(method, url, {}, None, credentials, "us-east-1", "service", WHEN)


def test_get_vanilla() -> None:
    headers = _sign("GET", "https://example.amazonaws.com/")
    assert headers == {
        "Host": "example.amazonaws.com",
        "X-Amz-Date": "20150830T123600Z",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    }


def test_get_vanilla_intermediate_steps() -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    canonical, signed = sigv4.canonical_request("GET", "/", "", headers, sigv4.EMPTY_SHA256)
    assert canonical == (
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert signed == "host;x-amz-date"
    assert sigv4.string_to_sign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", canonical) == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    )


def test_post_vanilla() -> None:
    headers = _sign("POST", "https://example.amazonaws.com/")
    assert headers["Authorization"].endswith(
        "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    )


def test_get_vanilla_with_session_token() -> None:
    token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
    headers = _sign("GET", "https://example.amazonaws.com/", Credentials(AKID, SECRET, token))
    assert headers["X-Amz-Security-Token"] == token
    assert headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
    )


def test_post_x_www_form_urlencoded_signs_the_body_and_extra_headers() -> None:
    body = b"Param1=value1"
    payload_hash = hashlib.sha256(body).hexdigest()
    assert payload_hash == "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Host": "example.amazonaws.com",
        "Content-Length": "13",
        "X-Amz-Date": "20150830T123600Z",
        "x-amz-content-sha256": payload_hash,
    }
    canonical, signed = sigv4.canonical_request("POST", "/", "", headers, payload_hash)
    assert signed == "content-length;content-type;host;x-amz-content-sha256;x-amz-date"
    assert sigv4.signature(SECRET, "20150830T123600Z", "us-east-1", "service", canonical) == (
        "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
    )


def test_get_utf8_path_is_uri_encoded() -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    canonical, _ = sigv4.canonical_request("GET", "/ሴ", "", headers, sigv4.EMPTY_SHA256)
    assert canonical.split("\n")[1] == "/%E1%88%B4"
    assert sigv4.signature(SECRET, "20150830T123600Z", "us-east-1", "service", canonical) == (
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
    )


def test_get_space_unnormalized() -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    canonical, _ = sigv4.canonical_request("GET", "/example space/", "", headers, sigv4.EMPTY_SHA256)
    assert canonical.split("\n")[1] == "/example%20space/"
    assert sigv4.signature(SECRET, "20150830T123600Z", "us-east-1", "service", canonical) == (
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"
    )


def test_canonical_query_sorts_and_encodes() -> None:
    assert sigv4.canonical_query("Param2=value2&Param1=value1") == "Param1=value1&Param2=value2"
    assert sigv4.canonical_query("a=b%20c&x=~y") == "a=b%20c&x=~y"
    assert sigv4.canonical_query("") == ""


def test_bedrock_model_id_colon_is_encoded_twice_in_the_canonical_uri() -> None:
    # The wire path carries ':' encoded once (%3A); non-S3 services sign it encoded again.
    assert sigv4.canonical_uri("/model/a.claude-v2%3A1/converse") == "/model/a.claude-v2%253A1/converse"
    assert sigv4.canonical_uri("/model/a.claude-v2:1/converse") == "/model/a.claude-v2%3A1/converse"


def test_host_header_keeps_non_default_ports() -> None:
    headers = sign_headers("POST", "http://127.0.0.1:8123/model/x/converse", {}, b"{}",
                           Credentials(AKID, SECRET), "us-east-1", "bedrock", WHEN)
    assert headers["Host"] == "127.0.0.1:8123"
    assert "/us-east-1/bedrock/aws4_request" in headers["Authorization"]


def test_content_type_is_signed_but_hop_headers_are_not() -> None:
    headers = sign_headers("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
                           {"Content-Type": "application/json", "User-Agent": "x", "Content-Length": "2"},
                           b"{}", Credentials(AKID, SECRET), "us-east-1", "bedrock", WHEN)
    assert "SignedHeaders=content-type;host;x-amz-date," in headers["Authorization"]


async def test_auth_scheme_signs_the_request_in_place_and_hides_the_secret() -> None:
    auth = SigV4Auth(Credentials(AKID, SECRET, "tok"), "eu-west-1", "bedrock", clock=lambda: WHEN)
    request = UpstreamRequest("POST", "https://bedrock-runtime.eu-west-1.amazonaws.com/model/m%3A0/converse",
                              b'{"messages": []}', {"Content-Type": "application/json"})
    await auth.apply(request)
    assert request.headers["X-Amz-Date"] == "20150830T123600Z"
    assert request.headers["X-Amz-Security-Token"] == "tok"
    assert request.headers["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
    )
    assert SECRET not in repr(auth) and SECRET not in repr(Credentials(AKID, SECRET))
    await auth.close()
