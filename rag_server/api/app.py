"""The FastAPI application: one router per resource (api/routes), errors in one shape (api/errors.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from rag_server import __version__
from rag_server.api import docs, errors
from rag_server.api.guard import MAX_REQUEST_HEAD_BYTES, RequestGuard
from rag_server.api.logs import AccessLog
from rag_server.api.metrics import Metrics, MetricsMiddleware
from rag_server.api.routes import ask, domains, feedback, health, keys, openai_compat, search, usage, web
from rag_server.api.timeout import RequestTimeout
from rag_server.config import Settings, get_settings
from rag_server.db import open_pool
from rag_server.embedding import get_embedder
from rag_server.local_llm import local_model
from rag_server.pipeline import Pipeline
from rag_server.retrieval.search import Searcher

# A new resource is a module under api/routes with a `router`, listed here.
ROUTERS = [
    health.router,
    search.router,
    ask.router,
    openai_compat.router,
    domains.router,
    feedback.router,
    usage.router,
    keys.router,
    web.router,
]

BLOCKING_THREADS = 40

# How `rag-server serve` runs uvicorn: h11 with room for a long request line, so that our middleware, not
# the HTTP parser, answers an overlong URL (414 with a reason rather than a bare 400 and a reset); uvloop
# where it installs. (httptools measured no faster here, and answers a URL past 64 KiB with a bare 400.)
SERVER_OPTIONS: dict[str, Any] = {
    "http": "h11",
    "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
    "loop": "auto",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; the pool and the searcher live as long as it runs."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # RAG_LOCAL_LLM: the answering model served on loopback for as long as the app runs.
        with local_model(settings) as answering, open_pool(settings) as pool:
            app.state.pool = pool
            app.state.searcher = Searcher(pool, get_embedder(answering), answering)
            app.state.pipeline = Pipeline(app.state.searcher, answering)
            # The built-in router model is trained once per data dir (then cached): here, on the main thread,
            # not inside the first request's worker thread, where BLAS threads made it take many minutes.
            app.state.searcher.router.warm()
            # Blocking work (queries, models) goes to this pool with asyncio.to_thread: a lighter hop than
            # anyio's, sized like anyio's default so as many requests may wait on the database as before.
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="rag-api")
            )
            yield

    app = FastAPI(
        title="rag-server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Hybrid retrieval over PostgreSQL + pgvector. Every error answers an `ErrorResponse`: "
        '`{"error": {"code", "message", "request_id", "details"}}`; every response carries `X-Request-ID`.',
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    # Added innermost first. The timeout answers inside the metrics (a 504 is counted); the guard settles the
    # request id; CORS answers preflights; the access log sees every response, a guard's 413 included.
    if settings.request_timeout_s:
        app.add_middleware(RequestTimeout, seconds=settings.request_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(AccessLog)
    errors.install(app)
    docs.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
