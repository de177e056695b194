"""The live table of services: the YAML's (``services:``, fixed for the process) and those
registered through the admin API (stored per tenant, their headers sealed), the stored ones
cached in process and dropped on every instance through the change feed: no database query per
request for a service seen lately (``stores/feedcache.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError
from yarl import URL

from switchboard.config.services import ServiceConfig, ServiceSettings
from switchboard.crypto.keyring import DecryptError, Keyring, service_header_aad
from switchboard.stores.feedcache import STORE_READ_SECONDS, FeedCache
from switchboard.stores.protocols import ChangeFeed, ServiceRecord, ServiceStore
from switchboard.upstream import scrub

log = logging.getLogger("switchboard.services")

TOPIC = "services"
DEFAULT_TENANT = "default"
# Stored services cached per (tenant, name), "none by that name" included: as many as the prompt
# and API caches keep. Services are few per tenant, unlike keys (100,000 cached, access/cache.py);
# a name nobody registered costs an entry too, so the bound is what a caller can fill.
CACHED_SERVICES = 10_000


# What a stored header's seal is bound to: it opens for this service and header only.
header_aad = service_header_aad


@dataclass(frozen=True, slots=True, eq=False)
class Service:
    """One service as the request path uses it."""

    name: str
    tenant: str | None  # None: every tenant's callers (a YAML entry without tenant)
    settings: ServiceSettings
    origin: str  # config | admin
    scheme: str
    host: str
    port: int
    base_path: str  # the URL's path without its trailing slash, percent-encoded
    headers: tuple[tuple[str, str], ...]  # added upstream, values in clear
    timeout: aiohttp.ClientTimeout
    # Why the service cannot be called (a sealed header that does not open); None: it can.
    broken: str | None = None
    # A stored one: a platform admin registered it or last changed its URL (upstream/egress.py).
    by_platform_admin: bool = False
    # The credentials among ``headers`` in every form an error body may echo them in, computed
    # once here (upstream/scrub.py); empty: the service's answers are relayed untouched.
    secrets: tuple[bytes, ...] = ()
    # The service's own origin as a redirect may spell it, lower-cased: ``http://host:port`` and
    # ``//host:port``, and without the port when it is the scheme's default (``Service.local``).
    origins: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """The subscription subject of the service."""
        return f"service:{self.name}"

    def url(self, rest: str, query: bytes) -> URL:
        """The upstream URL of ``rest`` (a checked, percent-encoded path): the service's own
        scheme, host and port always."""
        return URL.build(scheme=self.scheme, host=self.host, port=self.port, path=self.base_path + rest,
                         query_string=query.decode("ascii"), encoded=True)

    def local(self, location: str) -> str | None:
        """``location`` (a redirect's target) as the gateway's path when it is one of the service's
        own URLs, at or under its base path (absolute, scheme-relative or path-absolute), else None:
        ``http://orders.internal:8080/api/v2/x?y`` is ``/services/orders/v2/x?y``."""
        rest = location
        if not location.startswith("/") or location.startswith("//"):
            lowered = location[:len(self.origins[0])].lower() if self.origins else ""
            origin = next((o for o in self.origins if lowered.startswith(o)
                           and location[len(o):len(o) + 1] in ("", "/", "?", "#")), None)
            if origin is None:
                return None
            rest = location[len(origin):]
        if not rest.startswith(self.base_path) or rest[len(self.base_path):len(self.base_path) + 1] not in (
                "", "/", "?", "#"):
            return None
        path = rest.split("?", 1)[0].split("#", 1)[0]
        if any(segment.lower().replace("%2e", ".") in (".", "..") for segment in path.split("/")):
            return None  # dot segments (URL parsers read %2e as a dot) may leave the base path
        here = f"/services/{self.name}"
        if not self.base_path and (path == here or path.startswith(here + "/")):
            return None  # a service that knows its public prefix already wrote the gateway's path
        return here + rest[len(self.base_path):]


def build(name: str, tenant: str | None, settings: ServiceSettings, origin: str,
          headers: dict[str, str], broken: str | None = None, by_platform_admin: bool = False) -> Service:
    url = URL(settings.url)
    assert url.host is not None and url.port is not None, "checked by the settings"
    base = url.raw_path.rstrip("/")
    t = settings.timeout_seconds
    timeout = aiohttp.ClientTimeout(total=t.total, connect=t.connect, sock_connect=t.connect)
    host = url.raw_host or url.host
    named = (f"[{host}]" if ":" in host else host).lower()  # an IPv6 address in brackets
    authorities = [f"{named}:{url.port}"]
    if url.is_default_port():
        authorities.append(named)
    origins = tuple(f"{prefix}{authority}" for authority in authorities
                    for prefix in (f"{url.scheme}://", "//"))
    return Service(name, tenant, settings, origin, url.scheme, host, url.port, base,
                   tuple(headers.items()), timeout, broken, by_platform_admin,
                   tuple(scrub.forms(scrub.header_secrets(headers))), origins)


def from_config(config: ServiceConfig) -> Service:
    headers = {k: v.get_secret_value() for k, v in config.headers.items()}
    settings = ServiceSettings.model_validate(config.model_dump(exclude={"name", "tenant", "headers"}))
    return build(config.name, config.tenant, settings, "config", headers)


def from_record(record: ServiceRecord, keyring: Keyring | None) -> Service:
    headers: dict[str, str] = {}
    broken = None
    for header, sealed in record.headers.items():
        if keyring is None:
            broken = "its headers are sealed and the gateway has no auth.secret_key"
            break
        try:
            headers[header] = keyring.decrypt(sealed, header_aad(record.tenant_id, record.name, header))
        except DecryptError as exc:
            broken = f"a stored header does not open ({exc})"
            break
    try:
        settings = ServiceSettings.model_validate(dict(record.spec))
    except ValidationError as exc:
        log.error("service %s/%s: stored settings are invalid: %s", record.tenant_id, record.name, exc)
        settings = ServiceSettings(url="http://invalid.invalid")
        broken = "its stored settings are invalid"
    if broken is not None:
        log.error("service %s/%s cannot be called: %s", record.tenant_id, record.name, broken)
    return build(record.name, record.tenant_id, settings, "admin", headers, broken, record.by_platform_admin)


def _encode(key: tuple[str, str]) -> str:
    return f"{key[0]}\t{key[1]}"


def _decode(message: str) -> tuple[str, str] | None:
    tenant, sep, name = message.partition("\t")
    return (tenant, name) if sep else None


class ServiceTable:
    def __init__(self, configs: list[ServiceConfig]) -> None:
        self.static: dict[str, Service] = {}
        for config in configs:
            if config.name in self.static:
                raise ValueError(f"services: duplicate service name {config.name!r}")
            self.static[config.name] = from_config(config)
        self._cache: FeedCache[tuple[str, str], Service] | None = None
        self._store: ServiceStore | None = None
        self.keyring: Keyring | None = None

    async def start(self, store: ServiceStore | None, feed: ChangeFeed, keyring: Keyring | None) -> None:
        self._store = store
        self.keyring = keyring
        if store is None:
            return

        async def load(key: tuple[str, str]) -> Service | None:
            assert self._store is not None
            record = await self._store.get(*key)
            return from_record(record, self.keyring) if record is not None else None

        self._cache = FeedCache(TOPIC, load, feed, encode=_encode, decode=_decode, ttl=30.0, negative_ttl=5.0,
                                max_entries=CACHED_SERVICES, read_timeout=STORE_READ_SECONDS)
        await self._cache.start()

    async def close(self) -> None:
        if self._cache is not None:
            await self._cache.close()
            self._cache = None

    def configured(self, tenant: str, name: str) -> Service | None:
        """The YAML's service ``name`` if the tenant's callers see it."""
        found = self.static.get(name)
        return found if found is not None and found.tenant in (None, tenant) else None

    async def lookup(self, tenant: str, name: str) -> Service | None:
        """The service ``name`` as the tenant's callers see it; None: no such service."""
        found = self.configured(tenant, name)
        if found is not None or self._cache is None:
            return found
        key = (tenant, name)
        cached = self._cache.peek(key, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        return await self._cache.get(key)

    async def changed(self, tenant: str, name: str) -> None:
        """A stored service changed here: forget it on every instance."""
        if self._cache is not None:
            await self._cache.changed((tenant, name))

    def visible(self, tenant: str | None) -> list[Service]:
        """The YAML's services the tenant's callers see (None: all of them)."""
        return [s for s in self.static.values() if tenant is None or s.tenant in (None, tenant)]

