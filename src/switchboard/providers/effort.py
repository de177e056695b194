"""A ``reasoning_effort`` level an adapter has no counterpart for: the 400 that refuses it.

The adapters see the canonical field, but a caller of ``/v1/messages`` or of the Gemini API sent
its own (``output_config.effort``, ``thinkingLevel``) with its own values, some of which ask for
no canonical level at all. So the refusal keeps the levels the adapter takes, and the inbound
API retells the advice in its own values (``advise``) before naming the field as sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from switchboard.errors import InvalidRequest

_FIELD = "reasoning_effort"


def _choices(values: Sequence[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) < 3:
        return " or ".join(quoted)
    return "one of " + ", ".join(quoted)


class EffortRefused(InvalidRequest):
    code = "invalid_value"

    def __init__(self, effort: Any, refusal: str, levels: Sequence[str], note: str = "") -> None:
        """``refusal`` follows the level ("has no Cohere thinking budget"); ``levels`` are the ones
        taken, ``note`` says more after them."""
        self.effort, self.refusal, self.levels, self.note = effort, refusal, tuple(levels), note
        super().__init__(self._told(str(effort)[:20], "send " + _choices(self.levels)), param=_FIELD)

    def _told(self, shown: str, advice: str) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"'{_FIELD}' '{shown}' {self.refusal}: {advice}{note}"

    def advise(self, spelled: Mapping[str, str]) -> None:
        """The message in the caller's values: ``spelled`` maps each value of the caller's field
        that asks for a canonical level to that level. Leaving the field out always works (no
        level is sent), and is the only advice when no level taken can be asked for."""
        if self.param != _FIELD:  # told already, and named as sent: nothing left to retell
            return
        shown = next((own for own, level in spelled.items() if level == self.effort), str(self.effort)[:20])
        taken = [own for own, level in spelled.items() if level in self.levels]
        leave = f"leave '{_FIELD}' out"
        self.message = self._told(shown, f"send {_choices(taken)}, or {leave}" if taken else leave)
