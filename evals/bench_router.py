"""`rag-server bench router`: what routing adds to a search, measured side by side with the search itself."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from evals.metrics import percentile
from rag_server.domains import Domain
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest


def load_questions(paths: list[Path]) -> list[str]:
    """Question texts from JSON-lines files with a "text" field."""
    return [
        json.loads(line)["text"]
        for path in paths
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def run_router_bench(
    searcher: Searcher, domain: Domain, questions: list[str], rounds: int = 3
) -> dict[str, Any]:
    """Per question: the embedding (shared by router and semantic search), the router alone, and a hybrid
    search given the same embedding. The ratio says what routing costs next to the search it saves."""
    vectors = searcher.embedder.embed(questions[:1])
    searcher.router.route(questions[0], domain, vectors[0])  # warm: the model, the vocabulary
    embed_ms, route_ms, hybrid_ms = [], [], []
    surface: Counter[str] = Counter()
    for _ in range(rounds):
        for question in questions:
            started = time.perf_counter()
            vector = searcher.embedder.embed([question])[0]
            embed_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            decision = searcher.router.route(question, domain, vector)
            if decision.before_embedding:
                surface[decision.route] += 1
            route_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            searcher.search(SearchRequest(question, domain.name, "hybrid", 10), query_vector=vector)
            hybrid_ms.append((time.perf_counter() - started) * 1000)

    def stats(values: list[float]) -> dict[str, float]:
        return {"p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3)}

    router, hybrid = stats(route_ms), stats(hybrid_ms)
    return {
        "domain": domain.name,
        "questions": len(questions),
        "samples": len(route_ms),
        "router_ms": router,
        "embed_ms": stats(embed_ms),
        "hybrid_search_ms": hybrid,
        "router_over_hybrid_p50": round(router["p50"] / hybrid["p50"], 4) if hybrid["p50"] else None,
        "router_target_p50_ms": 5.0,
        # Questions the surface model sent to keyword search or SQL: their searches need no embedding at all.
        "routed_before_embedding": round(sum(surface.values()) / len(route_ms), 4),
        "routed_before_embedding_by_route": {
            route: round(count / len(route_ms), 4) for route, count in sorted(surface.items())
        },
    }
