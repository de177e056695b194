"""The browser step of per-user OAuth for MCP servers (docs/mcp.md, "Credentials and OAuth"): a
confirmation page, so that an authorization link completed by someone other than the user it
was issued for does not link their account to that user.

The threat: a user sends another user of the gateway their own authorization link (or the
authorization server's URL the gateway sent them to). Completed by the other user, that user's
account at the MCP server would be stored as the sender's, who would then act as them. So:

- the link's page names whose connection it is (the gateway user, tenant and key prefix) and the
  server, and starts nothing by itself: a POST of its form confirms;
- the page sets a cookie (random, ``HttpOnly``, ``SameSite=Lax``, on the OAuth paths only) and
  its form carries a token sealed under the server secret, bound to that cookie and to the link:
  a POST without both (from another browser, or a form another site submits) is refused;
- the confirmed authorization (its ``state``) keeps a digest of the cookie, and the callback
  completes only in a browser that presents it: the authorization server's URL handed to
  someone else fails there;
- the link is single-use and short-lived (``mcp.oauth_ticket_seconds``).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import time

import orjson

from switchboard.crypto.keyring import DecryptError, Keyring
from switchboard.mcp.credentials import Ticket

COOKIE = "switchboard_mcp_oauth"
_CSRF_AAD = "mcp-oauth-consent"
_BROWSER = re.compile(r"^[A-Za-z0-9_-]{43}$")
# The page shows nothing from elsewhere, runs no script and is never framed (no clickjacking of
# the confirmation); its URL, which holds the ticket, is not sent on as a referrer.
PAGE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
                                  b"base-uri 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def browser_of(cookie_header: str) -> str | None:
    """The browser's id from its ``Cookie`` header, if it holds a well-formed one."""
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and _BROWSER.match(value):
            return value
    return None


def new_browser() -> str:
    return secrets.token_urlsafe(32)


def binding(browser: str) -> str:
    """What an authorization keeps of the browser that confirmed it (never the cookie itself)."""
    return hashlib.sha256(b"mcp-oauth-browser\0" + browser.encode()).hexdigest()


def same_browser(browser: str | None, bound: object) -> bool:
    return browser is not None and isinstance(bound, str) and hmac.compare_digest(binding(browser), bound)


def cookie(browser: str, path: str, secure: bool, max_age: int) -> tuple[bytes, bytes]:
    value = f"{COOKIE}={browser}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    return b"set-cookie", (value + ("; Secure" if secure else "")).encode()


def seal_csrf(keyring: Keyring, browser: str, ticket: Ticket) -> str:
    """The form's token: this browser, this link, until the link expires."""
    plain = orjson.dumps({"b": binding(browser), "n": ticket.nonce, "e": ticket.expires}).decode()
    return keyring.encrypt(plain, _CSRF_AAD)


def csrf_ok(keyring: Keyring, token: str, browser: str | None, ticket: Ticket) -> bool:
    if browser is None or not token or len(token) > 1024:
        return False
    try:
        data = orjson.loads(keyring.decrypt(token, _CSRF_AAD))
    except (DecryptError, orjson.JSONDecodeError):
        return False
    return (isinstance(data, dict) and data.get("n") == ticket.nonce and same_browser(browser, data.get("b"))
            and float(data.get("e", 0)) >= time.time())


def page(ticket: Ticket, raw_ticket: str, csrf: str) -> bytes:
    """The confirmation page: whose connection, to which server; a form that confirms."""
    e = html.escape
    who = f"<b>{e(ticket.user)}</b> of the tenant <b>{e(ticket.tenant)}</b>"
    if ticket.key_prefix:
        who += f" (key <code>{e(ticket.key_prefix)}…</code>)"
    server = f"<b>{e(ticket.server)}</b>"
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connect an MCP server</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:3em auto;line-height:1.5}"
        ".warn{border-left:4px solid #c60;padding-left:1em}</style></head><body>"
        f"<h1>Connect {server} to Switchboard</h1>"
        f"<p>The Switchboard user {who} asks to use the MCP server {server} with your account "
        "there: you will sign in at its authorization server next.</p>"
        f"<p class=\"warn\">Continue only if you are that user and started this yourself. If "
        f"someone sent you this link, close this page: continuing would let them use {server} "
        "as you.</p>"
        "<form method=\"post\" action=\"authorize\">"
        f"<input type=\"hidden\" name=\"ticket\" value=\"{e(raw_ticket)}\">"
        f"<input type=\"hidden\" name=\"csrf\" value=\"{e(csrf)}\">"
        f"<button type=\"submit\">Continue as {e(ticket.user)}</button></form></body></html>"
    ).encode()
