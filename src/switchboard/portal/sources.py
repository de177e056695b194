"""Where catalog entries come from: one source per kind, behind one small interface.

A source lists the entries one tenant may discover; the catalog (portal/catalog.py) merges
them, adds the caller team's subscription state and filters and pages the result. Sources read
state the gateway already keeps (the API store, the services configuration, the live model
table); they never call an upstream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchboard.access.rules import model_allowed
from switchboard.config.services import METHODS
from switchboard.context import Principal
from switchboard.routing.live import Snapshot
from switchboard.stores.protocols import ApiRecord, ApiStore, PromptStore

# API statuses a tenant may discover: a draft is not published yet, a retired API serves 410.
DISCOVERABLE_API_STATUSES = ("published", "deprecated")


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing a portal lists. ``subject`` is what a team subscribes to (the subscription's
    stored subject: a model name, or "<kind>:<name>"); ``fields`` are the kind's own."""

    kind: str
    name: str
    subject: str
    description: str | None = None
    owner: str | None = None  # the owning team, when there is one
    approval_required: bool = False
    fields: Mapping[str, Any] = field(default_factory=dict)
    owner_exempt: bool = False  # the owning team calls it without approval (a prompt API)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def needs_approval(self, team: str | None) -> bool:
        """Whether ``team`` (the caller's) needs an approved subscription to call it."""
        return self.approval_required and not (self.owner_exempt and team is not None and team == self.owner)

    def text(self) -> str:
        """What ``?q=`` searches, lower-cased."""
        return " ".join(filter(None, (self.name, self.description, self.owner))).lower()


class Source(Protocol):
    """The entries of one kind a caller's tenant may discover."""

    kind: str

    async def entries(self, tenant: str, principal: Principal) -> list[Entry]: ...


# -- published prompt APIs --------------------------------------------------------------------


def _api_entry(record: ApiRecord, versions: list[int]) -> Entry:
    deprecation = None
    if record.status == "deprecated" or record.successor is not None or record.sunset_at is not None:
        deprecation = {
            "deprecated": record.status == "deprecated",
            "sunset_at": record.sunset_at.isoformat() if record.sunset_at else None,
            "successor": record.successor,
        }
    return Entry(
        kind="api", name=record.name, subject=f"api:{record.name}", description=record.description,
        owner=record.team_id, approval_required=record.require_approval, owner_exempt=True,
        fields={
            "status": record.status,
            "path": f"/apis/{record.name}",
            "openapi": f"/apis/{record.name}/openapi.json",
            "prompt": record.prompt,
            "label": record.label,  # the prompt label the API follows (None: a fixed version)
            "version": record.version,  # the fixed prompt version (None: it follows the label)
            "versions": versions,  # callable pinned as /apis/{name}/v{N}
            "sessions": record.sessions is not None,
            "deprecation": deprecation,
        },
    )


class ApiSource:
    """The tenant's published (and deprecated) prompt APIs, from the API store; their
    versions from the prompt registry when it is there."""

    kind = "api"

    def __init__(self, apis: Callable[[], ApiStore | None],
                 prompts: Callable[[], PromptStore | None] = lambda: None) -> None:
        self._apis = apis
        self._prompts = prompts

    async def entries(self, tenant: str, principal: Principal) -> list[Entry]:
        return await self.listed(tenant)

    async def listed(self, tenant: str) -> list[Entry]:
        """The entries: the tenant's alone, whoever asks (so they can be kept per tenant)."""
        store = self._apis()
        if store is None:
            return []
        prompts = self._prompts()
        shown = [r for r in await store.list_apis(tenant) if r.status in DISCOVERABLE_API_STATUSES]
        numbers = {} if prompts is None else await prompts.version_numbers(tenant, {r.prompt for r in shown})
        out = []
        for record in shown:
            versions: list[int] = []
            if prompts is not None:
                versions = numbers.get(record.prompt, [])
            elif record.version is not None:
                versions = [record.version]
            out.append(_api_entry(record, versions))
        return out


# -- REST services ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the catalog shows of a REST service (config/services.py has the rest)."""

    name: str
    description: str | None = None
    team: str | None = None  # the owning team
    require_approval: bool = False
    openapi_url: str | None = None  # where the service documents itself (never fetched)
    methods: tuple[str, ...] = METHODS  # what callers may send; another method is 405


class ServiceSource:
    """REST services proxied under ``/services/{name}/`` that the tenant's callers see: the
    configuration's (every tenant's, or the tenant's own) and those registered for the tenant
    through the admin API, as ``services(tenant)`` lists them."""

    kind = "service"

    def __init__(self, services: Callable[[str], Awaitable[Iterable[ServiceInfo]]]) -> None:
        self._services = services

    async def entries(self, tenant: str, principal: Principal) -> list[Entry]:
        return await self.listed(tenant)

    async def listed(self, tenant: str) -> list[Entry]:
        """The entries: the tenant's alone, whoever asks (so they can be kept per tenant)."""
        return [
            Entry(kind="service", name=s.name, subject=f"service:{s.name}", description=s.description,
                  owner=s.team, approval_required=s.require_approval,
                  fields={"path": f"/services/{s.name}/", "openapi": s.openapi_url,
                          "methods": list(s.methods)})
            for s in await self._services(tenant)
        ]


# -- models -----------------------------------------------------------------------------------


class ModelSource:
    """The models of the live model table the caller may use (a key limited to some models
    sees only those): name, provider type, the catalog's capabilities and limits, and whether
    a team needs an approved subscription. Models are the platform's, the same for every
    tenant."""

    kind = "model"

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    async def entries(self, tenant: str, principal: Principal) -> list[Entry]:
        snapshot = self._snapshot()
        allowed = principal.allowed_models
        out = []
        for item in snapshot.directory:
            name = item["id"]
            if not model_allowed(name, allowed):
                continue
            group = snapshot.groups.get(name)
            first = group.deployments[0] if group is not None and group.deployments else None
            target = first.target if first is not None else None
            fields: dict[str, Any] = {
                "provider_type": target.provider_type if target is not None else None,
                "mode": item.get("mode"),
                "capabilities": sorted(k for k, v in (item.get("capabilities") or {}).items() if v),
                "context_window": item.get("context_window"),
                "max_output_tokens": item.get("max_output_tokens"),
            }
            out.append(Entry(
                # An alias answers as its group: the group's subscription is its own.
                kind="model", name=name, subject=group.name if group is not None else name,
                description=None, owner=None,
                approval_required=group is not None and group.require_approval,
                fields=fields,
            ))
        return out
