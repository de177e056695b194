"""Capabilities of provider type ``vertex`` (see the package docstring)."""

from __future__ import annotations

from switchboard.providers.capabilities import Table, seed

# To be filled in from the adapter: until then every row reads as refused.
TABLE: Table = seed(())
