"""The bounds every template render keeps to (the ``prompts:`` settings), set at start-up without
loading the sandbox itself (Jinja2): prompts/templates.py reads them at each render."""

from __future__ import annotations

from dataclasses import dataclass

# Defaults; the gateway's ``prompts:`` settings replace them (configure()).
MAX_RENDERED_CHARS = 1_000_000
MAX_LOOP_ITERATIONS = 100_000
MAX_RENDER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Bounds:
    max_rendered_chars: int = MAX_RENDERED_CHARS
    max_loop_iterations: int = MAX_LOOP_ITERATIONS
    max_render_seconds: float = MAX_RENDER_SECONDS


current = Bounds()


def configure(max_rendered_chars: int, max_loop_iterations: int,
              max_render_seconds: float = MAX_RENDER_SECONDS) -> None:
    """Apply the ``prompts:`` settings (called once at start-up)."""
    global current
    current = Bounds(max_rendered_chars, max_loop_iterations, max_render_seconds)
