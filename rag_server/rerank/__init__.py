"""The rerank stage: a `Reranker` orders a search's candidates before the cut to the evidence the answerer
sees. Per-domain trained rerankers plug in here (`rag_server.rerank.registry.RerankerRegistry` picks the
promoted one of a domain); until one is promoted for a domain, none runs.

Modules: `features` (what a candidate is scored on), `model` (LightGBM lambdarank, stored as JSON),
`feature` (the feature reranker), `cross_encoder` (a fine-tuned MiniLM pair scorer), `remote` (a `/v1/rerank`
endpoint), `promotion` (the eval gate), `store` (the `rerankers` table), `registry`, and `synthetic`
(training questions generated from a domain's chunks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rag_server.retrieval.types import ScoredChunk


class Reranker(Protocol):
    name: str

    def rerank(
        self, question: str, question_vector: np.ndarray | None, candidates: Sequence[ScoredChunk]
    ) -> list[ScoredChunk]:
        """The candidates in a new order (the same chunks, their scores as the route gave them)."""
        ...


class NoReranker:
    """The fused order as it came (the baseline every trained reranker must beat)."""

    name = "none"

    def rerank(
        self, question: str, question_vector: np.ndarray | None, candidates: Sequence[ScoredChunk]
    ) -> list[ScoredChunk]:
        return list(candidates)
