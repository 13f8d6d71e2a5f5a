"""One entry point for every route: `Searcher.search(request)` -> ranked chunks with per-stage timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import Domain, get_domain
from rag_server.embedding import Embedder
from rag_server.errors import EmbeddingModelMismatch, RetrievalError
from rag_server.llm import ModelCall, OpenAIChatModel, model_configured
from rag_server.retrieval.analyzer import configured_analyzer
from rag_server.retrieval.fusion import convex_combination, reciprocal_rank_fusion
from rag_server.retrieval.keyword import BM25Parameters, Expansion, KeywordIndexes
from rag_server.retrieval.multiquery import rephrasings
from rag_server.retrieval.semantic import semantic_search
from rag_server.retrieval.tuning import TuningRegistry, TuningSource
from rag_server.retrieval.types import ROUTES, ScoredChunk, SearchRequest, SearchResult
from rag_server.routing.router import QueryRouter, RouteDecision
from rag_server.sql.deterministic import Draft
from rag_server.sql.route import SqlEvidence, SqlRoute
from rag_server.trace import RequestTrace

T = TypeVar("T")

MAX_K = 1000


class Searcher:
    """Runs searches for a process: holds the embedder and the keyword indexes, borrows connections."""

    def __init__(self, pool: ConnectionPool, embedder: Embedder, settings: Settings) -> None:
        self.pool = pool
        self.embedder = embedder
        self.settings = settings
        # One client for every model call a search may make: SQL, routing, multi-query expansion.
        self.model = OpenAIChatModel(settings) if model_configured(settings) else None
        self.sql = SqlRoute(pool, embedder, settings, self.model)
        self.router = QueryRouter(pool, embedder, settings, self.model)
        analyzer = configured_analyzer(settings)
        parameters = BM25Parameters(settings.bm25_k1, settings.bm25_b, settings.bm25_epsilon)
        expansion = Expansion() if settings.keyword_expansion == "rm3" else None
        self.keyword = KeywordIndexes(analyzer, parameters, expansion)
        # Each domain's promoted tuning overrides some retrieval settings for its searches (retrieval/tuning.py).
        self.tunings: TuningSource = TuningRegistry(pool)

    def search(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None = None,
        trace: RequestTrace | None = None,
    ) -> SearchResult:
        """Rank the domain's chunks for the request's query by its route (the default route if none).

        `query_vector`, when given, is used instead of embedding the query (benchmarks, cached embeddings).
        Stages are timed into `trace` (a new one when not given) and its model calls recorded there.
        """
        trace = trace if trace is not None else RequestTrace()
        asked = request.route is not None
        route = request.route or self.settings.default_route
        request = replace(request, route=route)
        _check(request)
        with self.pool.connection() as conn:
            domain = get_domain(conn, request.domain)
        if route == "auto":
            result = self._routed(request, domain, query_vector, trace.timings_ms)
        else:
            result = self._search(request, domain, query_vector, trace.timings_ms)
            decision = RouteDecision.requested(route) if asked else RouteDecision.defaulted(route)
            result = replace(result, routing=decision)
        trace.record(_calls(result))
        return result

    def _routed(
        self, request: SearchRequest, domain: Domain, vector: np.ndarray | None, timings: dict[str, float]
    ) -> SearchResult:
        """Ask the router, then run the chosen route (and SQL beside it when the router fans out).

        The query is embedded only if the router needs it (a sure keyword question never is)."""
        embedded: list[np.ndarray] = [] if vector is None else [vector]

        def embedding() -> np.ndarray:
            if not embedded:
                self._check_model(domain)
                embedded.append(_timed(timings, "embed", lambda: self.embedder.embed([request.query])[0]))
            return embedded[0]

        started, embedded_before = time.perf_counter(), timings.get("embed", 0.0)
        decision = self.router.route(request.query, domain, embedding)
        # The route stage is the router's own time: an embedding it asked for is counted under "embed".
        asked = timings.get("embed", 0.0) - embedded_before
        timings["route"] = timings.get("route", 0.0) + (time.perf_counter() - started) * 1000 - asked
        vector = embedded[0] if embedded else None
        if decision.route == "sql":
            return self._sql_routed(request, domain, vector, timings, decision)
        result = self._search(replace(request, route=decision.route), domain, vector, timings)  # type: ignore[arg-type]
        if decision.fanout_sql:
            result = self._with_sql(result, request, timings, decision.sql_draft)
        return replace(result, routing=decision)

    def _sql_routed(
        self,
        request: SearchRequest,
        domain: Domain,
        vector: np.ndarray | None,
        timings: dict[str, float],
        decision: RouteDecision,
    ) -> SearchResult:
        """The sql route, with hybrid chunks beside the rows when the router was unsure or no row came back."""
        hybrid = replace(request, route="hybrid")
        try:
            sql = replace(request, route="sql")
            result = self._search(sql, domain, vector, timings, decision.sql_draft)
        except RetrievalError as error:
            # The tables could not answer after all: the chunks still can. The route taken stays sql (one
            # name for it in a response); the hybrid chunks are its documents fan-out.
            result = self._search(hybrid, domain, vector, timings)
            fanned = replace(
                decision,
                fanout_documents=True,
                reasons=[*decision.reasons, "documents too: the sql route could not answer"],
            )
            return replace(result, route="sql", sql_error=str(error), routing=fanned)
        if not decision.fanout_documents:
            if not _no_rows(result.sql):
                return replace(result, routing=decision)
            decision = replace(
                decision,
                fanout_documents=True,
                reasons=[*decision.reasons, "documents too: the query found no rows"],
            )
        documents = self._search(hybrid, domain, vector, timings)
        calls = [*result.model_calls, *documents.model_calls]
        return replace(result, chunks=documents.chunks, model_calls=calls, routing=decision)

    def _with_sql(
        self,
        result: SearchResult,
        request: SearchRequest,
        timings: dict[str, float],
        draft: Draft | None = None,
    ) -> SearchResult:
        """The result with the sql route's evidence beside its chunks, or with why SQL could not answer."""
        try:
            return replace(result, sql=self.sql.answer(request.query, request.domain, timings, draft))
        except RetrievalError as error:
            return replace(result, sql_error=str(error))

    def _check_model(self, domain: Domain) -> None:
        if domain.model.name != self.embedder.name:
            raise EmbeddingModelMismatch(
                f"domain {domain.name!r} was embedded with {domain.model.name!r}, "
                f"but the configured model is {self.embedder.name!r}"
            )

    def _search(
        self,
        request: SearchRequest,
        domain: Domain,
        query_vector: np.ndarray | None,
        timings: dict[str, float],
        draft: Draft | None = None,
    ) -> SearchResult:
        """One route's search; `draft` is the SQL the router already wrote for the sql route."""
        tuning = self.tunings.for_domain(domain)
        if request.route == "sql":
            evidence = self.sql.answer(request.query, request.domain, timings, draft)
            return SearchResult("sql", [], timings, evidence, tuning=tuning.name)
        if query_vector is None and request.route != "keyword":
            self._check_model(domain)
        calls: list[ModelCall] = []
        settings = tuning.apply(self.settings)
        rm3 = settings.keyword_expansion == "rm3"
        with self.pool.connection() as conn:
            depth = max(settings.candidate_depth, request.k)
            if request.route == "keyword":
                chunks = _timed(
                    timings,
                    "keyword",
                    lambda: self.keyword.search(conn, domain, request.query, request.k, request.filters, rm3),
                )
            elif request.route == "semantic":
                chunks = self._semantic(conn, domain, request, request.k, timings, query_vector, calls)
            else:
                semantic = self._semantic(conn, domain, request, depth, timings, query_vector, calls)
                keyword = _timed(
                    timings,
                    "keyword",
                    lambda: self.keyword.search(conn, domain, request.query, depth, request.filters, rm3),
                )
                chunks = _timed(timings, "fuse", lambda: self._fuse(semantic, keyword, request.k, settings))
        return SearchResult(request.route, chunks, timings, model_calls=calls, tuning=tuning.name)

    def _semantic(
        self,
        conn: Any,
        domain: Domain,
        request: SearchRequest,
        k: int,
        timings: dict[str, float],
        vector: np.ndarray | None,
        calls: list[ModelCall],
    ) -> list[ScoredChunk]:
        if vector is None:
            vector = _timed(timings, "embed", lambda: self.embedder.embed([request.query])[0])

        def search(query_vector: np.ndarray) -> list[ScoredChunk]:
            return semantic_search(
                conn,
                domain,
                query_vector,
                k,
                request.filters,
                self.settings.ef_search,
                self.settings.vector_precision,
            )

        if self.settings.semantic_expansion == "multiquery" and self.model is not None:
            return self._multiquery(request.query, vector, k, timings, calls, search)
        return _timed(timings, "semantic", lambda: search(vector))

    def _multiquery(
        self,
        query: str,
        vector: np.ndarray,
        k: int,
        timings: dict[str, float],
        calls: list[ModelCall],
        search: Callable[[np.ndarray], list[ScoredChunk]],
    ) -> list[ScoredChunk]:
        """The query and the model's rephrasings, each searched, fused by reciprocal rank."""
        model = self.model
        assert model is not None
        texts, call = _timed(
            timings, "expand", lambda: rephrasings(model, query, self.settings.multiquery_count)
        )
        if call is not None:
            calls.append(call)
        vectors = [vector, *(_timed(timings, "embed", lambda: self.embedder.embed(texts)) if texts else [])]
        lists = _timed(timings, "semantic", lambda: [search(v) for v in vectors])
        by_id = {chunk.chunk_id: chunk for found in reversed(lists) for chunk in found}
        fused = reciprocal_rank_fusion(
            [[chunk.chunk_id for chunk in found] for found in lists], self.settings.rrf_k
        )
        return [replace(by_id[chunk_id], score=score) for chunk_id, score in fused[:k]]

    def _fuse(
        self, semantic: list[ScoredChunk], keyword: list[ScoredChunk], k: int, settings: Settings
    ) -> list[ScoredChunk]:
        by_id = {chunk.chunk_id: chunk for chunk in [*keyword, *semantic]}
        if settings.fusion == "rrf":
            fused = reciprocal_rank_fusion(
                [[chunk.chunk_id for chunk in semantic], [chunk.chunk_id for chunk in keyword]],
                settings.rrf_k,
            )
        else:
            fused = convex_combination(
                {chunk.chunk_id: chunk.score for chunk in semantic},
                {chunk.chunk_id: chunk.score for chunk in keyword},
                settings.convex_weight,
            )
        return [_rescored(by_id[chunk_id], score) for chunk_id, score in fused[:k]]


def _calls(result: SearchResult) -> list[ModelCall]:
    """Every model call a search made: routing, SQL generation, expansion."""
    routing = result.routing.model_calls if result.routing else []
    sql = result.sql.model_calls if result.sql else []
    return [*routing, *sql, *result.model_calls]


def _no_rows(evidence: SqlEvidence | None) -> bool:
    """No row, or only NULLs (an aggregate over nothing): the tables may not be where the answer is."""
    return evidence is not None and all(value is None for row in evidence.rows for value in row)


def _rescored(chunk: ScoredChunk, score: float) -> ScoredChunk:
    return replace(chunk, score=score, route="hybrid")


def _check(request: SearchRequest) -> None:
    if request.route not in ROUTES:
        raise RetrievalError(f"unknown route {request.route!r}; use one of {', '.join(ROUTES)}")
    if not 1 <= request.k <= MAX_K:
        raise RetrievalError(f"k must be between 1 and {MAX_K}, not {request.k}")
    if not request.query.strip():
        raise RetrievalError("the query is empty")
    if not isinstance(request.filters, dict):
        raise RetrievalError("filters must be a JSON object of metadata keys and values")


def _timed(timings: dict[str, float], stage: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return work()
    finally:
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - started) * 1000
