"""The prompt templates' errors, apart from the template sandbox (prompts/templates.py) so that
they exist from start even though the sandbox and Jinja2 are imported on first use: the metrics
give every error class imported at start a code label of its own."""

from __future__ import annotations

from switchboard.errors import GatewayError, InvalidRequest


class RenderBusy(GatewayError):
    """Too many slow renders already under way: 503, try again shortly."""

    status = 503
    code = "prompt_render_busy"


class RenderError(InvalidRequest):
    """A template failed while rendering (a bound reached, a value of the wrong type, a variable
    missing): 400 ``prompt_render_failed``."""

    code = "prompt_render_failed"
