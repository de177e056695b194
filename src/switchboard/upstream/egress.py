"""Which addresses an outbound connection may reach, for upstreams that someone other than the
operator named: services and MCP servers registered by tenants (docs/access.md, "Egress"), and
image URLs in callers' messages (pipeline/images.py).

A name is checked after it resolves, on the addresses the connection will use, so it cannot pass a
check and then point inward (DNS rebinding); an IP literal never reaches a resolver, so it is
checked from the URL, on every request and every redirect. Non-public means what
:attr:`ipaddress.IPv4Address.is_global` says it is not: loopback, private ranges, link-local (the
cloud metadata address), carrier-grade NAT, reserved and unspecified addresses. IPv4-mapped IPv6
addresses are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from switchboard.config.schema import EgressConfig
from switchboard.errors import InvalidRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ONLY_PUBLIC = ("upstreams registered by a tenant or team admin, or for a tenant other than the default "
               "one, reach public addresses only, unless the operator allows the host (egress.allowed_hosts)")
# The platform's own tenant: what a platform admin registers there is the operator's, like the YAML's.
DEFAULT_TENANT = "default"
# How the admin API names the rules a registered upstream follows (its "egress" field).
OPERATOR = "operator"
PUBLIC_ONLY = "public_only"


def operators_own(tenant: str | None, *, by_platform_admin: bool) -> bool:
    """Whether an upstream registered through the admin API for ``tenant`` (None: a global one,
    the platform admin's) is the operator's own, exempt from the rules: only what a platform
    admin registered (or last pointed elsewhere) for the default tenant is; a tenant or team
    admin of the default tenant is not the operator."""
    return tenant is None or (tenant == DEFAULT_TENANT and by_platform_admin)


def egress_rule(tenant: str | None, *, by_platform_admin: bool) -> str:
    """The rules a registered upstream follows, as admins read them: :data:`OPERATOR` (any
    address) or :data:`PUBLIC_ONLY` (public addresses, plus the operator's ``egress:``
    exceptions, which apply to every such upstream and so are not repeated per record)."""
    return OPERATOR if operators_own(tenant, by_platform_admin=by_platform_admin) else PUBLIC_ONLY


class EgressRefused(OSError):
    """The host is, or resolves only to, addresses the policy does not let this upstream reach."""


class Egress:
    """Public addresses, plus the operator's exceptions: host names (exact, or ``*.suffix``) and
    networks (``10.20.0.0/16``, or a single address)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        self._networks: list[Network] = []
        for entry in allowed:
            self._add(entry.strip().lower().rstrip("."))

    def _add(self, entry: str) -> None:
        try:
            self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            return
        except ValueError:
            pass
        if entry.startswith("*."):
            self._suffixes.append(entry[1:])  # ".example.internal"
        else:
            self._names.add(entry)

    def names(self, host: str) -> bool:
        """Whether the operator let ``host`` through by name (whatever it resolves to)."""
        host = host.lower().rstrip(".")
        return host in self._names or any(host.endswith(s) for s in self._suffixes)

    def permits(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_global or any(address in n for n in self._networks)

    def check_host(self, host: str) -> None:
        """Raise :class:`EgressRefused` when ``host`` is an IP literal the policy refuses; names
        pass here (the resolver judges their addresses), as do names the operator allowed."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        if not self.permits(address) and not self.names(host):
            raise EgressRefused(f"host '{host}' is not a public address")

    def resolver(self) -> AbstractResolver:
        return _Resolver(self)

    def traces(self) -> list[aiohttp.TraceConfig]:
        """The session's trace hook that checks IP literals on each request and redirect (the
        connector takes :meth:`resolver` for names)."""
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_request_start)
        return [trace]

    async def _on_request_start(self, session: aiohttp.ClientSession, context: SimpleNamespace,
                                params: aiohttp.TraceRequestStartParams) -> None:
        self.check_host(params.url.raw_host or "")


class _Resolver(AbstractResolver):
    def __init__(self, egress: Egress) -> None:
        self._egress = egress
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._egress.names(host):
            return results
        allowed = [r for r in results if self._egress.permits(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise EgressRefused(f"host '{host}' resolves only to addresses that are not public")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class EgressPolicy:
    """``egress:`` of the configuration: which registered upstreams are guarded, and how."""

    def __init__(self, config: EgressConfig) -> None:
        self._open = config.allow_tenant_private_networks
        self._egress = Egress(config.allowed_hosts)

    def guard(self, tenant: str | None, *, by_platform_admin: bool) -> Egress | None:
        """The rules for an upstream registered through the admin API for ``tenant`` (None:
        a global one, the platform admin's); None when it may connect anywhere (the operator's
        own, :func:`operators_own`, or every one when the operator opened private networks)."""
        if self._open or operators_own(tenant, by_platform_admin=by_platform_admin):
            return None
        return self._egress

    def check_registered(self, tenant: str | None, field: str, url: str, *, by_platform_admin: bool) -> None:
        """At registration, refuse at once a URL whose host is an IP literal the tenant's upstreams
        may not reach; names are judged on every connection, once resolved."""
        egress = self.guard(tenant, by_platform_admin=by_platform_admin)
        if egress is None:
            return
        try:
            egress.check_host(urlsplit(url).hostname or "")
        except EgressRefused as exc:
            raise InvalidRequest(f"{field}: {exc}; {ONLY_PUBLIC}", param=field,
                                 code="upstream_address_refused") from None


def refusal(exc: BaseException) -> EgressRefused | None:
    """The egress refusal behind an aiohttp connection error, if that is what it was."""
    if isinstance(exc, EgressRefused):
        return exc
    cause = getattr(exc, "os_error", None)
    return cause if isinstance(cause, EgressRefused) else None
