"""Database and Redis URLs: what the config accepts, checked at load time without connecting.

Kept free of driver imports so ``config check`` stays fast; ``stores.sql.urls`` maps an accepted
URL to its async driver.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, parse_qsl, urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
REDIS_SCHEMES = ("redis", "rediss")


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    return parts


def database_url_problem(url: str) -> str | None:
    """None when ``url`` is a usable database URL, else why not (never echoing a password)."""
    if "://" not in url:
        return "expected a URL such as postgresql://user:password@host:5432/switchboard or sqlite:///path"
    scheme = url.split("://", 1)[0].lower()
    try:
        parts = _split(url)
    except ValueError:
        return f"{scheme} URL: the port is not a number"
    if scheme in SQLITE_SCHEMES:
        path = url.split("://", 1)[1]
        if not path.startswith("/") or path in ("/", "/:memory:") or path.startswith("/?"):
            return "sqlite URL needs a file path: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        return None
    if scheme in POSTGRES_SCHEMES:
        if not parts.hostname:
            return "postgresql URL needs a host: postgresql://user:password@host:5432/dbname"
        return _sslmode_problem(parts.query)
    return (
        f"unsupported database scheme {scheme!r}: use postgresql:// (PostgreSQL) or sqlite:/// "
        "(a SQLite file)"
    )


# libpq's sslmode values, as the driver takes them (it reads "_" as "-" too).
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _sslmode_problem(query: str) -> str | None:
    """A wrong ``sslmode`` is named as written, at load time: the driver's refusal at start
    named the URL as translated for it (``ssl=``), and ``config check`` passed it."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "sslmode" and value.replace("_", "-") not in SSLMODES:
            return (f"postgresql URL: option 'sslmode' must be one of {', '.join(SSLMODES)}, "
                    f"not {value[:20]!r}")
    return None


def redis_url_problem(url: str) -> str | None:
    if "://" not in url:
        return "expected a URL such as redis://host:6379/0 or rediss://host:6380/0"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in REDIS_SCHEMES:
        return f"unsupported redis scheme {scheme!r}: use redis:// or rediss:// (TLS)"
    try:
        parts = _split(url)
    except ValueError:
        return "redis URL: the port is not a number"
    if not parts.hostname:
        return "redis URL needs a host: redis://host:6379/0"
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit()):  # '²' passes isdigit; the client then uses db 0
        return f"redis URL: the database after the host must be a number, not {db!r}"
    return _redis_options_problem(scheme, parts.query)


# The bounds an operator may set in the URL, in seconds (redis-py's names): connecting, and a
# reply (a pipelined batch's too, stores/redis/wire.py). Both are documented as tunable.
_REDIS_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")
_MAX_TIMEOUT = 3600.0


def _redis_options_problem(scheme: str, query: str) -> str | None:
    """The client takes a URL's query options over the settings the gateway gives it, so any other
    would change its documented pool and replies without a word (``max_connections``), or break
    every call (``decode_responses=false`` is the true string "false"); a value it cannot parse
    was a traceback at start. Taken: the two timeouts, checked here, and the TLS options of a
    ``rediss://`` URL."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _REDIS_TIMEOUTS:
            if not _seconds(value):
                return (f"redis URL: option {name!r} must be a number of seconds, more than 0 and at "
                        f"most {_MAX_TIMEOUT:.0f}, not {value[:20]!r}")
        elif not (scheme == "rediss" and name.startswith("ssl_")):
            tls = ", and ssl_* options" if scheme == "rediss" else ""
            return (f"redis URL: option {name!r} is not taken (only socket_timeout and "
                    f"socket_connect_timeout{tls}): the gateway sets its connections' pool and "
                    "replies itself")
    return None


def _seconds(value: str) -> bool:
    try:
        seconds = float(value)
    except ValueError:
        return False
    return 0 < seconds <= _MAX_TIMEOUT  # NaN compares false: refused


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


_NUMERIC_LABEL = re.compile(r"^(?:0[xX][0-9A-Fa-f]*|[0-9]+)$")


def ipv4_shorthand(host: str) -> bool:
    """Whether ``host`` is an IPv4 address written other than as four decimal numbers: decimal
    (``2130706433``), hexadecimal (``0x7f000001``), octal (``0177.0.0.1``) or shortened
    (``127.1``). Browsers and resolvers read these as addresses (a host whose last label is a
    number is an IPv4 address, WHATWG URL), address checks that parse only the dotted-quad form
    do not; and aiohttp refuses some outright."""
    labels = host.rstrip(".").split(".")
    if not labels or not _NUMERIC_LABEL.match(labels[-1]):
        return False
    try:
        ipaddress.IPv4Address(host.rstrip("."))
    except ValueError:
        return True
    return False


# A host name as a resolver takes it (RFC 1123): dot-separated labels of letters, digits and
# inner hyphens, 1 to 63 characters each; a final dot is allowed.
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def bind_host_problem(host: str) -> str | None:
    """Why ``host`` is no address to listen on (an IP address, or a host name of this machine),
    or None. Said at load time: a typo otherwise surfaced only as the listener failing (or, for
    ``metrics.host``, as a worker failing after start-up)."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    named = 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))
    if named and not ipv4_shorthand(host):
        return None
    return (f"{host[:64]!r} is not an IP address or a host name (letters, digits, '-' and '.'; "
            "0.0.0.0 or :: for every interface)")


def checked_bind_host(host: str) -> str:
    """``host`` when it is one to listen on, else a ValueError saying why (a validator's)."""
    if (problem := bind_host_problem(host)) is not None:
        raise ValueError(problem)
    return host


# A URL's user info (``user:password@``) and query string, wherever a URL is written: both may
# hold a credential (a provider's base URL with a proxy's password, a webhook's ``?token=``).
_USERINFO = re.compile(r"^([^:/?#]*://)?[^/?#]*@")
_QUERY = re.compile(r"\?[^#]*")


def shown_url(value: str) -> str:
    """``value`` fit for an error message or a log line: its user info and query string, which
    may hold credentials, replaced by ``[redacted]`` (the rest says which URL is meant)."""
    without = _USERINFO.sub(lambda m: f"{m.group(1) or ''}[redacted]@", value, count=1)
    return _QUERY.sub("?[redacted]", without, count=1)


# ``scheme://`` (optional: a value missing it still shows its first segment as the host), user
# info, the host and port, then the rest.
_ORIGIN = re.compile(r"((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?(?:[^/?#]*@)?([^/?#]*)(.*)", re.DOTALL)


def url_origin(value: str) -> str:
    """``value`` as its scheme, host and port only, ``/…`` standing for any path, query or
    fragment. For a URL whose path is its secret (Slack's ``/services/T…/B…/<token>``, Discord's
    ``/api/webhooks/<id>/<token>``): webhook URLs in config errors and in logs. Works on any
    text, valid URL or not, as a config error must."""
    match = _ORIGIN.fullmatch(value)
    assert match is not None  # every group may be empty
    scheme, host, rest = match.groups()
    return (scheme or "").lower() + host.lower() + ("/…" if rest not in ("", "/") else "")


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port, a default port spelt out or not
    (``https://h`` and ``https://H:443/x`` do): where stored credentials may follow a changed URL."""
    def origin(value: str) -> tuple[str, str, int | None]:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            return value, "", None  # not a URL: only the same text is the same origin
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)
    return origin(a) == origin(b)


def check_http_url(value: str, *, secret_path: bool = False) -> str:
    """``value`` if it is an absolute http(s) URL with a host; a ValueError saying why otherwise
    (never quoting its user info or query string: config check output and error answers would
    carry a password or token; with ``secret_path``, a webhook's, not its path either)."""
    shown = url_origin(value) if secret_path else shown_url(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc}): {shown!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        hint = f" (e.g. http://{shown})" if "://" not in value else ""
        raise ValueError(f"must be an http:// or https:// URL with a host{hint}, got {shown!r}")
    if any(ch.isspace() or not ch.isprintable() for ch in parts.hostname):
        # urlsplit takes it, no resolver does: every call to it would fail at run time instead.
        raise ValueError(f"the host of {shown!r} contains a space or a control character")
    if ipv4_shorthand(parts.hostname):
        # Not what address checks (egress rules) read as an address: the one form all agree on.
        raise ValueError(f"the host of {shown!r} is an IPv4 address in a decimal, hexadecimal, octal or "
                         "shortened form; write it as four decimal numbers (e.g. 127.0.0.1)")
    return value


def proxy_url_problem(url: str) -> str | None:
    """None when ``url`` is a usable outbound proxy (``http://[user:password@]host[:port]``),
    else why not, never echoing the password. Only plain-HTTP proxies: a request to an https
    provider is tunnelled through them (CONNECT), so it stays encrypted end to end."""
    if "://" not in url:
        return "expected a URL such as http://proxy.internal:3128 or http://user:password@proxy:3128"
    scheme = url.split("://", 1)[0].lower()
    if scheme != "http":
        return (f"unsupported proxy scheme {scheme!r}: use http:// (requests to https providers are "
                "tunnelled through it with CONNECT and stay encrypted end to end)")
    try:
        parts = _split(url)
    except ValueError:
        return "proxy URL: the port is not a number"
    if not parts.hostname:
        return "proxy URL needs a host: http://proxy.internal:3128"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "proxy URL: no path, query or fragment (http://[user:password@]host:port)"
    return None
