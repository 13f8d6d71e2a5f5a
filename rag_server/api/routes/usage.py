"""GET /v1/usage: the caller's project, by day, route and key: requests, tokens, cost, cache hits, abstentions."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from rag_server.api.auth import CallerDep
from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import BudgetOut, UsageOut, UsageRowOut, UsageTotals
from rag_server.errors import Forbidden
from rag_server.limits import budget_status
from rag_server.usage import report

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", responses=ERROR_RESPONSES)
async def usage(
    pool: PoolDep,
    principal: CallerDep,
    days: Annotated[int, Query(ge=1, le=366)] = 31,
    key_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="One key (owner keys).")] = None,
) -> UsageOut:
    """Usage of the caller's project (an owner sees every key's; a reader its own) and the month's budget."""
    if principal.role != "owner":
        if key_id is not None and key_id != principal.key_id:
            raise Forbidden("a reader key sees only its own usage")
        key_id = principal.key_id

    def run() -> UsageOut:
        with pool.connection() as conn:
            rows = [UsageRowOut(**row.__dict__) for row in report(conn, principal.project_id, days, key_id)]
            status = budget_status(conn, principal.project_id)
        fields = UsageTotals.model_fields
        totals = UsageTotals(**{name: sum(getattr(row, name) for row in rows) for name in fields})
        budget = BudgetOut(
            month=status.month,
            budget_usd=status.budget_usd,
            spent_usd=round(status.spent_usd, 6),
            reserved_usd=round(status.reserved_usd, 6),
            used=round(status.used, 4) if status.used is not None else None,
            alert_at=status.alert_at,
            alert=status.alert,
        )
        return UsageOut(
            project=principal.project, key_id=key_id, days=days, totals=totals, rows=rows, budget=budget
        )

    return await asyncio.to_thread(run)
