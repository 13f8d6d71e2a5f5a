"""The ingestion pipeline's reads and writes: which documents changed, and one atomic batch of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from ingest.records import ChunkDraft, SourceDocument
from rag_server.domains import Domain, bump_generation


@dataclass(frozen=True)
class StoredVersion:
    """What the database holds for a document: enough to tell whether it changed."""

    content_hash: bytes
    ingest_signature: str


@dataclass(frozen=True)
class PreparedDocument:
    """A new or changed document, chunked and analyzed, waiting for its embeddings."""

    source: SourceDocument
    content_hash: bytes
    chunks: list[ChunkDraft]
    terms: list[list[str]]


@dataclass(frozen=True)
class BatchResult:
    """What one committed batch changed."""

    added: int
    updated: int
    chunks_written: int


def stored_versions(
    conn: psycopg.Connection[Any], domain_id: int, external_ids: Sequence[str]
) -> dict[str, StoredVersion]:
    """The stored hash and signature of those of `external_ids` the domain already has."""
    rows = conn.execute(
        "SELECT external_id, content_hash, ingest_signature FROM documents"
        " WHERE domain_id = %s AND external_id = ANY(%s)",
        (domain_id, list(external_ids)),
    )
    return {external_id: StoredVersion(bytes(digest), signature) for external_id, digest, signature in rows}


_UPSERT = """
    INSERT INTO documents
        (domain_id, external_id, source, title, content_hash, ingest_signature, metadata, chunk_count)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (domain_id, external_id) DO UPDATE SET
        source = excluded.source, title = excluded.title, content_hash = excluded.content_hash,
        ingest_signature = excluded.ingest_signature, metadata = excluded.metadata,
        chunk_count = excluded.chunk_count, updated_at = now()
    RETURNING id, (xmax = 0) AS inserted
"""

_COPY_CHUNKS = """
    COPY chunks (document_id, domain_id, ordinal, text, token_count, heading_path, embedding_model_id,
                 embedding, terms)
    FROM STDIN WITH (FORMAT BINARY)
"""

_CHUNK_TYPES = ["int8", "int4", "int4", "text", "int4", "text[]", "int4", "vector", "text[]"]


def write_batch(
    conn: psycopg.Connection[Any],
    domain: Domain,
    documents: Sequence[PreparedDocument],
    vectors: np.ndarray,
    signature: str,
) -> BatchResult:
    """Store documents with their chunks in one transaction: readers see each document whole or not at all.

    `vectors` holds one row per chunk, documents in order. A changed document's old chunks are replaced.
    """
    added = updated = 0
    with conn.transaction():
        document_ids = []
        for document in documents:
            source = document.source
            row = conn.execute(
                _UPSERT,
                (
                    domain.id,
                    source.external_id,
                    source.source,
                    source.title,
                    document.content_hash,
                    signature,
                    json.dumps(source.metadata),
                    len(document.chunks),
                ),
            ).fetchone()
            assert row is not None
            document_id, inserted = row
            document_ids.append(document_id)
            if inserted:
                added += 1
            else:
                updated += 1
        if updated:
            conn.execute("DELETE FROM chunks WHERE document_id = ANY(%s)", (document_ids,))
        written = _copy_chunks(conn, domain, documents, document_ids, vectors)
        bump_generation(conn, domain.id)
    return BatchResult(added, updated, written)


def _copy_chunks(
    conn: psycopg.Connection[Any],
    domain: Domain,
    documents: Sequence[PreparedDocument],
    document_ids: Sequence[int],
    vectors: np.ndarray,
) -> int:
    row = 0
    with conn.cursor() as cursor, cursor.copy(_COPY_CHUNKS) as copy:
        copy.set_types(_CHUNK_TYPES)
        for document_id, document in zip(document_ids, documents, strict=True):
            for chunk, terms in zip(document.chunks, document.terms, strict=True):
                copy.write_row(
                    (
                        document_id,
                        domain.id,
                        chunk.ordinal,
                        chunk.text,
                        chunk.token_count,
                        list(chunk.heading_path),
                        domain.model.id,
                        vectors[row],
                        terms,
                    )
                )
                row += 1
    if row != len(vectors):
        raise ValueError(f"{len(vectors)} vectors for {row} chunks")
    return row


def remove_documents(conn: psycopg.Connection[Any], domain: Domain, external_ids: Sequence[str]) -> list[str]:
    """Delete the domain's documents with these external ids (and their chunks); returns the ids it had."""
    with conn.transaction():
        removed = [
            row[0]
            for row in conn.execute(
                "DELETE FROM documents WHERE domain_id = %s AND external_id = ANY(%s) RETURNING external_id",
                (domain.id, list(external_ids)),
            )
        ]
        if removed:
            bump_generation(conn, domain.id)
    return removed


def prune(conn: psycopg.Connection[Any], domain: Domain, keep: set[str], keep_sources: set[str]) -> int:
    """Delete the domain's documents not in `keep` (nor from a source in `keep_sources`); returns how many."""
    with conn.transaction():
        deleted = conn.execute(
            "DELETE FROM documents WHERE domain_id = %s AND NOT (external_id = ANY(%s)) AND NOT (source = ANY(%s))",
            (domain.id, list(keep), list(keep_sources)),
        ).rowcount
        if deleted:
            bump_generation(conn, domain.id)
    return deleted
