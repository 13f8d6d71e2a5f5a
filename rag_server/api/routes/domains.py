"""GET /v1/domains; a domain's documents: listed (any key), added or updated and deleted (owner keys)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from rag_server.api.auth import CallerDep, check_domain, visible
from rag_server.api.deps import PoolDep
from rag_server.api.errors import ERROR_RESPONSES, request_id
from rag_server.api.schemas import (
    CleanStr,
    DeletedOut,
    DocumentOut,
    DocumentsIn,
    DocumentsPage,
    DomainOut,
    DomainsResponse,
    IngestOut,
)
from rag_server.documents import delete_document, list_documents
from rag_server.domains import list_domains
from rag_server.services import documents as document_service

router = APIRouter(tags=["domains"])


@router.get("/v1/domains", responses=ERROR_RESPONSES)
async def domains(pool: PoolDep, principal: CallerDep) -> DomainsResponse:
    """The domains the key may use and the model their chunks are embedded with."""

    def run() -> DomainsResponse:
        with pool.connection() as conn:
            found = visible(principal, list_domains(conn))
        return DomainsResponse(domains=[DomainOut.of(domain) for domain in found])

    return await asyncio.to_thread(run)


@router.get("/v1/domains/{domain}/documents", responses=ERROR_RESPONSES)
async def documents(
    domain: Annotated[CleanStr, Path(max_length=200)],
    pool: PoolDep,
    principal: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DocumentsPage:
    """One page of the domain's documents, by external id."""
    await check_domain(pool, principal, domain)

    def run() -> DocumentsPage:
        with pool.connection() as conn:
            total, found = list_documents(conn, domain, limit, offset)
        return DocumentsPage(total=total, documents=[DocumentOut.of(document) for document in found])

    return await asyncio.to_thread(run)


@router.post("/v1/domains/{domain}/documents", responses=ERROR_RESPONSES)
async def add_documents(
    domain: Annotated[CleanStr, Path(max_length=200)],
    body: DocumentsIn,
    request: Request,
    pool: PoolDep,
    principal: CallerDep,
) -> IngestOut:
    """Add documents to a domain of the project (created if new), or update those with the same id; chunked and
    embedded before the answer. A document that cannot be used is reported in `failures`; the rest land."""
    principal.require_owner("ingesting documents")
    await check_domain(pool, principal, domain)
    settings = request.app.state.settings

    def run() -> IngestOut:
        summary = document_service.add_documents(
            pool,
            settings,
            domain,
            (document.model_dump(exclude_none=True) for document in body.documents),
            f"api-{request_id(request) or 'upload'}",
            principal.project_id,
        )
        return IngestOut(
            domain=domain,
            added=summary.documents_added,
            updated=summary.documents_updated,
            unchanged=summary.documents_unchanged,
            failed=summary.documents_failed,
            chunks_embedded=summary.chunks_embedded,
            failures=summary.errors,
        )

    return await asyncio.to_thread(run)


@router.delete("/v1/domains/{domain}/documents/{document_id}", responses=ERROR_RESPONSES)
async def remove_document(
    domain: Annotated[CleanStr, Path(max_length=200)],
    document_id: Annotated[CleanStr, Path(max_length=500)],
    pool: PoolDep,
    principal: CallerDep,
) -> DeletedOut:
    """Delete a document and its chunks (owner keys); answers cached for the domain are no longer served."""
    principal.require_owner("deleting documents")
    await check_domain(pool, principal, domain)

    def run() -> None:
        with pool.connection() as conn:
            delete_document(conn, domain, document_id)

    await asyncio.to_thread(run)
    return DeletedOut(domain=domain, document_id=document_id)
