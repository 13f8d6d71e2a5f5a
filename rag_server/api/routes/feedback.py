"""POST /v1/feedback: was an answer helpful, and which evidence held it (labels for train-reranker)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from rag_server.api.auth import CallerDep
from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import FeedbackIn, FeedbackOut
from rag_server.feedback import add_feedback

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", status_code=201, responses=ERROR_RESPONSES)
async def feedback(body: FeedbackIn, pool: PoolDep, principal: CallerDep) -> FeedbackOut:
    """Store feedback on one of the project's answered requests (by its `request_id`)."""

    def run() -> int:
        with pool.connection() as conn:
            return add_feedback(
                conn, principal, body.request_id, body.helpful, body.comment, body.correct_evidence
            )

    return FeedbackOut(id=await asyncio.to_thread(run))
