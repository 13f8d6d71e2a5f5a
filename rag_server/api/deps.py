"""Typed dependencies of the routes: what the application holds for as long as it runs.

They are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop per dependency per
request for reading an attribute."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.retrieval.search import Searcher


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _pool(request: Request) -> ConnectionPool:
    return request.app.state.pool


async def _searcher(request: Request) -> Searcher:
    return request.app.state.searcher


SettingsDep = Annotated[Settings, Depends(_settings)]
PoolDep = Annotated[ConnectionPool, Depends(_pool)]
SearcherDep = Annotated[Searcher, Depends(_searcher)]
