"""Incidents as the API and the webhook events show them.

An event's id is derived from its incident and state (``evt_<incident id>_firing``,
``evt_<incident id>_resolved``): a retried delivery carries the same id, and since only the
instance whose store operation opened (or resolved) the incident sends the event, two instances
never produce two distinct events for one incident and state. Receivers dedupe by id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from switchboard.stores.protocols import Incident

FIRING = "alert.firing"
RESOLVED = "alert.resolved"


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="milliseconds")


def public(incident: Incident) -> dict[str, Any]:
    """The incident as ``GET /admin/v1/alerts`` and the events show it."""
    return {
        "id": incident.id,
        "object": "alert_incident",
        "rule": incident.rule,
        "kind": incident.kind,
        "subject": incident.subject,
        "state": incident.state,
        "value": incident.value,
        "threshold": incident.threshold,
        "tenant": incident.tenant_id,
        "details": dict(incident.details or {}),
        "started_at": _time(incident.started_at),
        "last_seen_at": _time(incident.last_seen_at),
        "resolves_at": _time(incident.resolves_at),
        "resolved_at": _time(incident.resolved_at),
        "resolved_value": incident.resolved_value,
    }


def event(incident: Incident, now: datetime) -> dict[str, Any]:
    """The webhook event for ``incident`` in its current state (firing while open)."""
    kind = FIRING if incident.state == "open" else RESOLVED
    state = "firing" if kind == FIRING else "resolved"
    data = public(incident)
    data["incident_id"] = data.pop("id")
    data.pop("object")
    return {"id": f"evt_{incident.id}_{state}", "type": kind, "created_at": _time(now), "data": data}
