"""The sealed part of an MCP server registered through the admin API (mcp/stored.py).

One sealed value per server, bound to its id, holds its static headers, its OAuth client secret
and its URL: a hosted server's URL often carries its credential in the path
(``https://actions.zapier.com/mcp/<token>/sse``), so the settings kept in clear hold only its
origin (``https://actions.zapier.com/…``, what answers show) and a marker saying the whole URL is
sealed. Servers stored before the URL was sealed have it in clear, without the marker: both
forms are read; every write (and ``switchboard secrets rotate``) stores the sealed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import orjson

from switchboard.config.urls import url_origin
from switchboard.crypto.keyring import DecryptError, Keyring, mcp_server_aad
from switchboard.stores.protocols import McpServerRecord

# In the clear settings: the URL is in the sealed value, the settings' "url" its origin only.
URL_SEALED = "_url_sealed"


class Opened(NamedTuple):
    """What a record's sealed value holds, opened (the URL from the clear settings when the
    record was stored before URLs were sealed; None when there is none to be had)."""

    headers: dict[str, str]
    client_secret: str | None
    url: str | None


def url_is_sealed(config: Mapping[str, Any]) -> bool:
    return bool(config.get(URL_SEALED))


def seal(keyring: Keyring, server_id: str, opened: Opened) -> str | None:
    """The record's secrets sealed together (None: it has none)."""
    if not opened.headers and opened.client_secret is None and opened.url is None:
        return None
    plain = orjson.dumps({"headers": dict(opened.headers), "client_secret": opened.client_secret,
                          "url": opened.url}).decode()
    return keyring.encrypt(plain, mcp_server_aad(server_id))


def clear_settings(config: Mapping[str, Any], url: str | None) -> dict[str, Any]:
    """The settings to store in clear beside a sealed ``url``: its origin, and the marker."""
    out = dict(config)
    if url is None:
        out.pop("url", None)
        out.pop(URL_SEALED, None)
    else:
        out["url"], out[URL_SEALED] = url_origin(url), True
    return out


def unseal(keyring: Keyring | None, record: McpServerRecord) -> Opened:
    """The record's headers, OAuth client secret and URL. Raises DecryptError when they do not
    open (or there is no keyring to open them with)."""
    clear_url = None if url_is_sealed(record.config) else record.config.get("url")
    if record.sealed is None:
        return Opened({}, None, clear_url)
    if keyring is None:
        raise DecryptError("no server secret (auth.secret_key) to open the stored secrets with")
    data = orjson.loads(keyring.decrypt(record.sealed, mcp_server_aad(record.id)))
    return Opened(dict(data.get("headers") or {}), data.get("client_secret"), data.get("url") or clear_url)


def resealed(keyring: Keyring, record: McpServerRecord) -> McpServerRecord:
    """The record with its secrets sealed under the keyring's current key, its URL among them
    (one stored in clear before is moved into the sealed value). The record itself when nothing
    changes. Raises DecryptError (as :meth:`Keyring.reencrypt`) when they do not open."""
    if url_is_sealed(record.config) or record.config.get("url") is None:
        if record.sealed is None:
            return record
        return replace(record, sealed=keyring.reencrypt(record.sealed, mcp_server_aad(record.id)))
    opened = unseal(keyring, record)
    return replace(record, config=clear_settings(record.config, opened.url),
                   sealed=seal(keyring, record.id, opened))
