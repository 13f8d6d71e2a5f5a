"""GET /v1/domains and /v1/domains/{domain}/documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES
from rag_server.api.schemas import CleanStr, DocumentOut, DocumentsPage, DomainOut, DomainsResponse
from rag_server.documents import list_documents
from rag_server.domains import list_domains

router = APIRouter(tags=["domains"])


@router.get("/v1/domains", responses=ERROR_RESPONSES)
async def domains(pool: PoolDep) -> DomainsResponse:
    """Every domain and the model its chunks are embedded with."""

    def run() -> DomainsResponse:
        with pool.connection() as conn:
            return DomainsResponse(domains=[DomainOut.of(domain) for domain in list_domains(conn)])

    return await run_in_threadpool(run)


@router.get("/v1/domains/{domain}/documents", responses=ERROR_RESPONSES)
async def documents(
    domain: Annotated[CleanStr, Path(max_length=200)],
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DocumentsPage:
    """One page of the domain's documents, by external id."""

    def run() -> DocumentsPage:
        with pool.connection() as conn:
            total, found = list_documents(conn, domain, limit, offset)
        return DocumentsPage(total=total, documents=[DocumentOut.of(document) for document in found])

    return await run_in_threadpool(run)
