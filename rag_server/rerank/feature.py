"""The feature (learning-to-rank) reranker: compute `FEATURES` for the candidates, order them by the model.

The chunks keep the route's scores: only their order changes, so whatever reads scores downstream (the
abstention calibration) reads the same scale as without a reranker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from psycopg_pool import ConnectionPool

from rag_server.domains import Domain
from rag_server.rerank.features import chunk_vectors, compute_features, question_terms
from rag_server.rerank.model import FeatureModel
from rag_server.retrieval.keyword import KeywordIndexes
from rag_server.retrieval.types import ScoredChunk

Embed = Callable[[list[str]], np.ndarray]


class CandidateFeatures:
    """Computes the feature matrix of a domain's candidates, the same way for training and for serving."""

    def __init__(self, pool: ConnectionPool, domain: Domain, keyword: KeywordIndexes, embed: Embed) -> None:
        self.pool = pool
        self.domain = domain
        self.keyword = keyword
        self.embed = embed

    def __call__(
        self, question: str, question_vector: np.ndarray | None, candidates: Sequence[ScoredChunk]
    ) -> np.ndarray:
        """The (candidates x FEATURES) matrix; the question is embedded here only if no vector is given."""
        if question_vector is None:
            question_vector = self.embed([question])[0]
        with self.pool.connection() as conn:
            index = self.keyword.current(conn, self.domain).index
            vectors = chunk_vectors(conn, [c.chunk_id for c in candidates], self.domain.model.dimension)
        terms = question_terms(question, self.keyword.analyzer, index)
        return compute_features(terms, question_vector, candidates, vectors, index, self.keyword.analyzer)


class FeatureReranker:
    """A domain's trained feature reranker (a `Reranker`)."""

    name = "features"

    def __init__(
        self, features: CandidateFeatures, model: FeatureModel, reranker_id: int | None = None
    ) -> None:
        self.features = features
        self.model = model
        self.reranker_id = reranker_id
        # The last call's split: features (DB and CPU) and model, in milliseconds.
        self.last_timings_ms: dict[str, float] = {}

    def rerank(
        self, question: str, question_vector: np.ndarray | None, candidates: Sequence[ScoredChunk]
    ) -> list[ScoredChunk]:
        """The candidates ordered by the model's score (ties keep the input order)."""
        if len(candidates) < 2:
            return list(candidates)
        started = time.perf_counter()
        features = self.features(question, question_vector, candidates)
        computed = time.perf_counter()
        scores = self.model.score(features)
        self.last_timings_ms = {
            "features": (computed - started) * 1000,
            "model": (time.perf_counter() - computed) * 1000,
        }
        return [candidates[i] for i in order(scores)]


def order(scores: np.ndarray) -> list[int]:
    """Positions by score descending, ties in input order."""
    return np.argsort(-scores, kind="stable").tolist()
