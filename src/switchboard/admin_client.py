"""A small client for the admin API, for the command line: JSON over HTTP with the standard
library, errors turned into one readable line."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

TIMEOUT = 30.0
# Answers that say "not now" rather than "no": the gateway (or a proxy in front of it) is
# starting, overloaded, or waiting on its database. Worth asking again later.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class AdminError(Exception):
    """The gateway refused, or could not be reached; the message says which and why. ``status``:
    the HTTP status it answered (None: no answer); ``unreachable``: no connection or no answer."""

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable

    @property
    def transient(self) -> bool:
        """Whether the same call may well succeed later (a command that keeps polling retries)."""
        return self.unreachable or self.status in TRANSIENT_STATUSES


class Answer(dict[str, Any]):
    """A JSON object the gateway answered. A field it lacks is an AdminError, not a KeyError: the
    server at --url is not the gateway (a proxy, another service) or not this version of it.
    ``cli.main`` prints it as one line, wherever the command reads the answer."""

    def __missing__(self, key: str) -> Any:
        raise AdminError(f"the answer has no {key!r} field: is --url the gateway (and of this version)?")


def url_problem(url: str) -> str | None:
    """Why ``url`` (--url, $SWITCHBOARD_URL) cannot be the gateway's base URL, in one line; None
    when it can. urllib would raise a traceback on some (an unclosed IPv6 bracket), read others
    as something else (a query and the path after it dropped; ``user:password@`` taken as part
    of the host name, then printed in the "cannot reach" line)."""
    if not url.startswith(("http://", "https://")):
        return f"the gateway URL must start with http:// or https:// (got {url!r})"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        return f"the gateway URL is not a valid URL: {exc} (got {url!r})"
    if "@" in parts.netloc:  # not echoed: it may hold a password
        return "the gateway URL must not hold a user name or password (the key goes in --key)"
    if not parts.hostname:
        return f"the gateway URL has no host (got {url!r})"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"the gateway URL takes no query or fragment (got {url!r})"
    return None


class AdminClient:
    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = self.url + path + (("?" + urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        problem = url_problem(self.url)
        if problem:
            raise AdminError(problem)
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AdminError(f"HTTP {exc.code}: {_message(exc.read())}", status=exc.code) from None
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
            # HTTPException: an answer cut short or malformed (a gateway stopped mid-answer).
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach the gateway at {self.url}: {reason}", unreachable=True) from None
        try:
            return json.loads(raw or b"null", object_hook=Answer)
        except ValueError:
            raise AdminError(f"{self.url} did not answer JSON: is --url the gateway?") from None

    def list_all(self, path: str, query: dict[str, Any] | None = None, limit: int = 100) -> list[Any]:
        """Every item of a paged admin list (``limit``/``after``, ``has_more``/``last_id``)."""
        found: list[Any] = []
        after = None
        while True:
            params = {**(query or {}), "limit": limit, **({"after": after} if after is not None else {})}
            page = self.call("GET", path, query=params)
            found.extend(page["data"])
            if not page.get("has_more"):
                return found
            after = page["last_id"]

    # keys

    def create_key(self, body: dict[str, Any]) -> Any:
        return self.call("POST", "/admin/v1/keys", body)

    def list_keys(self, filters: dict[str, Any] | None = None) -> list[Any]:
        """Every key within reach, narrowed by the API's filters (tenant, team, user, ...)."""
        return self.list_all("/admin/v1/keys", filters)

    def show_key(self, key_id: str) -> Any:
        return self.call("GET", f"/admin/v1/keys/{quote(key_id, safe='')}")

    def update_key(self, key_id: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", f"/admin/v1/keys/{quote(key_id, safe='')}", body)

    def revoke_key(self, key_id: str) -> Any:
        return self.call("DELETE", f"/admin/v1/keys/{quote(key_id, safe='')}")

    def rotate_key(self, key_id: str, grace_seconds: int) -> Any:
        path = f"/admin/v1/keys/{quote(key_id, safe='')}/rotate"
        return self.call("POST", path, {"grace_seconds": grace_seconds})


def _message(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        code = f" ({error['code']})" if error.get("code") else ""
        return f"{error['message']}{code}"
    except (ValueError, KeyError, TypeError, AttributeError):  # not the gateway's error shape
        return raw[:300].decode("utf-8", "replace") or "(no body)"
