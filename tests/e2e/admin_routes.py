"""The admin application's routes, read from the application itself, each with the
``allow_<resource>_<action>`` permission it declares: what the permission walks iterate over, so
a route added later is covered without touching them (and one without a decision fails them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from switchboard.access.roles import TABLE
from switchboard.http.admin.app import AdminServices, create_admin_app


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    resource: str
    action: str

    @property
    def by_id(self) -> bool:
        return "{" in self.path

    @property
    def collection(self) -> str:
        return self.path.split("/{", 1)[0]

    def url(self, record_id: str) -> str:
        return re.sub(r"\{[^}]+\}", record_id, self.path)


def _allow_of(dependant: Dependant) -> tuple[str, str] | None:
    names = {f"allow_{r}_{a}": (r, a) for r, actions in TABLE.items() for a in actions}
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        name = getattr(dep.call, "__name__", "")
        if name in names:
            return names[name]
        stack.extend(dep.dependencies)
    return None


def admin_routes(prefix: str) -> list[Route]:
    """Every route under ``prefix``, one per method, with its decision; asserts each has one."""
    # Building the app reads no service: the routes are all this needs.
    app = create_admin_app(AdminServices(**{f.name: None for f in fields(AdminServices)}))
    # Newer FastAPI keeps included routers as such; iter_route_contexts flattens them.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    found, missing = [], []
    for route in flatten(app.routes) if flatten else app.routes:
        original = getattr(route, "original_route", route)
        if not isinstance(original, APIRoute) or not route.path.startswith(prefix):
            continue
        allowed = _allow_of(route.dependant)
        if allowed is None:
            missing.append(route.path)
            continue
        found.extend(Route(method, route.path, *allowed) for method in sorted(original.methods))
    assert not missing, f"admin routes without an allow(resource, action) dependency: {missing}"
    return found
