"""GET /healthz: the server answers and its database does."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from rag_server import __version__
from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", responses=ERROR_RESPONSES)
async def health(pool: PoolDep) -> Health:
    """Ok when the database answers a query."""

    def ping() -> None:
        with pool.connection() as conn:
            conn.execute("SELECT 1")

    await run_in_threadpool(ping)
    return Health(status="ok", version=__version__)
