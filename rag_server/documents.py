"""Documents as stored: listing, showing and deleting them (ingestion writes them, see ingest/store.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from rag_server.domains import bump_generation, get_domain
from rag_server.errors import NotFound, UnknownFilterKey


@dataclass(frozen=True)
class DocumentInfo:
    """A stored document without its chunks."""

    id: int
    domain: str
    external_id: str
    source: str
    title: str | None
    metadata: dict[str, Any]
    chunk_count: int
    content_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredChunk:
    """One chunk of a stored document, without its embedding."""

    ordinal: int
    text: str
    token_count: int
    heading_path: tuple[str, ...]


_SELECT = """
    SELECT d.id, dom.name, d.external_id, d.source, d.title, d.metadata, d.chunk_count,
           encode(d.content_hash, 'hex'), d.created_at, d.updated_at
    FROM documents d JOIN domains dom ON dom.id = d.domain_id
"""


def list_documents(
    conn: psycopg.Connection[Any], domain: str, limit: int = 100, offset: int = 0
) -> tuple[int, list[DocumentInfo]]:
    """The total count and one page of the domain's documents, by external id."""
    found = get_domain(conn, domain)
    total_row = conn.execute("SELECT count(*) FROM documents WHERE domain_id = %s", (found.id,)).fetchone()
    rows = conn.execute(
        _SELECT + " WHERE d.domain_id = %s ORDER BY d.external_id LIMIT %s OFFSET %s",
        (found.id, limit, offset),
    )
    return (total_row[0] if total_row else 0), [DocumentInfo(*row) for row in rows]


def metadata_keys(conn: psycopg.Connection[Any], domain: str) -> list[str]:
    """The top-level metadata keys that some document of the domain has, sorted; NotFound for no domain."""
    found = get_domain(conn, domain)
    rows = conn.execute(
        "SELECT DISTINCT jsonb_object_keys(metadata) FROM documents WHERE domain_id = %s ORDER BY 1",
        (found.id,),
    )
    return [key for (key,) in rows]


def check_filter_keys(conn: psycopg.Connection[Any], domain: str, filters: dict[str, Any]) -> None:
    """Refuse filters on keys that no document of the domain has: they would match nothing, silently."""
    if not filters:
        return
    known = metadata_keys(conn, domain)
    unknown = sorted(set(filters) - set(known))
    if unknown:
        raise UnknownFilterKey(domain, unknown, known)


def get_document(conn: psycopg.Connection[Any], domain: str, external_id: str) -> DocumentInfo:
    """The document `external_id` of the domain; NotFound if absent."""
    found = get_domain(conn, domain)
    row = conn.execute(
        _SELECT + " WHERE d.domain_id = %s AND d.external_id = %s", (found.id, external_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"no document {external_id!r} in domain {domain!r}")
    return DocumentInfo(*row)


def document_chunks(conn: psycopg.Connection[Any], document_id: int) -> list[StoredChunk]:
    """The document's chunks in order."""
    rows = conn.execute(
        "SELECT ordinal, text, token_count, heading_path FROM chunks WHERE document_id = %s ORDER BY ordinal",
        (document_id,),
    )
    return [StoredChunk(ordinal, text, tokens, tuple(path)) for ordinal, text, tokens, path in rows]


def delete_document(conn: psycopg.Connection[Any], domain: str, external_id: str) -> None:
    """Delete one document and its chunks, atomically."""
    found = get_domain(conn, domain)
    with conn.transaction():
        deleted = conn.execute(
            "DELETE FROM documents WHERE domain_id = %s AND external_id = %s", (found.id, external_id)
        ).rowcount
        if not deleted:
            raise NotFound(f"no document {external_id!r} in domain {domain!r}")
        bump_generation(conn, found.id)
