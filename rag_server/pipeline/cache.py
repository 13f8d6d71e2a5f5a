"""The answer cache: a repeated question (same domain, same settings) is answered from Postgres, at no cost.

Exact matching on the normalized question (case, spacing and trailing punctuation folded); with
RAG_ANSWER_CACHE=semantic, then the nearest stored question of the domain under the same settings, if its
embedding's cosine reaches the calibrated threshold and the guard (`pipeline/paraphrase.py`) finds the same
numbers, dates, identifiers and negation in both. An entry is valid
while the domain's document generation and table catalog are what they were when it was written, so an
ingest, a deletion or a table import invalidates every answer of the domain at once; stale rows are replaced
on the next write. Postgres is the only store: every worker sees the same entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from functools import cache

import numpy as np
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.db import NO_WAIT_FOR_DISK
from rag_server.domains import Domain
from rag_server.errors import ConfigError
from rag_server.pipeline.paraphrase import same_specifics
from rag_server.pipeline.schemas import AskRequest, AskResponse
from rag_server.resources import package_path

logger = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")
# Stored questions above the threshold looked at, nearest first, for one that passes the guard.
_CANDIDATES = 5


def normalize(question: str) -> str:
    return _SPACE.sub(" ", question.strip().lower()).rstrip(" ?.!")


def cache_key(request: AskRequest, settings: Settings, answerer: str, model: str, calibration: str) -> bytes:
    """What decides an answer: the question, what it is asked of, and the settings the answer depends on."""
    parts = {
        "question": normalize(request.question),
        "route": request.route,
        "filters": request.filters,
        "k": request.k or settings.answer_evidence,
        "max_tokens": request.max_tokens or settings.answer_max_tokens,
        "answerer": answerer,
        "model": model,
        "abstention": settings.abstention,
        "calibration": calibration,
        "rerank_depth": settings.rerank_depth,
        # Switching the reranker (or its endpoint) must not replay answers ranked by the previous one.
        "reranker": [settings.reranker, settings.rerank_url, settings.rerank_model],
        "default_route": settings.default_route,
        # What a domain's tuning may change (the settings given are the domain's, tuning applied).
        "retrieval": [
            settings.keyword_expansion,
            settings.fusion,
            settings.convex_weight,
            settings.candidate_depth,
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def settings_key(
    request: AskRequest, settings: Settings, answerer: str, model: str, calibration: str
) -> bytes:
    """`cache_key` without the question: what a paraphrase must share with a stored question to replay it."""
    return cache_key(request.model_copy(update={"question": ""}), settings, answerer, model, calibration)


@dataclass(frozen=True)
class SemanticHit:
    """A stored answer served for a paraphrase: the stored question and its cosine with the one asked."""

    response: AskResponse
    question: str
    similarity: float


@dataclass(frozen=True)
class SemanticThreshold:
    """The cosine a stored question's embedding must reach, for the embedding model it was calibrated on."""

    threshold: float
    model: str
    fitted_on: str


def semantic_threshold(settings: Settings, embedding_model: str) -> float | None:
    """The similarity threshold for questions embedded by `embedding_model`, or None: no semantic cache.

    RAG_SEMANTIC_CACHE_THRESHOLD wins; else the packaged one, which holds only for the model it was
    calibrated on: with another model the cache stays exact (a threshold from one model means nothing
    for another)."""
    if settings.semantic_cache_threshold is not None:
        return settings.semantic_cache_threshold
    packaged = packaged_threshold()
    if packaged.model != embedding_model:
        logger.warning(
            "RAG_ANSWER_CACHE=semantic: the packaged threshold is for %s, not %s; set "
            "RAG_SEMANTIC_CACHE_THRESHOLD (rag-server eval cache) to use it, exact matches only until then",
            packaged.model,
            embedding_model,
        )
        return None
    return packaged.threshold


@cache
def packaged_threshold() -> SemanticThreshold:
    """The threshold shipped in the package (`rag-server eval cache --write` makes it)."""
    path = package_path("pipeline", "semantic_cache.json")
    try:
        data = json.loads(path.read_text())
        return SemanticThreshold(float(data["threshold"]), str(data["model"]), str(data["fitted_on"]))
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"cannot read the semantic cache threshold {path}: {error}") from None


class AnswerCache:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def lookup(self, domain: Domain, key: bytes) -> tuple[tuple[int, str], AskResponse | None]:
        """The domain's state (its generation and catalog stamp) and the answer kept under `key` at that state,
        counted as a hit: one round trip, since a hit is the whole of a cached request's work."""
        with self.pool.connection() as conn:
            row = conn.execute(
                f"WITH state AS ({_STATE}),"
                " hit AS (UPDATE answer_cache a SET hits = a.hits + 1 FROM state s"
                "  WHERE a.domain_id = %(domain)s AND a.key = %(key)s AND a.generation = s.generation"
                "  AND a.catalog = s.catalog RETURNING a.response)"
                f" SELECT s.generation, s.catalog, (SELECT response FROM hit) FROM state s, {NO_WAIT_FOR_DISK}",
                {"domain": domain.id, "key": key},
            ).fetchone()
        if row is None:
            return (-1, ""), None
        return (int(row[0]), str(row[1])), AskResponse.model_validate(row[2]) if row[2] is not None else None

    def put(
        self,
        domain: Domain,
        key: bytes,
        response: AskResponse,
        state: tuple[int, str],
        semantic: tuple[str, bytes, np.ndarray] | None = None,
    ) -> None:
        """Keep an answer made at `state` (the domain's generation and catalog read before answering); with
        `semantic` (the question as asked, its settings key and embedding), findable by `nearest` too."""
        question, settings, vector = semantic or (None, None, None)
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO answer_cache (domain_id, key, generation, catalog, response, question, settings_key,"
                " embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::vector)"
                " ON CONFLICT (domain_id, key) DO UPDATE SET generation = EXCLUDED.generation,"
                " catalog = EXCLUDED.catalog, response = EXCLUDED.response, question = EXCLUDED.question,"
                " settings_key = EXCLUDED.settings_key, embedding = EXCLUDED.embedding, created_at = now(), hits = 0",
                (domain.id, key, *state, Jsonb(response.model_dump(mode="json")), question, settings, vector),
            )

    def nearest(
        self,
        domain: Domain,
        settings: bytes,
        question: str,
        vector: np.ndarray,
        threshold: float,
        state: tuple[int, str],
    ) -> SemanticHit | None:
        """The answer of the most similar stored question of the domain, made under the same settings at the
        same `state`, if its cosine reaches `threshold` and the guard finds nothing that tells them apart."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, question, 1 - (embedding <=> %s::vector) AS similarity FROM answer_cache"
                " WHERE domain_id = %s AND settings_key = %s AND generation = %s AND catalog = %s"
                " AND embedding IS NOT NULL AND vector_dims(embedding) = %s"
                " ORDER BY embedding <=> %s::vector LIMIT %s",
                (vector, domain.id, settings, *state, len(vector), vector, _CANDIDATES),
            ).fetchall()
            for key, stored, similarity in rows:
                if similarity < threshold:
                    break
                if not same_specifics(question, stored):
                    continue
                # The hit counter, like the exact hit's, commits without waiting for the disk (db.py).
                row = conn.execute(
                    f"UPDATE answer_cache SET hits = hits + 1 FROM {NO_WAIT_FOR_DISK}"
                    " WHERE domain_id = %s AND key = %s AND generation = %s AND catalog = %s RETURNING response",
                    (domain.id, key, *state),
                ).fetchone()
                if row:
                    return SemanticHit(
                        AskResponse.model_validate(row[0]), stored, round(float(similarity), 4)
                    )
        return None


# The domain's document generation and a stamp of its tables and joins: what a kept answer was made at.
_STATE = (
    "SELECT d.generation,"
    " (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM sql_tables WHERE domain_id = d.id)"
    " || ':' || (SELECT coalesce(max(id), 0) FROM sql_joins WHERE domain_id = d.id) AS catalog"
    " FROM domains d WHERE d.id = %(domain)s"
)
