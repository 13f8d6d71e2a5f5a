"""Who is calling: the API key of `Authorization: Bearer KEY`, checked once per request, the request counted
against the key's rate limit on the way (RAG_AUTH_DISABLED: the local owner of project 'default')."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from rag_server.api.deps import PoolDep, SettingsDep
from rag_server.config import Settings
from rag_server.domains import Domain
from rag_server.keys import Principal, authenticate, local_principal
from rag_server.limits import count_request
from rag_server.projects import domain_project


def bearer(request: Request) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, if any."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


async def presented_key(request: Request) -> str | None:
    """`bearer` as a dependency of its own (async: no worker thread for reading a header)."""
    return bearer(request)


async def caller(request: Request, pool: PoolDep, settings: SettingsDep) -> Principal:
    """The request's principal; 401 without a valid key, 429 past the key's requests per minute."""
    return await asyncio.to_thread(identify, pool, settings, bearer(request))


def identify(
    pool: ConnectionPool, settings: Settings, key: str | None, domain: str | None = None
) -> Principal:
    """`caller` for a route that does its blocking work in one worker thread: the key's principal, its request
    counted, and with `domain`, 403 unless it may use that domain; one connection for all of it."""
    with pool.connection() as conn:
        if settings.auth_disabled:
            principal = local_principal(conn)
        else:
            principal = authenticate(conn, key)
            count_request(conn, principal)
        if domain is not None:
            _allow(conn, principal, domain)
    return principal


def _allow(conn: psycopg.Connection[Any], principal: Principal, domain: str) -> None:
    """403 unless the key may use `domain` (granted to it, of its project)."""
    if not principal.unrestricted:
        principal.check_domain(domain, domain_project(conn, domain))


CallerDep = Annotated[Principal, Depends(caller)]
KeyDep = Annotated[str | None, Depends(presented_key)]


async def check_domain(pool: ConnectionPool, principal: Principal, domain: str) -> None:
    """403 unless the key may use `domain` (granted to it, of its project)."""
    if principal.unrestricted:
        return  # no hop

    def run() -> None:
        with pool.connection() as conn:
            _allow(conn, principal, domain)

    await asyncio.to_thread(run)


def visible(principal: Principal, domains: list[Domain]) -> list[Domain]:
    """The domains the key may use: its project's, narrowed to those granted to it."""
    if principal.unrestricted:
        return domains
    return [
        domain
        for domain in domains
        if domain.project_id == principal.project_id
        and (principal.domains is None or domain.name in principal.domains)
    ]
