"""How one provider's connections leave the gateway: its TLS context (its own CA bundle, a client
certificate for mutual TLS, or no check) and the outbound HTTP proxy they go through.

Built once per provider when the configuration is loaded (``providers[].tls``,
``providers[].proxy``, ``egress.proxy``); the request path only reads the result, and a provider
with neither set has none (its client is exactly what it was). A file that cannot be read is a
configuration error naming the key and the path, never anything of the file's content.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from switchboard.config.schema import ProviderConfig, ProviderTls

log = logging.getLogger("switchboard")
T = TypeVar("T")


class OutboundError(ValueError):
    """A ``tls`` file that cannot be used: ``key: message``, naming the path, never its content."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An outbound HTTP proxy. ``shown`` (``http://host:port``) is what messages name; the URL
    with its credentials and the ``Proxy-Authorization`` value are never logged or shown."""

    host: str
    port: int
    url: str = field(repr=False)
    authorization: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def secrets(self) -> list[str]:
        """What scrubbing looks for in upstream error text (the password, the header's value)."""
        held = [s for s in (self.password, self.authorization) if s]
        if self.authorization:
            held.append(self.authorization.removeprefix("Basic "))
        return held


@dataclass(frozen=True, slots=True)
class Outbound:
    """A provider's TLS context (None: the system store, as for any provider) and proxy.
    ``client_cert``: the context presents a client certificate (mutual TLS)."""

    ssl: ssl.SSLContext | None = None
    proxy: Proxy | None = None
    client_cert: bool = False


def parse_proxy(url: str) -> Proxy:
    """A proxy URL the configuration accepted (config/urls.py ``proxy_url_problem``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    authorization = password = None
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return Proxy(host, parts.port or 80, url, authorization, password or None)


def tls_context(tls: ProviderTls, where: str = "tls") -> ssl.SSLContext:
    """The SSL context of ``tls`` (``where``: the key's path for messages).
    A ``ca_file`` replaces the system store rather than adding to it, as curl's ``--cacert`` and
    requests' ``verify=`` do: trust for an internal provider stays with the internal CA; a
    provider reached through a TLS-inspecting proxy needs that proxy's CA alone."""
    context = ssl.create_default_context()  # without ca_file: the system store
    if tls.ca_file is not None:
        ca_file = tls.ca_file
        context = _load(lambda: ssl.create_default_context(cafile=ca_file), f"{where}.ca_file", ca_file)
        if not context.get_ca_certs():
            raise OutboundError(f"{where}.ca_file: {ca_file!r} holds no CA certificate (PEM)")
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None and tls.client_key is not None:
        cert, key = tls.client_cert, tls.client_key
        _load(lambda: context.load_cert_chain(cert, key), f"{where}.client_cert/client_key",
              f"{cert}, {key}")
    return context


def _load(action: Callable[[], T], key: str, path: str) -> T:
    """Run ``action`` (a loader of ``path``), its failure turned into an OutboundError naming
    ``key`` and the path: the reason is the OS's or OpenSSL's, which quote no file content."""
    try:
        return action()
    except FileNotFoundError:
        raise OutboundError(f"{key}: {path!r} does not exist") from None
    except PermissionError:
        raise OutboundError(f"{key}: {path!r} cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise OutboundError(f"{key}: {path!r} is a directory, not a PEM file") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise OutboundError(f"{key}: {path!r} is not usable PEM ({reason})") from None


def build(config: ProviderConfig) -> Outbound | None:
    """The provider's outbound settings; None when it sets neither (the common case).
    OutboundError (``tls.<key>: ...``) when a file cannot be used."""
    if config.tls is None and config.proxy is None:
        return None
    context = tls_context(config.tls) if config.tls is not None else None
    proxy = parse_proxy(config.proxy.get_secret_value()) if config.proxy is not None else None
    client_cert = config.tls is not None and config.tls.client_cert is not None
    return Outbound(context, proxy, client_cert)


def warn_unverified(config: ProviderConfig) -> None:
    """The one warning a provider with ``tls.verify: false`` gets, at start-up."""
    if config.tls is not None and not config.tls.verify:
        log.warning("provider '%s': tls.verify is false: its TLS certificate is not checked, so anyone "
                    "on the network path can read and change its traffic", config.name)
