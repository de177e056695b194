"""Spend: what a request costs (``cost``) and the usage ledger that records it (``ledger``)."""
