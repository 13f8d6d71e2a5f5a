"""The FastAPI application: search over the domains, documents, health; errors mapped to 4xx in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rag_server import __version__
from rag_server.config import Settings, get_settings
from rag_server.db import open_pool
from rag_server.documents import list_documents
from rag_server.domains import list_domains
from rag_server.embedding import get_embedder
from rag_server.errors import (
    ConfigError,
    DatabaseError,
    EmbeddingModelMismatch,
    ModelError,
    NotFound,
    RagError,
    SqlDeclined,
    SqlExecutionError,
    SqlRejected,
)
from rag_server.retrieval.search import MAX_K, Searcher
from rag_server.retrieval.types import Route, SearchRequest

_STATUS: list[tuple[type[RagError], int]] = [
    (NotFound, 404),
    (SqlRejected, 422),
    (SqlDeclined, 422),
    (SqlExecutionError, 422),
    (ModelError, 502),
    (EmbeddingModelMismatch, 409),
    (DatabaseError, 503),
    (ConfigError, 500),
    (RagError, 400),
]


class SearchBody(BaseModel):
    """POST /v1/search."""

    # A misspelled field ("filter", "top_k") is an error, not a silently unfiltered search.
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    domain: str | None = None
    route: Route = "hybrid"
    k: int = Field(default=10, ge=1, le=MAX_K)
    filters: dict[str, Any] = Field(default_factory=dict)


def _searcher(request: Request) -> Searcher:
    return request.app.state.searcher


SearcherDep = Annotated[Searcher, Depends(_searcher)]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; the pool and the searcher live as long as it runs."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_pool(settings) as pool:
            app.state.pool = pool
            app.state.searcher = Searcher(pool, get_embedder(settings), settings)
            yield

    app = FastAPI(title="rag-server", version=__version__, lifespan=lifespan)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, error: RagError) -> JSONResponse:
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return JSONResponse({"error": type(error).__name__, "detail": str(error)}, status_code=status)

    @app.get("/healthz")
    def health(request: Request) -> dict[str, str]:
        with request.app.state.pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"status": "ok", "version": __version__}

    @app.post("/v1/search")
    async def search(body: SearchBody, searcher: SearcherDep) -> dict[str, Any]:
        request = SearchRequest(
            body.query, body.domain or settings.default_domain, body.route, body.k, body.filters
        )
        result = await run_in_threadpool(searcher.search, request)
        return {
            "route": result.route,
            "timings_ms": result.timings_ms,
            "results": [asdict(chunk) for chunk in result.chunks],
            "citations": [chunk.citation() for chunk in result.chunks]
            + ([result.sql.citation()] if result.sql else []),
            "sql": result.sql.as_dict() if result.sql else None,
            "sql_error": result.sql_error,
            "routing": result.routing.as_dict() if result.routing else None,
            "model_calls": [call.as_dict() for call in result.model_calls],
        }

    @app.get("/v1/domains")
    def domains(request: Request) -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            found = list_domains(conn)
        return {
            "domains": [
                {"name": d.name, "embedding_model": d.model.name, "dimension": d.model.dimension}
                for d in found
            ]
        }

    @app.get("/v1/domains/{domain}/documents")
    def documents(
        domain: str,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            total, found = list_documents(conn, domain, limit, offset)
        return {"total": total, "documents": [asdict(document) for document in found]}

    return app
