"""Typed dependencies of the routes: what the application holds for as long as it runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.retrieval.search import Searcher


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _pool(request: Request) -> ConnectionPool:
    return request.app.state.pool


def _searcher(request: Request) -> Searcher:
    return request.app.state.searcher


SettingsDep = Annotated[Settings, Depends(_settings)]
PoolDep = Annotated[ConnectionPool, Depends(_pool)]
SearcherDep = Annotated[Searcher, Depends(_searcher)]
