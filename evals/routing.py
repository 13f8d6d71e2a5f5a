"""The routing eval: oracle labels from measured retrieval, routing accuracy, a confusion matrix, and what
matters, end-to-end nDCG@10 and latency of routed retrieval against every fixed route and the oracle."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.beir import EvalQuery, load_qrels, load_queries
from evals.metrics import percentile, score_ranking
from evals.retrieval import DEFAULT_DEPTH, document_ranking, rotated
from evals.sql_data import JSONL_QUESTION_FILE
from rag_server.errors import RagError
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import CHUNK_ROUTES, SearchRequest

# Ties in the oracle go to the cheaper route: keyword needs no embedding, hybrid runs both searches.
CHEAPEST_FIRST = ("keyword", "semantic", "hybrid")
LABELS_FILE = "routes.tsv"


def oracle_label(ndcg: dict[str, float]) -> str:
    """The route that retrieved best for a query; ties go to the cheapest."""
    best = max(ndcg.values())
    return next(route for route in CHEAPEST_FIRST if route in ndcg and ndcg[route] >= best - 1e-9)


def load_labels(path: Path) -> dict[str, str]:
    """Hand labels: `query-id<TAB>route` lines (a header line is allowed)."""
    labels: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.lower().startswith("query")):
            continue
        query_id, _, route = line.partition("\t")
        if route.strip() not in (*CHUNK_ROUTES, "sql"):
            raise RagError(
                f"{path}:{number}: route {route.strip()!r} is not keyword, semantic, hybrid or sql"
            )
        labels[query_id.strip()] = route.strip()
    return labels


@dataclass
class _Measured:
    query: EvalQuery
    ndcg: dict[str, float]
    latency_ms: dict[str, float]
    routed_to: str
    confidence: float
    router_ms: float
    fanout_sql: bool


def run_routing_eval(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    labels: dict[str, str] | None = None,
    depth: int = DEFAULT_DEPTH,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Route every judged query (and, for accuracy, the set's analytical questions) and score it all."""
    queries = load_queries(dataset)
    qrels = load_qrels(dataset)
    for route in (*CHUNK_ROUTES, "auto"):  # warm caches and the model: not latency samples
        searcher.search(SearchRequest(queries[0].text, domain, route, depth))  # type: ignore[arg-type]
    measured = []
    for number, query in enumerate(queries):
        measured.append(_measure(searcher, query, qrels[query.id], domain, depth, number))
        if progress:
            progress(1)
    oracle = {m.query.id: oracle_label({r: m.ndcg[r] for r in CHUNK_ROUTES}) for m in measured}
    truth = labels if labels is not None else oracle
    decisions = {m.query.id: m.routed_to for m in measured}
    fanouts = {m.query.id for m in measured if m.fanout_sql}
    analytical = _route_analytical(searcher, dataset, domain, truth)
    decisions.update({query_id: route for query_id, (route, _) in analytical.items()})
    fanouts |= {query_id for query_id, (_, fanout) in analytical.items() if fanout}
    return _report(dataset, domain, measured, oracle, truth, decisions, fanouts, labels is not None)


def _measure(
    searcher: Searcher, query: EvalQuery, judged: dict[str, int], domain: str, depth: int, number: int
) -> _Measured:
    ndcg: dict[str, float] = {}
    latency: dict[str, float] = {}
    for route in rotated([*CHUNK_ROUTES, "auto"], number):
        result = searcher.search(SearchRequest(query.text, domain, route, depth))  # type: ignore[arg-type]
        ranked = document_ranking([chunk.external_id for chunk in result.chunks])
        ndcg[route] = score_ranking(ranked, judged).ndcg_at_10
        latency[route] = result.total_ms
        if route == "auto":
            assert result.routing is not None
            routing, router_ms = result.routing, result.timings_ms.get("route", 0.0)
    return _Measured(query, ndcg, latency, routing.route, routing.confidence, router_ms, routing.fanout_sql)


def _route_analytical(
    searcher: Searcher, dataset: Path, domain: str, truth: dict[str, str]
) -> dict[str, str]:
    """Route the set's analytical questions (no qrels: they count for routing accuracy only)."""
    path = dataset / JSONL_QUESTION_FILE
    if not path.is_file():
        return {}
    from rag_server.domains import get_domain

    with searcher.pool.connection() as conn:
        found = get_domain(conn, domain)
    decisions = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["_id"] in truth:
                decision = searcher.router.route(row["text"], found)
                decisions[row["_id"]] = (decision.route, decision.fanout_sql)
    return decisions


def _report(
    dataset: Path,
    domain: str,
    measured: list[_Measured],
    oracle: dict[str, str],
    truth: dict[str, str],
    decisions: dict[str, str],
    fanouts: set[str],
    hand_labels: bool,
) -> dict[str, Any]:
    labeled = [query_id for query_id in decisions if query_id in truth]
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for query_id in labeled:
        confusion[truth[query_id]][decisions[query_id]] += 1
    correct = sum(truth[query_id] == decisions[query_id] for query_id in labeled)
    count = max(len(measured), 1)

    def mean(values: list[float]) -> float:
        return round(sum(values) / count, 4)

    per_route_sql = [q for q in labeled if truth[q] == "sql"]
    return {
        "dataset": str(dataset),
        "domain": domain,
        "queries": len(measured),
        "labels": "hand" if hand_labels else "oracle",
        "labeled_questions": len(labeled),
        "routing_accuracy": round(correct / len(labeled), 4) if labeled else None,
        "sql_recall": round(sum(decisions[q] == "sql" for q in per_route_sql) / len(per_route_sql), 4)
        if per_route_sql
        else None,
        # Analytical questions that reach SQL at all: routed there, or fanned out to it beside a chunk route.
        "sql_reached": round(
            sum(decisions[q] == "sql" or q in fanouts for q in per_route_sql) / len(per_route_sql), 4
        )
        if per_route_sql
        else None,
        "confusion": {label: dict(row) for label, row in sorted(confusion.items())},
        "ndcg@10": {
            "routed": mean([m.ndcg["auto"] for m in measured]),
            **{route: mean([m.ndcg[route] for m in measured]) for route in CHUNK_ROUTES},
            "oracle": mean([max(m.ndcg[r] for r in CHUNK_ROUTES) for m in measured]),
        },
        "latency_ms": {
            "routed": mean([m.latency_ms["auto"] for m in measured]),
            **{route: mean([m.latency_ms[route] for m in measured]) for route in CHUNK_ROUTES},
        },
        "router_ms": {
            "p50": round(percentile([m.router_ms for m in measured], 50), 3),
            "p95": round(percentile([m.router_ms for m in measured], 95), 3),
        },
        "routed_to": dict(Counter(m.routed_to for m in measured)),
        "oracle_routes": dict(Counter(oracle.values())),
        "per_query": [
            {
                "id": m.query.id,
                "text": m.query.text,
                "oracle": oracle[m.query.id],
                "label": truth.get(m.query.id),
                "routed_to": m.routed_to,
                "confidence": round(m.confidence, 4),
                "ndcg@10": {route: round(value, 4) for route, value in m.ndcg.items()},
                "latency_ms": {route: round(value, 3) for route, value in m.latency_ms.items()},
            }
            for m in measured
        ],
    }


def oracle_training_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Oracle-labeled training rows from a routing report (a BEIR set has no tables: empty schema).

    Queries no route retrieved anything relevant for are left out: their "keyword" (the cheapest of a tie at
    zero) says nothing about which route suits them."""
    return [
        {"text": row["text"], "route": row["oracle"], "schema": []}
        for row in report["per_query"]
        if max(row["ndcg@10"][route] for route in CHEAPEST_FIRST) > 0
    ]
