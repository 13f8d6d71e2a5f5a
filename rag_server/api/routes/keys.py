"""/v1/keys (owner keys): create, list and revoke the API keys of the caller's project."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from rag_server.api.auth import CallerDep
from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import KeyIn, KeyOut, KeysOut
from rag_server.keys import create_key, list_keys, revoke_key

router = APIRouter(tags=["keys"])


@router.post("/v1/keys", status_code=201, responses=ERROR_RESPONSES)
async def create(body: KeyIn, pool: PoolDep, principal: CallerDep) -> KeyOut:
    """A new key of the caller's project; the answer is the only place the key is ever shown."""
    principal.require_owner("creating keys")

    def run() -> KeyOut:
        with pool.connection() as conn:
            created = create_key(
                conn,
                principal.project,
                body.name,
                body.role,
                body.domains,
                body.requests_per_minute,
                body.tokens_per_minute,
            )
        return KeyOut.of(created.info, created.key)

    return await asyncio.to_thread(run)


@router.get("/v1/keys", responses=ERROR_RESPONSES)
async def listed(pool: PoolDep, principal: CallerDep) -> KeysOut:
    """The project's keys, revoked ones too (never the keys themselves)."""
    principal.require_owner("listing keys")

    def run() -> KeysOut:
        with pool.connection() as conn:
            return KeysOut(keys=[KeyOut.of(info) for info in list_keys(conn, principal.project)])

    return await asyncio.to_thread(run)


@router.delete("/v1/keys/{key_id}", responses=ERROR_RESPONSES)
async def revoke(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], pool: PoolDep, principal: CallerDep
) -> KeyOut:
    """Revoke one of the project's keys: it is refused (401) from the next request on."""
    principal.require_owner("revoking keys")

    def run() -> KeyOut:
        with pool.connection() as conn:
            return KeyOut.of(revoke_key(conn, key_id, principal.project))

    return await asyncio.to_thread(run)
