"""The answer cache: a repeated question (same domain, same settings) is answered from Postgres, at no cost.

Exact matching on the normalized question (case, spacing and trailing punctuation folded). An entry is valid
while the domain's document generation and table catalog are what they were when it was written, so an
ingest, a deletion or a table import invalidates every answer of the domain at once; stale rows are replaced
on the next write. Postgres is the only store: every worker sees the same entries.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import Domain
from rag_server.pipeline.schemas import AskRequest, AskResponse

_SPACE = re.compile(r"\s+")


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


class AnswerCache:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def get(self, domain: Domain, key: bytes) -> AskResponse | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE answer_cache SET hits = hits + 1"
                " WHERE domain_id = %s AND key = %s AND generation = %s AND catalog = %s RETURNING response",
                (domain.id, key, *_state(conn, domain)),
            ).fetchone()
        return AskResponse.model_validate(row[0]) if row else None

    def put(self, domain: Domain, key: bytes, response: AskResponse, state: tuple[int, str]) -> None:
        """Keep an answer made at `state` (the domain's generation and catalog read before answering)."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO answer_cache (domain_id, key, generation, catalog, response) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (domain_id, key) DO UPDATE SET generation = EXCLUDED.generation,"
                " catalog = EXCLUDED.catalog, response = EXCLUDED.response, created_at = now(), hits = 0",
                (domain.id, key, *state, Jsonb(response.model_dump(mode="json"))),
            )

    def state(self, domain: Domain) -> tuple[int, str]:
        with self.pool.connection() as conn:
            return _state(conn, domain)


def _state(conn: Any, domain: Domain) -> tuple[int, str]:
    """The domain's document generation and a stamp of its tables and joins."""
    row = conn.execute(
        "SELECT d.generation,"
        " (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM sql_tables WHERE domain_id = d.id)"
        " || ':' || (SELECT coalesce(max(id), 0) FROM sql_joins WHERE domain_id = d.id)"
        " FROM domains d WHERE d.id = %s",
        (domain.id,),
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else (-1, "")
