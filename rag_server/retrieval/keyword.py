"""The keyword route: exact BM25 over the domain's chunks, from an in-process index kept current.

Each process holds one BM25 index per domain, built from the `terms` analyzed at ingest. Before every search
it reads the domain's `generation`, which every committing ingest moves: when it moved, the index is rebuilt
from one consistent snapshot. So every worker and process answers from what is committed, with no restart.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rag_server.domains import Domain
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.bm25 import BM25Index
from rag_server.retrieval.semantic import CHUNK_COLUMNS
from rag_server.retrieval.types import ScoredChunk


@dataclass(frozen=True)
class BM25Parameters:
    """BM25Okapi's parameters (rank-bm25's defaults)."""

    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25


@dataclass(frozen=True)
class Expansion:
    """RM3-style pseudo-relevance feedback: the top `documents` of a first pass give `terms` new terms,
    weighted by their share of those documents (weighted by score); the original query keeps `keep`."""

    documents: int = 10
    terms: int = 10
    keep: float = 0.6


@dataclass(frozen=True)
class _Built:
    generation: int
    index: BM25Index


class KeywordIndexes:
    """The BM25 indexes of this process, one per domain, rebuilt when the domain's generation moves."""

    def __init__(
        self, analyzer: Analyzer, parameters: BM25Parameters, expansion: Expansion | None = None
    ) -> None:
        self.analyzer = analyzer
        self.parameters = parameters
        self.expansion = expansion
        self._built: dict[int, _Built] = {}
        self._lock = threading.Lock()

    def search(
        self,
        conn: psycopg.Connection[Any],
        domain: Domain,
        query: str,
        k: int,
        filters: dict[str, Any],
        rm3: bool | None = None,
    ) -> list[ScoredChunk]:
        """The k chunks of the domain with the highest BM25 score for `query`.

        `domain` as this search read it: its generation picks the index (not read again: one statement less
        on every search). `rm3` overrides the configured expansion for this search (a domain's tuning turns it
        on or off)."""
        terms = self.analyzer.terms(query)
        if not terms:
            return []
        built = self.current(conn, domain, domain.generation)
        allowed = _allowed(conn, domain, filters) if filters else None
        expansion = self.expansion if rm3 is None else (self.expansion or Expansion()) if rm3 else None
        if expansion is not None:
            feedback = built.index.search(terms, expansion.documents, allowed)
            hits = built.index.search(_expanded(conn, terms, feedback, expansion), k, allowed)
        else:
            hits = built.index.search(terms, k, allowed)
        return _chunks(conn, hits)

    def current(self, conn: psycopg.Connection[Any], domain: Domain, generation: int | None = None) -> _Built:
        """The domain's index as of the last commit, rebuilt if anything changed since it was built; as of
        `generation` or later when the caller read that just now."""
        if generation is None:
            row = conn.execute("SELECT generation FROM domains WHERE id = %s", (domain.id,)).fetchone()
            generation = row[0] if row else -1
        with self._lock:
            built = self._built.get(domain.id)
            # Generations only grow: an index built since the caller read its generation is newer still.
            if built is not None and built.generation >= generation:
                return built
            built = self._build(conn, domain)
            self._built[domain.id] = built
            return built

    def _build(self, conn: psycopg.Connection[Any], domain: Domain) -> _Built:
        # One snapshot for the generation and the chunks, so the index is exactly that generation's.
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT generation FROM domains WHERE id = %s", (domain.id,)).fetchone()
            ids: list[int] = []
            term_lists: list[list[str]] = []
            with conn.cursor(name="bm25_terms") as cursor:
                cursor.itersize = 10_000
                cursor.execute("SELECT id, terms FROM chunks WHERE domain_id = %s ORDER BY id", (domain.id,))
                for chunk_id, terms in cursor:
                    ids.append(chunk_id)
                    term_lists.append(terms)
        parameters = self.parameters
        index = BM25Index(ids, term_lists, k1=parameters.k1, b=parameters.b, epsilon=parameters.epsilon)
        return _Built(row[0] if row else -1, index)


def _expanded(
    conn: psycopg.Connection[Any], terms: list[str], feedback: list[tuple[int, float]], expansion: Expansion
) -> dict[str, float]:
    """RM3: the query's terms (weight `keep`, shared) plus the feedback documents' most likely terms."""
    query: dict[str, float] = {}
    for term in terms:
        query[term] = query.get(term, 0.0) + expansion.keep / len(terms)
    if not feedback:
        return query
    scores = dict(feedback)
    total_score = sum(scores.values()) or 1.0
    relevance: dict[str, float] = {}
    for chunk_id, chunk_terms in conn.execute(
        "SELECT id, terms FROM chunks WHERE id = ANY(%s)", ([chunk_id for chunk_id, _ in feedback],)
    ):
        if not chunk_terms:
            continue
        weight = scores[chunk_id] / total_score / len(chunk_terms)
        for term in chunk_terms:
            relevance[term] = relevance.get(term, 0.0) + weight
    top = sorted(relevance.items(), key=lambda item: -item[1])[: expansion.terms]
    mass = sum(value for _, value in top) or 1.0
    for term, value in top:
        query[term] = query.get(term, 0.0) + (1 - expansion.keep) * value / mass
    return query


def _allowed(conn: psycopg.Connection[Any], domain: Domain, filters: dict[str, Any]) -> np.ndarray:
    """The ids of the domain's chunks whose document matches the metadata filters."""
    rows = conn.execute(
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id"
        " WHERE c.domain_id = %s AND d.metadata @> %s::jsonb",
        (domain.id, json.dumps(filters)),
    )
    return np.fromiter((row[0] for row in rows), dtype=np.int64)


def _chunks(conn: psycopg.Connection[Any], hits: list[tuple[int, float]]) -> list[ScoredChunk]:
    """ScoredChunks for (chunk id, score) hits, in the hits' order; chunks deleted since are dropped."""
    if not hits:
        return []
    rows = conn.execute(
        f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
        ([chunk_id for chunk_id, _ in hits],),
    ).fetchall()
    by_id = {row[0]: row for row in rows}
    return [
        ScoredChunk(*by_id[chunk_id][:6], tuple(by_id[chunk_id][6]), float(score), "keyword")
        for chunk_id, score in hits
        if chunk_id in by_id
    ]
