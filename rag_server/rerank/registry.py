"""Which reranker serves a domain: its newest promoted one, else `NoReranker`; one registry per process.

Each call reads the domain's promoted reranker id (one indexed lookup), so a promotion committed by
`rag-server train-reranker` serves in every worker from the next question on, without a restart; the
model itself is loaded once per id.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import Domain
from rag_server.errors import RagError
from rag_server.rerank import NoReranker, Reranker, store
from rag_server.rerank.cross_encoder import DEFAULT_MAX_LENGTH, CrossEncoderReranker
from rag_server.rerank.cross_encoder import KIND as CROSS_ENCODER_KIND
from rag_server.rerank.feature import CandidateFeatures, FeatureReranker
from rag_server.rerank.model import FeatureModel
from rag_server.rerank.remote import RemoteReranker
from rag_server.retrieval.search import Searcher

log = logging.getLogger(__name__)


class RerankerRegistry:
    """The promoted reranker of each domain, cached by its stored id."""

    def __init__(self, pool: ConnectionPool, searcher: Searcher) -> None:
        self.pool = pool
        self.searcher = searcher
        self._loaded: dict[int, Reranker] = {}  # reranker id -> reranker
        self._lock = threading.Lock()
        # RAG_RERANKER=none or remote: one reranker for every domain instead of each one's promoted reranker.
        self.fixed = fixed_reranker(searcher.settings)

    def for_domain(self, domain: Domain) -> Reranker:
        """The domain's promoted reranker, else `NoReranker()` (also when its model cannot be served); the
        configured one when RAG_RERANKER is not `auto`."""
        if self.fixed is not None:
            return self.fixed
        with self.pool.connection() as conn:
            reranker_id = store.promoted_id(conn, domain.id)
            if reranker_id is None:
                return NoReranker()
            with self._lock:
                loaded = self._loaded.get(reranker_id)
            if loaded is not None:
                return loaded
            kind, stored = store.load_model(conn, reranker_id)
        try:
            loaded = self._build(domain, reranker_id, kind, stored or {})
        except RagError as error:
            log.warning("domain %s: reranker %s not served: %s", domain.name, reranker_id, error)
            loaded = NoReranker()
        with self._lock:
            self._loaded[reranker_id] = loaded
        return loaded

    def _build(self, domain: Domain, reranker_id: int, kind: str, stored: dict[str, Any]) -> Reranker:
        """The reranker a stored model describes, by its kind."""
        if kind == CROSS_ENCODER_KIND:
            path = Path(stored.get("path", ""))
            if not (path / "config.json").is_file():
                raise RagError(f"its cross-encoder folder {path} is missing")
            max_length = int(stored.get("max_length", DEFAULT_MAX_LENGTH))
            return CrossEncoderReranker(path, reranker_id, max_length, float(stored.get("weight", 1.0)))
        features = CandidateFeatures(self.pool, domain, self.searcher.keyword, self.searcher.embedder.embed)
        return FeatureReranker(features, FeatureModel.from_json(stored), reranker_id)

    def decision(self, domain: Domain) -> dict[str, Any] | None:
        """The stored decision behind what serves the domain (the promoted run's, else the newest refusal's)."""
        with self.pool.connection() as conn:
            found = store.decision(conn, domain.id)
        return found.as_dict() if found else None


def fixed_reranker(settings: Settings) -> Reranker | None:
    """The reranker RAG_RERANKER names for every domain; None for `auto` (each domain's promoted one)."""
    if settings.reranker == "none":
        return NoReranker()
    if settings.reranker == "remote":
        return RemoteReranker.from_settings(settings)
    return None
