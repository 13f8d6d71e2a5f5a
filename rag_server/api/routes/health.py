"""GET /healthz: the server answers and its database does."""

from __future__ import annotations

import asyncio

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from psycopg_pool import PoolTimeout

from rag_server import __version__
from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import Health, Readiness
from rag_server.db import list_migrations
from rag_server.limits import BudgetStatus, budget_status
from rag_server.projects import list_projects

router = APIRouter(tags=["health"])

# How long readiness waits for a connection: a probe must answer fast, also when the database is down.
READY_TIMEOUT_S = 2.0


@router.get("/healthz", responses=ERROR_RESPONSES)
async def health(pool: PoolDep) -> Health:
    """Ok when the database answers a query."""

    def ping() -> None:
        with pool.connection() as conn:
            conn.execute("SELECT 1")

    await asyncio.to_thread(ping)
    return Health(status="ok", version=__version__)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={**ERROR_RESPONSES, 503: {"model": Readiness, "description": "Not ready: which check failed."}},
)
async def ready(request: Request, pool: PoolDep) -> JSONResponse:
    """Ready to answer: the database reachable, every migration applied, the models loaded. 503 otherwise,
    and ready again once the database is back (no restart)."""

    def check() -> Readiness:
        database, migrations = False, False
        try:
            with pool.connection(timeout=READY_TIMEOUT_S) as conn:
                conn.execute("SET LOCAL statement_timeout = 2000")
                database = True
                applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                migrations = {m.version for m in list_migrations()} <= applied
        except (psycopg.Error, PoolTimeout):
            pass
        models = getattr(request.app.state, "searcher", None) is not None
        checks = {"database": database, "migrations": migrations, "models": models}
        return Readiness(ready=all(checks.values()), checks=checks, version=__version__)

    readiness = await asyncio.to_thread(check)
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    metrics = request.app.state.metrics

    def budgets() -> dict[str, BudgetStatus]:
        try:
            with request.app.state.pool.connection(timeout=READY_TIMEOUT_S) as conn:
                return {project.name: budget_status(conn, project.id) for project in list_projects(conn)}
        except (psycopg.Error, PoolTimeout):
            return {}  # the database is down: /readyz says so, the other metrics still come

    metrics.observe_budgets(await asyncio.to_thread(budgets))
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
