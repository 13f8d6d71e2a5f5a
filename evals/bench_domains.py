"""`rag-server bench domains`: semantic search when several domains share one embedding model, with one HNSW
index per domain (the layout since migration 004) against one index per model (the layout before it), on the
same synthetic domains, the two layouts alternated, query vectors given (no embedding).

The reference query is the one used before 004: both ids as parameters, the planner free to scan the domain
exactly. Recall@10 of each layout is measured against numpy brute force over the domain's vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from psycopg import sql
from psycopg_pool import ConnectionPool

from evals.bench_retrieval import DIMENSION, SyntheticCorpus, load_corpus
from rag_server.config import Settings
from rag_server.domains import Domain, HnswOptions, delete_domain, ensure_domain_index, get_domain
from rag_server.retrieval.semantic import CHUNK_COLUMNS, semantic_search

SHARED_INDEX = "bench_domains_per_model_hnsw"
_BEFORE_004 = sql.SQL(
    """SELECT {columns}, 1 - (c.embedding::vector({dim}) <=> %(q)s::vector({dim})) AS score
       FROM chunks c JOIN documents d ON d.id = c.document_id
       WHERE c.embedding_model_id = %(model)s AND c.domain_id = %(domain)s
       ORDER BY c.embedding::vector({dim}) <=> %(q)s::vector({dim})
       LIMIT %(k)s"""
).format(columns=sql.SQL(CHUNK_COLUMNS), dim=sql.Literal(DIMENSION))


def domain_names(count: int) -> list[str]:
    return [f"bench-domains-{number}" for number in range(count)]


def run_domains_bench(
    pool: ConnectionPool,
    settings: Settings,
    domains: int,
    chunks: int,
    queries: int,
    rounds: int,
    progress: Callable[[int], None],
) -> dict[str, Any]:
    """Load `domains` synthetic domains of `chunks` each, then time both index layouts on every domain."""
    loaded: list[tuple[Domain, np.ndarray, np.ndarray, np.ndarray]] = []
    for number, name in enumerate(domain_names(domains)):
        vectors, _, _, _ = load_corpus(pool, settings, name, chunks, progress, seed=100 + number)
        _, query_vectors = SyntheticCorpus(seed=200 + number).queries(queries, vectors)
        with pool.connection() as conn:
            found = get_domain(conn, name)
            ids = np.array(
                [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM chunks WHERE domain_id = %s ORDER BY id", (found.id,)
                    )
                ]
            )
        loaded.append((found, vectors, query_vectors, ids))
    depth = settings.candidate_depth
    samples: dict[str, list[float]] = {"per_domain": [], "per_model": []}
    hits: dict[str, int] = {"per_domain": 0, "per_model": 0}
    try:
        for _ in range(rounds):
            for layout in ("per_model", "per_domain"):
                _arrange(pool, settings, [found for found, *_ in loaded], layout)
                for found, vectors, query_vectors, ids in loaded:
                    for vector in query_vectors:
                        ranked, ms = _search(pool, settings, found, vector, depth, layout)
                        samples[layout].append(ms)
                        exact = set(ids[np.argpartition(-(vectors @ vector), 10)[:10]].tolist())
                        hits[layout] += len(exact & set(ranked[:10]))
    finally:
        _arrange(pool, settings, [found for found, *_ in loaded], "per_domain")
    searches = rounds * domains * queries
    result: dict[str, Any] = {
        "domains": domains,
        "chunks_per_domain": chunks,
        "depth": depth,
        "searches": searches,
    }
    for layout, values in samples.items():
        result[layout] = {
            "p50_ms": round(float(np.percentile(values, 50)), 3),
            "p95_ms": round(float(np.percentile(values, 95)), 3),
            "recall_at_10": round(hits[layout] / (10 * searches), 4),
        }
    result["per_model_over_per_domain_p50"] = round(
        result["per_model"]["p50_ms"] / result["per_domain"]["p50_ms"], 2
    )
    return result


def drop_domains(pool: ConnectionPool, domains: int) -> None:
    with pool.connection() as conn:
        for name in domain_names(domains):
            delete_domain(conn, name, missing_ok=True)


def _arrange(pool: ConnectionPool, settings: Settings, domains: list[Domain], layout: str) -> None:
    """Give the scratch domains one index each, or one index for their model (theirs dropped); float32 and
    the configured build parameters either way."""
    hnsw = HnswOptions(settings.hnsw_m, settings.hnsw_ef_construction, "vector")
    with pool.connection() as conn:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(SHARED_INDEX)))
        if layout == "per_domain":
            for found in domains:
                ensure_domain_index(conn, found, hnsw)
        else:
            for found in domains:
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(found.index_name())))
            conn.execute(
                sql.SQL(
                    "CREATE INDEX {} ON chunks USING hnsw ((embedding::vector({})) vector_cosine_ops)"
                    " WITH (m = {}, ef_construction = {}) WHERE embedding_model_id = {}"
                ).format(
                    sql.Identifier(SHARED_INDEX),
                    sql.Literal(DIMENSION),
                    sql.Literal(hnsw.m),
                    sql.Literal(hnsw.ef_construction),
                    sql.Literal(domains[0].model.id),
                )
            )
        conn.execute("ANALYZE chunks")
        conn.commit()


def _search(
    pool: ConnectionPool, settings: Settings, found: Domain, vector: np.ndarray, depth: int, layout: str
) -> tuple[list[int], float]:
    with pool.connection() as conn:
        started = time.perf_counter()
        if layout == "per_domain":
            chunks = semantic_search(conn, found, vector, depth, {}, settings.ef_search)
            ranked = [chunk.chunk_id for chunk in chunks]
        else:
            with conn.transaction():
                conn.execute(
                    sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                        sql.Literal(max(settings.ef_search, depth))
                    )
                )
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                rows = conn.execute(
                    _BEFORE_004, {"q": vector, "model": found.model.id, "domain": found.id, "k": depth}
                ).fetchall()
            ranked = [row[0] for row in sorted(rows, key=lambda row: -row[-1])]
        return ranked, (time.perf_counter() - started) * 1000
