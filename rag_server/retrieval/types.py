"""What every route takes and returns: one retrieval interface for semantic, keyword, hybrid (and SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Route = Literal["semantic", "keyword", "hybrid"]
ROUTES: tuple[str, ...] = get_args(Route)


@dataclass(frozen=True)
class SearchRequest:
    """A question to a domain; `filters` must be contained in a document's metadata (jsonb `@>`)."""

    query: str
    domain: str
    route: Route = "hybrid"
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


@dataclass(frozen=True)
class SearchResult:
    """A ranked list and how long each stage took, in milliseconds."""

    route: str
    chunks: list[ScoredChunk]
    timings_ms: dict[str, float]

    @property
    def total_ms(self) -> float:
        return sum(self.timings_ms.values())
