"""What every route takes and returns: one retrieval interface for semantic, keyword, hybrid (and SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from rag_server.llm import ModelCall
    from rag_server.routing.router import RouteDecision
    from rag_server.sql.route import SqlEvidence

Route = Literal["semantic", "keyword", "hybrid", "sql", "auto"]
# `auto` asks the query router; the result names the route it chose.
ROUTES: tuple[str, ...] = get_args(Route)
# The routes that rank chunks (and so are scored by retrieval evals); `sql` returns a query's rows instead.
CHUNK_ROUTES: tuple[str, ...] = ("semantic", "keyword", "hybrid")


@dataclass(frozen=True)
class SearchRequest:
    """A question to a domain; `filters` must be contained in a document's metadata (jsonb `@>`)."""

    query: str
    domain: str
    # None: the configured default route (`auto` unless RAG_DEFAULT_ROUTE says otherwise).
    route: Route | None = None
    k: int = 10
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredChunk:
    """One retrieved chunk with its document; `score` is the route's own (cosine, BM25 or fused)."""

    chunk_id: int
    document_id: int
    external_id: str
    title: str | None
    text: str
    ordinal: int
    heading_path: tuple[str, ...]
    score: float
    route: str

    def citation(self) -> dict[str, Any]:
        """How an answer cites this chunk; SQL evidence has the same keys."""
        return {
            "kind": "chunk",
            "ref": f"{self.external_id}#{self.ordinal}",
            "title": self.title,
            "text": self.text,
        }


@dataclass(frozen=True)
class SearchResult:
    """A ranked list (or, on the sql route, the query's result) and how long each stage took, in milliseconds."""

    route: str
    chunks: list[ScoredChunk]
    timings_ms: dict[str, float]
    sql: SqlEvidence | None = None
    routing: RouteDecision | None = None
    # Why the sql part of a fan-out found nothing (the chunks still answer).
    sql_error: str | None = None
    # Model calls the search itself made (multi-query expansion), with their tokens and cost.
    model_calls: list[ModelCall] = field(default_factory=list)
    # The domain's tuning the search used: `tuning#ID` (`rag-server tunings list`) or `defaults`.
    tuning: str = "defaults"

    @property
    def total_ms(self) -> float:
        return sum(self.timings_ms.values())
