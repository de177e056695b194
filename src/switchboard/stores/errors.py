"""The one error the stores raise for their own failures, with a message fit for one line."""

from __future__ import annotations


class StoreError(Exception):
    """A store cannot be opened or used (unreachable server, unknown schema, bad URL)."""
