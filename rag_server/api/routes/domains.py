"""GET /v1/domains; a domain's documents: listed (any key), added or updated and deleted (owner keys)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

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
from rag_server.domains import HnswOptions, ensure_domain, list_domains

router = APIRouter(tags=["domains"])


@router.get("/v1/domains", responses=ERROR_RESPONSES)
async def domains(pool: PoolDep, principal: CallerDep) -> DomainsResponse:
    """The domains the key may use and the model their chunks are embedded with."""

    def run() -> DomainsResponse:
        with pool.connection() as conn:
            found = visible(principal, list_domains(conn))
        return DomainsResponse(domains=[DomainOut.of(domain) for domain in found])

    return await run_in_threadpool(run)


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

    return await run_in_threadpool(run)


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
    searcher = request.app.state.searcher
    settings = request.app.state.settings

    def run() -> IngestOut:
        from ingest.pipeline import Ingestion

        ingestion = Ingestion.from_settings(pool, settings)
        with pool.connection() as conn:
            # A new domain belongs to the caller's project.
            ensure_domain(
                conn,
                domain,
                searcher.embedder.name,
                searcher.embedder.dimension,
                HnswOptions.from_settings(settings),
                principal.project_id,
            )
        with tempfile.TemporaryDirectory(prefix="rag-upload-") as folder:
            # One file per request: a document's source names the upload that brought it.
            path = FilePath(folder) / f"api-{request_id(request) or 'upload'}.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for document in body.documents:
                    out.write(json.dumps(document.model_dump(exclude_none=True), ensure_ascii=False) + "\n")
            summary = ingestion.run([FilePath(folder)], domain)
        return IngestOut(
            domain=domain,
            added=summary.documents_added,
            updated=summary.documents_updated,
            unchanged=summary.documents_unchanged,
            failed=summary.documents_failed,
            chunks_embedded=summary.chunks_embedded,
            failures=summary.errors,
        )

    return await run_in_threadpool(run)


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

    await run_in_threadpool(run)
    return DeletedOut(domain=domain, document_id=document_id)
