"""The retrieval eval: run every query of a BEIR-format set through each route and score the rankings."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from evals.beir import EvalQuery, load_qrels, load_queries
from evals.metrics import RetrievalScores, mean_scores, percentile, score_ranking
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest

T = TypeVar("T")

# Chunks asked of a route per query; deduplicated to documents, they give the ranking recall@100 is read from.
DEFAULT_DEPTH = 200


@dataclass(frozen=True)
class QueryResult:
    """One query through one route."""

    query_id: str
    kind: str | None
    scores: RetrievalScores
    latency_ms: float
    ranked: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "kind": self.kind,
            **self.scores.as_dict(),
            "latency_ms": round(self.latency_ms, 3),
            "top10": self.ranked[:10],
        }


@dataclass
class RouteReport:
    """A route's mean scores and latency percentiles, with the per-query results behind them."""

    route: str
    results: list[QueryResult] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        latencies = [result.latency_ms for result in self.results]
        return {
            **{
                key: round(value, 4)
                for key, value in mean_scores([r.scores for r in self.results]).as_dict().items()
            },
            "latency_ms_p50": round(percentile(latencies, 50), 3),
            "latency_ms_p95": round(percentile(latencies, 95), 3),
        }

    def by_kind(self) -> dict[str, dict[str, float]]:
        """Mean scores per query kind (identifier, paraphrase ...), where the set labels kinds."""
        kinds = sorted({result.kind for result in self.results if result.kind})
        return {
            kind: {
                key: round(value, 4)
                for key, value in mean_scores([r.scores for r in self.results if r.kind == kind])
                .as_dict()
                .items()
            }
            for kind in kinds
        }


@dataclass
class EvalReport:
    """Every route's report on one dataset."""

    dataset: str
    domain: str
    queries: int
    routes: dict[str, RouteReport]

    def as_dict(self, per_query: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "domain": self.domain,
            "queries": self.queries,
            "routes": {name: report.summary() for name, report in self.routes.items()},
            "by_kind": {name: report.by_kind() for name, report in self.routes.items() if report.by_kind()},
        }
        if per_query:
            out["per_query"] = {
                name: [r.as_dict() for r in report.results] for name, report in self.routes.items()
            }
        return out


def document_ranking(external_ids: Sequence[str]) -> list[str]:
    """Chunks' documents in rank order, each once (a document ranks where its best chunk does)."""
    return list(dict.fromkeys(external_ids))


def run_retrieval_eval(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    routes: Sequence[str],
    depth: int = DEFAULT_DEPTH,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Score every route on every judged query of `dataset` (its corpus already ingested into `domain`)."""
    queries = load_queries(dataset)
    qrels = load_qrels(dataset)
    reports = {route: RouteReport(route) for route in routes}
    for route in routes:
        # The first search of a route builds caches (the BM25 index) and warms the model: not a latency sample.
        searcher.search(SearchRequest(queries[0].text, domain, route, depth))  # type: ignore[arg-type]
    for number, query in enumerate(queries):
        for route in rotated(routes, number):
            reports[route].results.append(_run_query(searcher, query, qrels[query.id], domain, route, depth))
        if progress:
            progress(1)
    return EvalReport(str(dataset), domain, len(queries), reports)


def rotated(routes: Sequence[T], number: int) -> list[T]:
    """The routes in the order query `number` runs them: each route is first, second, ... equally often.

    The same query searched again right after another route finds its pages and rows warm; a fixed order
    gave the last route (routed search, after hybrid) about 0.5 ms per query it had not earned."""
    shift = number % len(routes) if routes else 0
    return [*routes[shift:], *routes[:shift]]


def _run_query(
    searcher: Searcher, query: EvalQuery, judged: dict[str, int], domain: str, route: str, depth: int
) -> QueryResult:
    result = searcher.search(SearchRequest(query.text, domain, route, depth))  # type: ignore[arg-type]
    ranked = document_ranking([chunk.external_id for chunk in result.chunks])
    return QueryResult(query.id, query.kind, score_ranking(ranked, judged), result.total_ms, ranked)


# --- Thresholds: the CI gate ----------------------------------------------------------------------------


def check_thresholds(report: EvalReport, thresholds_file: Path, name: str) -> list[str]:
    """The metrics of `report` that fall below the thresholds stored for data set `name`; empty = pass."""
    stored = json.loads(thresholds_file.read_text())
    if name not in stored:
        return [f"no thresholds for data set {name!r} in {thresholds_file}"]
    failures = []
    for route, minimums in stored[name].items():
        if route not in report.routes:
            continue
        measured = report.routes[route].summary()
        for metric, minimum in minimums.items():
            if measured[metric] < minimum:
                failures.append(f"{name} {route} {metric} = {measured[metric]:.4f} < threshold {minimum:.4f}")
    return failures
