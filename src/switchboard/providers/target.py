"""Where a request goes: the resolved model entry, as pure data for the adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.config.schema import Timeouts
from switchboard.providers.sse import MAX_EVENT_BYTES


@dataclass(slots=True, frozen=True)
class Target:
    name: str  # the model name clients send
    model: str  # the id sent upstream
    provider: str  # provider entry name
    provider_type: str
    api_base: str  # without a trailing slash
    options: Any  # the provider type's validated options model
    timeouts: Timeouts
    drop_params: bool = False
    # Callers need an approved subscription of their team (pipeline/subscription.py).
    require_approval: bool = False
    # The provider entry lets callers send their own credential (pipeline/caller_credentials.py).
    allow_caller_credentials: bool = False
    # The request may name objects of the provider account (providers/account.py): this attempt
    # is sent with the caller's own credential (set per attempt by the invoke terminal, on a
    # copy), or the provider entry opts in (providers[].allow_account_objects).
    own_account: bool = False
    # The provider deployment's own limits per minute (providers[].rpm / tpm); None: none.
    rpm: int | None = None
    tpm: int | None = None
    # The most one unfinished stream event may hold (providers[].max_event_bytes): handed to
    # each stream's SSE parser when it is made, never looked up per event.
    max_event_bytes: int = MAX_EVENT_BYTES
