"""The open-file limit raised at start (server.py): a connection count past what the kernel's
call takes is a warning, not a crash."""

from __future__ import annotations

import logging
import resource

import pytest

from switchboard import server


def test_a_count_past_a_c_long_with_no_hard_limit_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the hard limit is unlimited (macOS's default), the target was the configured count
    itself, and ``server.max_connections: 123456789012345678901234567890`` (which the schema
    took; it is now bounded at 100000, but the function keeps its guard) made setrlimit raise
    OverflowError: the gateway did not start."""
    set_to: list[tuple[int, int]] = []

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        set_to.append(limits)
        if limits[0] >= 2**63:  # what the real call raises before asking the kernel
            raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(server.resource, "getrlimit", lambda _: (1024, resource.RLIM_INFINITY))
    monkeypatch.setattr(server.resource, "setrlimit", setrlimit)
    with caplog.at_level(logging.WARNING, logger="switchboard"):
        server._raise_fd_limit(123456789012345678901234567890)
    assert set_to == [(123456789012345678901234567890, resource.RLIM_INFINITY)]
    assert "open-file limit 1024 is below" in caplog.text
