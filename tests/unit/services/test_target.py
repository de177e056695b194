"""What of a caller's path and query may reach a service's URL (services/target.py), and what a
``services:`` entry accepts (config/services.py). Pure functions: no backend involved."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.config.services import ServiceConfig
from switchboard.errors import InvalidRequest, NotFound
from switchboard.services.table import from_config
from switchboard.services.target import check_path, check_query, split


@pytest.mark.parametrize("rest", [
    "", "/", "/items/42", "/items/42/", "/a%20b", "/@evil.example/x", "/a;b=c", "/~user/x.json", "/%41",
])
def test_ordinary_paths_pass_unchanged(rest: str) -> None:
    assert check_path(rest) == rest


@pytest.mark.parametrize(("rest", "forwarded"), [
    ("/v2%2Forders%2F42", "/v2/orders/42"), ("/a%2fb/c", "/a/b/c"), ("/a%2Fb%2F", "/a/b/"),
    ("/a%2Fb%2Cc", "/a/b%2Cc"), ("/100%25%2Fx", "/100%25/x"),
])
def test_an_encoded_slash_is_forwarded_as_a_slash(rest: str, forwarded: str) -> None:
    assert check_path(rest) == forwarded


@pytest.mark.parametrize("rest", [
    "/..", "/../x", "/a/../../x", "/.", "/./x", "/%2e%2e/x", "/%2E%2E/x", "/.%2e/x", "/%252e%252e/x",
    "/%25252e%25252e/x", "/..;/x", "/.;x=1/y", "//evil.example/x", "/a//b", "/%252f", "/a%252Fb",
    # An encoded slash is a slash: it cannot make a dot segment or an empty one pass.
    "/a%2F..%2F..%2Fx", "/a%2f%2e%2e%2fx", "/x%2F.%2Fy", "/%2F%2Fevil.example/x", "/%2Fevil", "/a%2F%2Fb",
    "/a%2F..;%2Fx", "/a%2F%252e%252e%2Fx", "/%2%2F", "/a%2F%5cb",
    "/a\\b", "/%5c%5cevil", "/x%00", "/x%0d%0aHost:%20evil", "/x%7f", "/bad%zz", "/bad%", "x",
    "/a b", "/a#b", "/" + "a" * 9000,
])
def test_hostile_paths_are_refused(rest: str) -> None:
    with pytest.raises(InvalidRequest):
        check_path(rest)


@pytest.mark.parametrize(("raw", "name", "rest"), [
    ("/services/echo", "echo", ""), ("/services/echo/", "echo", "/"),
    ("/services/echo/a/b", "echo", "/a/b"), ("/services/a.b-c_d/x", "a.b-c_d", "/x"),
])
def test_split(raw: str, name: str, rest: str) -> None:
    assert split(raw) == (name, rest)


@pytest.mark.parametrize("raw", ["/services/", "/services/..", "/services/ech%6f/x", "/services/.x",
                                 "/services/" + "a" * 65])
def test_names_that_are_no_service_are_404(raw: str) -> None:
    with pytest.raises(NotFound):
        split(raw)


def test_queries() -> None:
    assert check_query(b"x=1&y=a%20b&next=http://h/") == b"x=1&y=a%20b&next=http://h/"
    for bad in (b"a b", b"a\r\nb", b"x=\x00", b"x" * 20000):
        with pytest.raises(InvalidRequest):
            check_query(bad)


def test_the_upstream_url_keeps_the_services_host_whatever_the_path() -> None:
    service = from_config(ServiceConfig(name="s", url="http://10.0.0.5:8080/base/"))
    for rest in ("/@evil.example/x", "/x", ""):
        url = service.url(rest, b"next=http://evil.example/")
        assert (url.scheme, url.host, url.port) == ("http", "10.0.0.5", 8080)
        assert url.raw_path == "/base" + rest
    assert str(service.url("/a%2Cb", b"")) == "http://10.0.0.5:8080/base/a%2Cb"


@pytest.mark.parametrize("entry", [
    {"name": "ok"},
    {"name": "../x", "url": "http://h/"},
    {"name": "ok", "url": "file:///etc/passwd"},
    {"name": "ok", "url": "http://h/?q=1"},
    {"name": "ok", "url": "http://u:p@h/"},
    {"name": "ok", "url": "http://h/", "headers": {"Host": "x"}},
    {"name": "ok", "url": "http://h/", "headers": {"Transfer-Encoding": "chunked"}},
    {"name": "ok", "url": "http://h/", "headers": {"X-A": "a\nb"}},
    {"name": "ok", "url": "http://h/", "methods": ["CONNECT"]},
    {"name": "ok", "url": "http://h/", "rpm": 0},
    {"name": "ok", "url": "http://h/", "timeout_seconds": {"connect": -1}},
    {"name": "ok", "url": "http://h/", "max_response_bytes": 2 * 1024**3},
    {"name": "ok", "url": "http://h/", "openapi_url": "javascript:alert(1)"},
    {"name": "ok", "url": "http://h/", "unknown": 1},
])
def test_bad_service_entries_are_refused(entry: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ServiceConfig.model_validate(entry)


def test_service_names_are_unique_in_the_config() -> None:
    from switchboard.config.schema import Settings

    entry = {"name": "orders", "url": "http://h/"}
    auth = {"master_key": "sk-test-master-0123456789"}
    with pytest.raises(ValidationError, match="duplicate service name 'orders'"):
        Settings.model_validate({"auth": auth, "services": [entry, entry]})
    assert len(Settings.model_validate({"auth": auth, "services": [entry]}).services) == 1


@pytest.mark.parametrize(("url", "location", "local"), [
    ("http://orders.internal/api", "http://orders.internal/api/v2/x?y=1", "/services/s/v2/x?y=1"),
    ("http://orders.internal/api", "http://ORDERS.internal:80/api", "/services/s"),
    ("http://orders.internal/api", "//orders.internal/api/", "/services/s/"),
    ("http://orders.internal/api", "/api/z", "/services/s/z"),
    ("http://orders.internal/api", "http://orders.internal:8080/api/x", None),
    ("http://orders.internal/api", "http://orders.internal.evil/api/x", None),
    ("http://orders.internal/api", "http://orders.internal@evil/api/x", None),
    ("http://orders.internal/api", "/apix", None),
    ("http://orders.internal/api", "api/x", None),
    ("http://orders.internal", "/login", "/services/s/login"),
    # A service that knows its public prefix (a root_path setting) wrote the gateway's path already.
    ("http://orders.internal", "/services/s/login", None),
    ("http://orders.internal/api", "/api/%2E%2e/other", None),
    ("http://orders.internal/api", "/api/.%2e", None),
    ("http://orders.internal/api", "/api/%2efile", "/services/s/%2efile"),
    ("http://orders.internal", "http://orders.internal/services/s", None),
    ("http://orders.internal", "/services/sx/login", "/services/s/services/sx/login"),
    ("https://[::1]:8443/", "https://[::1]:8443/a", "/services/s/a"),
    ("https://[::1]:8443/", "https://[::1]/a", None),
])
def test_a_redirect_to_the_services_own_url_is_its_gateway_path(url: str, location: str,
                                                               local: str | None) -> None:
    assert from_config(ServiceConfig(name="s", url=url)).local(location) == local


@pytest.mark.parametrize(("location", "resolves_to"), [
    ("/api/../other", "/other"),  # outside the base: the service's /other, not another service
    ("http://orders.internal/api/../../admin", "/admin"),
    ("/api/x/../../y", "/y"),
])
def test_a_redirect_that_dot_segments_take_outside_the_base_is_not_a_gateway_path(
        location: str, resolves_to: str) -> None:
    """A Location the caller resolves (RFC 3986 dot segments) to a path outside the base path is
    not one of the service's URLs under its base: rewriting it by prefix sends the caller to
    another gateway path (``/services/s/../other`` is ``/services/other``, another service)."""
    local = from_config(ServiceConfig(name="s", url="http://orders.internal/api")).local(location)
    assert local is None, (location, local, "meant", resolves_to)
