"""The rerank stage: a `Reranker` orders a search's candidates before the cut to the evidence the answerer
sees. Per-domain trained rerankers plug in here; until one is promoted for a domain, none runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rag_server.retrieval.types import ScoredChunk


class Reranker(Protocol):
    name: str

    def rerank(self, question: str, candidates: Sequence[ScoredChunk]) -> list[ScoredChunk]: ...


class NoReranker:
    """The fused order as it came (the baseline every trained reranker must beat)."""

    name = "none"

    def rerank(self, question: str, candidates: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        return list(candidates)
