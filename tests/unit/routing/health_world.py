"""Model groups built from a real configuration (no upstream is ever called), for the health,
pre-routing and residency tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard import catalog
from switchboard.routing.health import Health
from switchboard.routing.live import Snapshot
from switchboard.routing.prerouting import Windows
from switchboard.routing.router import Router
from switchboard.routing.table import Route, build_clients, build_routes
from switchboard.settings.loader import validate

MASTER = "sk-master-test-123456"


@dataclass
class Table:
    current: Snapshot


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(models: list[dict[str, Any]], router: dict[str, Any] | None = None) -> Any:
    return validate(
        {
            "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
            "models": [{"provider": "p", "model": "gpt-4o-mini", **m} for m in models],
            "auth": {"master_key": MASTER},
            "router": router or {},
        },
        "test",
        env={},
    )


def router(models: list[dict[str, Any]], router_config: dict[str, Any] | None = None,
           health: Health | None = None) -> Router:
    s = settings(models, router_config)
    snapshot = Snapshot.of(build_routes(s, build_clients(s)), {}, [], router=s.router)
    return Router(Table(snapshot), health=health if health is not None else Health(s.router.cooldown),
                  windows=Windows(catalog.build(s)))


def route(r: Router, group: str, deployment: str) -> Route:
    g = r.group(group)
    assert g is not None
    found = g.deployment(deployment)
    assert found is not None
    return found
