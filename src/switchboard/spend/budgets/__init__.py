"""Budgets in USD and in tokens on tenants, teams, users and keys (docs/budgets.md)."""
