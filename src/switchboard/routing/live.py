"""The live model table: the YAML's providers and models merged with the stored ones, as one
immutable :class:`Snapshot` swapped atomically when the stored ones change.

- The request path reads ``LiveRouting.current`` once (RouteStage) and keeps the candidates it
  got to the end; a retry takes its deployment from the current table as it is sent
  (``Router.live``), so it never goes out on a retired client (a credential rotated away).
- Every change made through the admin API reloads this instance at once and is published on
  the change feed's ``routing`` topic; every instance reloads from the database when the
  message arrives. The feed is at most once, so each instance also reloads every
  ``database.cache_seconds`` (the gateway passes it; :data:`RELOAD_SECONDS` when not given: a
  cheap read of three small tables, nothing is rebuilt when nothing changed): the bound on
  staleness when a message is lost, as for the request path's other caches of stored records.
- A stored provider's client is reused while its definition and credentials are unchanged.
  The client of a provider changed or removed is closed only once every exchange that may have
  started on it has ended: after its longest ``total`` timeout (the bound on any upstream
  exchange, stream included); at shutdown, at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from switchboard.catalog import Catalog
from switchboard.config.catalog import ModelEntryInfo
from switchboard.config.schema import (
    ModelConfig,
    ProviderConfig,
    RouterConfig,
    Settings,
    TimeoutsOverride,
    deployment_names,
)
from switchboard.crypto import refs
from switchboard.crypto.keyring import DecryptError, Keyring, credential_aad
from switchboard.providers import registry
from switchboard.providers.registry import ResolvedProvider
from switchboard.routing.groups import Group, build_groups
from switchboard.routing.splits import SplitChooser
from switchboard.routing.table import (
    Route,
    build_clients,
    make_client,
    make_route,
    resolve_providers,
)
from switchboard.stores.protocols import (
    ChangeFeed,
    CredentialRecord,
    ModelRecord,
    ProviderRecord,
    ProviderStore,
    RoutingState,
    RoutingStore,
)
from switchboard.stores.reloader import Reloader
from switchboard.upstream.client import UpstreamClient

log = logging.getLogger("switchboard.routing")

TOPIC = "routing"
RELOAD_SECONDS = 10.0
CLOSE_MARGIN_SECONDS = 1.0

ModelEntry = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the request path needs about models, built together, never changed."""

    groups: dict[str, Group]  # by name and alias
    routes: dict[str, Route]  # each group's first deployment, by group name
    models: dict[str, ModelConfig]  # each group's first entry (YAML or stored), by name
    directory: list[ModelEntry]  # /v1/models, in order: YAML first, then stored by name
    by_id: dict[str, ModelEntry] = field(default_factory=dict)
    listing: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # fingerprint of the stored state it was built from
    splits: dict[str, SplitChooser] = field(default_factory=dict)  # by the requested name

    def deployments(self) -> set[tuple[str, str]]:
        """Every deployment of the table, by group and deployment name."""
        return {(r.target.name, r.deployment) for name, g in self.groups.items() if g.name == name
                for r in g.deployments}

    @classmethod
    def of(cls, routes: list[Route], models: dict[str, ModelConfig], directory: list[ModelEntry],
           version: str = "", router: RouterConfig | None = None,
           weights: Mapping[tuple[str, str], int] | None = None,
           price: Callable[[Route], tuple[float, float] | None] | None = None,
           split_percents: Mapping[str, Mapping[str, float]] | None = None) -> Snapshot:
        router = router or RouterConfig()
        groups = build_groups(routes, router, weights, price)
        firsts = {name: g.deployments[0] for name, g in groups.items() if g.name == name}
        percents = split_percents or {}
        splits = {s.model: SplitChooser(s, percents.get(s.name)) for s in router.splits}
        # An alias answers as its group: the group's split too (the same chooser, so one draw and
        # one set of shares), unless the alias has a split of its own. Resolved here, once per
        # table, so the rules stage's lookup by the requested name stays one dict read.
        for alias, name in router.aliases.items():
            if alias not in splits and name in splits:
                splits[alias] = splits[name]
        return cls(groups, firsts, models, directory, {e["id"]: e for e in directory},
                   {"object": "list", "data": directory}, version, splits)


@dataclass(frozen=True, slots=True)
class _Built:
    fingerprint: str
    resolved: ResolvedProvider
    client: UpstreamClient


def provider_config(record: ProviderRecord) -> ProviderConfig:
    """A stored provider as a configuration entry (ValidationError when it is not valid)."""
    data: dict[str, Any] = {**record.options, "name": record.name, "type": record.type,
                            "headers": dict(record.headers)}
    if record.api_base is not None:
        data["api_base"] = record.api_base
    if record.timeouts is not None:
        data["timeouts"] = dict(record.timeouts)
    if record.max_connections is not None:
        data["max_connections"] = record.max_connections
    if record.allow_caller_credentials:
        data["allow_caller_credentials"] = True
    if record.rpm is not None:
        data["rpm"] = record.rpm
    if record.tpm is not None:
        data["tpm"] = record.tpm
    return ProviderConfig.model_validate(data)


def model_config(record: ModelRecord) -> ModelConfig:
    return ModelConfig(
        name=record.name,
        provider=record.provider,
        model=record.model,
        timeouts=None if record.timeouts is None else TimeoutsOverride.model_validate(record.timeouts),
        drop_params=record.drop_params,
        info=None if record.info is None else ModelEntryInfo.model_validate(record.info),
        require_approval=record.require_approval,
    )


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()


class LiveRouting:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._started_at = int(time.time())
        self._static = resolve_providers(settings)  # options and api_base, once per provider
        self._static_clients = build_clients(settings, self._static)
        self._stored: dict[str, _Built] = {}
        self._store: ProviderStore | None = None
        # The run-time overrides' store; its tables are in the providers' database and read by
        # ``store.load(routing=True)`` with them (one connection for the reload).
        self._overrides: RoutingStore | None = None
        self._keyring: Keyring | None = None
        self._reloader = Reloader(TOPIC, self.reload, log, "reloading the model table",
                                  "the current one stays")
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: set[UpstreamClient] = set()
        self._version: str | None = None
        # Run-time weights by (group, deployment), from the admin API's routing overrides.
        self.weights: dict[tuple[str, str], int] = {}
        # Run-time percents of splits' arms by split name, from the admin API.
        self.split_percents: dict[str, dict[str, float]] = {}
        self.current = self._build_snapshot([], "")
        self.reloads = 0  # snapshots built from the store, for tests and metrics
        # Told of every snapshot swapped in (the router forgets what it dropped); quick, sync.
        self.swapped: list[Callable[[Snapshot], None]] = []

    # -- what other parts ask ------------------------------------------------------------

    def is_static_provider(self, name: str) -> bool:
        return name in self._static

    def is_static_model(self, name: str) -> bool:
        return any(m.name == name for m in self.settings.models)

    def provider_type(self, name: str) -> str | None:
        """The type of a provider from either source (None: unknown)."""
        resolved = self._static.get(name)
        if resolved is not None:
            return resolved.config.type
        built = self._stored.get(name)
        return built.resolved.config.type if built else None

    def resolved(self, name: str) -> ResolvedProvider | None:
        """A usable provider from either source, resolved (None: unknown or not usable)."""
        built = self._stored.get(name)
        return self._static.get(name) or (built.resolved if built else None)

    def static_client(self, name: str) -> UpstreamClient | None:
        return self._static_clients.get(name)

    def stored_client(self, name: str) -> UpstreamClient | None:
        built = self._stored.get(name)
        return built.client if built else None

    @property
    def keyring(self) -> Keyring | None:
        return self._keyring

    # -- life ----------------------------------------------------------------------------

    async def start(self, store: ProviderStore | None = None, feed: ChangeFeed | None = None,
                    keyring: Keyring | None = None, reload_seconds: float = RELOAD_SECONDS,
                    overrides: RoutingStore | None = None) -> None:
        for client in self._static_clients.values():
            await client.start()
        self._store, self._keyring = store, keyring
        self._overrides = overrides
        if store is None:
            return
        await self._reloader.start(feed, reload_seconds)

    async def close(self) -> None:
        await self._reloader.close()
        for task in list(self._closing):
            task.cancel()
        clients = [*self._static_clients.values(), *(b.client for b in self._stored.values()), *self._retired]
        self._stored = {}
        self._retired.clear()
        for client in clients:
            await client.close()

    async def changed(self) -> None:
        """The stored state changed here: rebuild now, and tell every other instance."""
        await self._reloader.changed()

    # -- building ------------------------------------------------------------------------

    async def reload(self) -> None:
        """Read the stored providers and models and swap in a new snapshot if they changed."""
        if self._store is None:
            return
        async with self._lock:
            # With the run-time overrides, when there are any to read: the stores share a
            # database, and all of it is read on one connection.
            state = await self._store.load(routing=self._overrides is not None)
            weights = {(o.group, o.deployment): o.weight
                       for o in state.overrides or () if o.weight is not None}
            splits = {o.name: dict(o.percents) for o in state.splits or ()}
            version = _fingerprint([
                [_provider_key(p) for p in state.providers],
                [(c.id, c.provider) for c in state.credentials],
                [_model_key(m) for m in state.models],
                sorted(weights.items()),
                sorted(splits.items()),
            ])
            if version == self._version:
                return
            self.weights = weights
            self.split_percents = splits
            previous = self._stored
            built = await self._build_providers(state, previous)
            old_routes = self.all_routes()
            self._stored = built
            self.current = self._build_snapshot(state.models, version)
            self._version = version
            self.reloads += 1
            for listener in self.swapped:
                listener(self.current)
            for name, old in previous.items():
                if built.get(name) is not old:
                    self._retire(old.client, old.resolved.config.timeouts.total, old_routes)

    async def _build_providers(self, state: RoutingState, previous: dict[str, _Built]) -> dict[str, _Built]:
        creds: dict[str, list[CredentialRecord]] = {}
        for c in state.credentials:
            creds.setdefault(c.provider, []).append(c)
        built: dict[str, _Built] = {}
        for record in state.providers:
            if record.name in self._static:
                log.warning("stored provider %r is ignored: the config declares it", record.name)
                continue
            mine = creds.get(record.name, [])
            fingerprint = _fingerprint([_provider_key(record), [c.id for c in mine]])
            old = previous.get(record.name)
            if old is not None and old.fingerprint == fingerprint:
                built[record.name] = old
                continue
            try:
                config = provider_config(record)
                problems = registry.check_provider(config, bool(mine))
                if problems:
                    raise ValueError("; ".join(problems))
                resolved = registry.resolve(config)
            except (ValidationError, ValueError) as exc:
                log.warning("stored provider %r is not valid and is skipped: %s", record.name, _reason(exc))
                continue
            keys = self._keys(record.name, mine)
            client = make_client(resolved, keys, missing=bool(mine) and not keys)
            await client.start()
            built[record.name] = _Built(fingerprint, resolved, client)
        return built

    def _keys(self, provider: str, creds: list[CredentialRecord]) -> list[str]:
        """The credentials in clear; one that cannot be opened or resolved is left out (logged
        by id and reason, never by value)."""
        keys = []
        for c in creds:
            try:
                if c.ref is not None:
                    keys.append(refs.resolve(c.ref))
                elif c.ciphertext is not None:
                    if self._keyring is None:
                        raise DecryptError("no server secret configured")
                    keys.append(self._keyring.decrypt(c.ciphertext, credential_aad(provider, c.id)))
            except (refs.RefError, DecryptError) as exc:
                log.warning("credential %s of provider %r is not usable: %s", c.id, provider, exc)
        return keys

    def _build_snapshot(self, stored_models: list[ModelRecord], version: str) -> Snapshot:
        routes: list[Route] = []
        models: dict[str, ModelConfig] = {}
        directory: list[ModelEntry] = []
        names = deployment_names(self.settings.models)
        for i, m in enumerate(self.settings.models):
            routes.append(make_route(m, self._static[m.provider], self._static_clients[m.provider], names[i]))
            if m.name in models:
                continue  # another deployment of a group already listed
            models[m.name] = m
            directory.append({"id": m.name, "object": "model", "created": self._started_at,
                              "owned_by": m.provider, **self.catalog.public_fields(m.name)})
        for alias in self.settings.router.aliases:
            directory.append({**next(e for e in directory if e["id"] == self.settings.router.aliases[alias]),
                              "id": alias})
        for record in stored_models:
            if record.name in models or record.name in self.settings.router.aliases:
                continue  # the API refuses this; a YAML entry wins over a stored one
            resolved: ResolvedProvider | None
            client: UpstreamClient | None
            if record.provider in self._static:
                resolved, client = self._static[record.provider], self._static_clients[record.provider]
            else:
                built = self._stored.get(record.provider)
                resolved, client = (built.resolved, built.client) if built else (None, None)
            if resolved is None or client is None:
                log.warning("stored model %r is skipped: no usable provider %r", record.name, record.provider)
                continue
            try:
                m = model_config(record)
            except ValidationError as exc:
                log.warning("stored model %r is not valid and is skipped: %s", record.name, _reason(exc))
                continue
            routes.append(make_route(m, resolved, client))
            models[m.name] = m
            match = self.catalog.resolve_entry(resolved.config.type, m.model, m.info)
            directory.append({"id": m.name, "object": "model", "created": int(record.created_at.timestamp()),
                              "owned_by": m.provider, **(match.info.public() if match else {})})
        return Snapshot.of(routes, models, directory, version, self.settings.router, self.weights,
                           self._price, self.split_percents)

    def _price(self, route: Route) -> tuple[float, float] | None:
        """USD per million input and output tokens of a deployment's catalog record."""
        entry = route.entry
        if entry is None:
            return None
        match = self.catalog.resolve_entry(route.target.provider_type, entry.model, entry.info)
        if match is None or match.info.input_cost_per_mtok is None:
            return None
        return match.info.input_cost_per_mtok, match.info.output_cost_per_mtok or 0.0

    def all_routes(self) -> list[Route]:
        """Every deployment of every group in the current table."""
        return [r for name, g in self.current.groups.items() if g.name == name for r in g.deployments]

    def _retire(self, client: UpstreamClient, total: float, routes: list[Route]) -> None:
        """Close ``client`` once every exchange that may be running on it has ended."""
        grace = max([total, *(r.target.timeouts.total for r in routes if r.client is client)])
        self._retired.add(client)

        async def close_later() -> None:
            await asyncio.sleep(grace + CLOSE_MARGIN_SECONDS)
            self._retired.discard(client)
            await client.close()

        task = asyncio.get_running_loop().create_task(close_later())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _provider_key(p: ProviderRecord) -> list[Any]:
    return [p.name, p.type, p.api_base, dict(p.options), dict(p.headers),
            None if p.timeouts is None else dict(p.timeouts), p.max_connections, p.allow_caller_credentials,
            p.rpm, p.tpm]


def _model_key(m: ModelRecord) -> list[Any]:
    return [m.name, m.provider, m.model, None if m.timeouts is None else dict(m.timeouts), m.drop_params,
            None if m.info is None else dict(m.info), m.require_approval, m.created_at.isoformat()]


def _reason(exc: Exception) -> str:
    """Why a stored record is not valid, without the values it holds."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors(include_url=False, include_input=False))
    return str(exc)
