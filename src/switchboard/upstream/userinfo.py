"""User info in a provider's base URL (``https://user:password@proxy/v1``): a credential.

The gateway takes it out of the URL once, when the provider is resolved, and sends it as the
``Authorization: Basic`` header it stands for (RFC 7617), itself: the URLs requests go to hold
no credential (so they take the lean HTTP/1.1 client like any other), and upstream error
scrubbing knows every form it can be echoed in. A credential the provider sends in
``Authorization`` itself cannot travel with it; the registry refuses that combination.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class UrlCredential:
    user: str
    password: str | None

    def __repr__(self) -> str:  # never the credential itself
        return "UrlCredential(...)"

    @property
    def token(self) -> str:
        return base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self.token}"}

    def secrets(self) -> list[str]:
        """What an upstream may echo: the Basic value, ``user:password`` and the password (the
        user alone when there is no password: then it is the token, ``https://TOKEN@host``)."""
        found = [self.token, f"{self.user}:{self.password or ''}"]
        found.append(self.password if self.password else self.user)
        return found


def split_userinfo(url: str) -> tuple[str, UrlCredential | None]:
    """``url`` without its user info, and that user info (None when there is none)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    credential = UrlCredential(unquote(user), unquote(password) if colon else None)
    return urlunsplit(parts._replace(netloc=host)), credential
