"""Budgets set through the admin API, in SQL (revision 0007), and the alerts already fired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.stores.protocols import BudgetRecord


class SqlBudgetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, record: BudgetRecord) -> tuple[BudgetRecord, BudgetRecord | None]:
        raise NotImplementedError

    async def get(self, tenant_id: str, budget_id: str) -> BudgetRecord | None:
        raise NotImplementedError

    async def find(self, budget_id: str) -> BudgetRecord | None:
        raise NotImplementedError

    async def list_budgets(self, tenant_id: str) -> list[BudgetRecord]:
        raise NotImplementedError

    async def delete(self, tenant_id: str, budget_id: str) -> bool:
        raise NotImplementedError

    async def claim_alert(self, budget_id: str, period_start: datetime, threshold: int) -> bool:
        raise NotImplementedError
