"""The semantic route: cosine nearest neighbours of the query embedding, through the domain's own HNSW index."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from rag_server.domains import Domain, Precision
from rag_server.retrieval.types import ScoredChunk

# The select list every route uses to turn chunk ids into ScoredChunks.
CHUNK_COLUMNS = "c.id, c.document_id, d.external_id, d.title, c.text, c.ordinal, c.heading_path"


def semantic_search(
    conn: psycopg.Connection[Any],
    domain: Domain,
    query_vector: np.ndarray,
    k: int,
    filters: dict[str, Any],
    ef_search: int,
    precision: Precision = "vector",
) -> list[ScoredChunk]:
    """The k chunks of the domain closest to `query_vector` (cosine), documents filtered by metadata.

    The expression `embedding::<precision>(dim)` and the domain filter, a literal so that every plan of it can
    use it, match the domain's partial HNSW index.
    pgvector's iterative index scan keeps scanning until k rows pass the filters, so a selective filter
    still returns k results (up to hnsw.max_scan_tuples).
    """
    dim = sql.Literal(domain.model.dimension)
    kind = sql.SQL(precision)  # a Literal of two names, checked by the settings
    filter_sql = (
        sql.SQL(" AND d.metadata @> {}::jsonb").format(json.dumps(filters)) if filters else sql.SQL("")
    )
    query = sql.SQL(
        """SELECT {columns}, 1 - (c.embedding::vector({dim}) <=> %(q)s::vector({dim})) AS score
           FROM chunks c JOIN documents d ON d.id = c.document_id
           WHERE c.domain_id = {domain}{filters}
           ORDER BY c.embedding::{kind}({dim}) <=> %(q)s::{kind}({dim})
           LIMIT %(k)s"""
    ).format(
        columns=sql.SQL(CHUNK_COLUMNS), dim=dim, kind=kind, domain=sql.Literal(domain.id), filters=filter_sql
    )
    with conn.transaction():
        # Local settings (set_config's `true`): they end with this transaction, whatever connection of the pool
        # it was; set in one round trip. Without filters the sort is off: the planner takes a small domain's
        # exact scan for cheap, but reading each row's out-of-line vector makes it several times slower than
        # the index (cranfield's 2,075 chunks: 13 ms against 2); with filters it may still sort just the rows
        # that pass them.
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order',"
            " true), set_config('enable_sort', %s, true)",
            (str(max(ef_search, k)), "on" if filters else "off"),
        )
        rows = conn.execute(query, {"q": query_vector, "k": k}).fetchall()
    chunks = [ScoredChunk(*row[:6], tuple(row[6]), float(row[7]), "semantic") for row in rows]
    # relaxed_order may return neighbours slightly out of order: sort them.
    return sorted(chunks, key=lambda chunk: -chunk.score)
