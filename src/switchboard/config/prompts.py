"""Configuration of the prompt registry (``prompts:``) and of prompts published as APIs
(``apis:``); docs/prompts.md."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from switchboard.config.base import Strict


class PromptsConfig(Strict):
    """Bounds of templates and their rendering (a template is untrusted input)."""

    max_template_chars: Annotated[int, Field(ge=64, le=10_000_000)] = 200_000
    # A rendered prompt longer than this is refused (loops cannot blow up memory).
    max_rendered_chars: Annotated[int, Field(ge=64, le=100_000_000)] = 1_000_000
    # How long a resolved prompt version stays cached on the request path (changes are pushed
    # on the change feed; this bounds staleness when a message is lost).
    cache_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Every loop iteration and macro call of one render draws from this many (nested loops and
    # recursion cannot spin).
    max_loop_iterations: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    # A render still running after this long is refused (costly work within the other bounds).
    max_render_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0


class ApisConfig(Strict):
    """Prompts published as REST APIs (``/apis/{name}``)."""

    # A model output that fails the API's output schema is asked to be repaired this many times
    # before the caller gets a 502.
    repair_attempts: Annotated[int, Field(ge=0, le=3)] = 1
    # The largest request body (the variables) a call may send; larger: 413.
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # How long an API's record stays cached on the request path (admin changes are pushed on the
    # change feed; this bounds staleness when a message is lost). "No such API": at most 5 s.
    cache_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
