"""`rag-server bench rerank`: each reranker's latency at depth 20, 50 and 100, on real candidates, side by side.

Every question is searched once (hybrid, at the deepest depth, its embedding given, as ask does); a depth's
candidates are the first N of that list. At each depth every reranker reorders the same candidates, taking
turns question by question (the first to run changes with the question, so none always finds warm pages),
after one warm-up call each. Figures: p50/p95 milliseconds of `rerank` and candidates per second.

The rerankers are `CONTENDERS`, one line each: a builder returns the reranker, or why it is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.metrics import percentile
from rag_server.rerank import NoReranker, Reranker
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest

DEPTHS = (20, 50, 100)
# The target: the feature reranker at depth 100, p50.
FEATURES_TARGET_P50_MS = 5.0
# Questions the feature model is fitted on (a fixed sample of the split; enough for a model of served size).
TRAINING_QUESTIONS = 200
TRAINING_DEPTH = 50


@dataclass(frozen=True)
class BenchInputs:
    """What a builder may need: the searcher (its settings), the domain and its labeled questions."""

    searcher: Searcher
    domain: str
    dataset: Path
    split: str
    cross_encoder: Path | None = None


# A reranker to measure, or the reason it is skipped.
Builder = Callable[[BenchInputs], Reranker | str]


def _none(inputs: BenchInputs) -> Reranker:
    return NoReranker()


def _features(inputs: BenchInputs) -> Reranker | str:
    """A feature model fitted here on the data set's labeled questions, served as a promoted one is."""
    from evals.rerank import collect
    from rag_server.domains import get_domain
    from rag_server.errors import RagError
    from rag_server.rerank.feature import CandidateFeatures, FeatureReranker
    from rag_server.rerank.model import fit

    searcher = inputs.searcher
    lists = collect(searcher, inputs.dataset, inputs.domain, inputs.split, TRAINING_DEPTH, TRAINING_QUESTIONS)
    try:
        model = fit([x.features for x in lists], [x.labels for x in lists])
    except RagError as error:
        return f"no model could be fitted: {error}"
    with searcher.pool.connection() as conn:
        domain = get_domain(conn, inputs.domain)
    return FeatureReranker(
        CandidateFeatures(searcher.pool, domain, searcher.keyword, searcher.embedder.embed), model
    )


def _remote(inputs: BenchInputs) -> Reranker | str:
    from rag_server.rerank.remote import RemoteReranker

    settings = inputs.searcher.settings
    return RemoteReranker.from_settings(settings) if settings.rerank_url else "RAG_RERANK_URL is not set"


def _cross_encoder(inputs: BenchInputs) -> Reranker | str:
    if inputs.cross_encoder is None:
        return "no --cross-encoder FOLDER given"
    try:
        from rag_server.rerank.cross_encoder import CrossEncoderReranker
    except ImportError:
        return "rag_server.rerank.cross_encoder is not available"
    return CrossEncoderReranker(inputs.cross_encoder)


CONTENDERS: dict[str, Builder] = {
    "none": _none,
    "features": _features,
    "remote": _remote,
    "cross-encoder": _cross_encoder,
}


def build_rerankers(inputs: BenchInputs, names: Sequence[str] | None = None) -> dict[str, Reranker | str]:
    """Each contender (all, or those named) built, or the reason it is skipped."""
    return {name: CONTENDERS[name](inputs) for name in names or CONTENDERS}


def run_rerank_bench(
    searcher: Searcher,
    domain: str,
    questions: Sequence[str],
    rerankers: dict[str, Reranker | str],
    depths: Sequence[int] = DEPTHS,
    rounds: int = 1,
) -> dict[str, Any]:
    """Time every reranker on the same candidates of each question at each depth (see the module's doc)."""
    if not questions:
        raise ValueError("no questions to measure")
    depths = sorted(set(depths))
    vectors = searcher.embedder.embed(list(questions))
    lists = [
        searcher.search(SearchRequest(question, domain, "hybrid", depths[-1]), query_vector=vector).chunks
        for question, vector in zip(questions, vectors, strict=True)
    ]
    measured = {name: found for name, found in rerankers.items() if not isinstance(found, str)}
    for reranker in measured.values():  # warm: models, the keyword index, connections
        reranker.rerank(questions[0], vectors[0], lists[0][: depths[0]])
    times: dict[tuple[str, int], list[float]] = {(n, d): [] for n in measured for d in depths}
    parts: dict[tuple[str, int], dict[str, list[float]]] = {(n, d): {} for n in measured for d in depths}
    sizes: dict[int, list[int]] = {depth: [] for depth in depths}
    failures: dict[tuple[str, int], int] = {(n, d): 0 for n in measured for d in depths}
    names = list(measured)
    for _ in range(rounds):
        for number, (question, vector, chunks) in enumerate(zip(questions, vectors, lists, strict=True)):
            for depth in depths:
                candidates = chunks[:depth]
                sizes[depth].append(len(candidates))
                shift = number % len(names)
                for name in names[shift:] + names[:shift]:
                    reranker = measured[name]
                    started = time.perf_counter()
                    reranker.rerank(question, vector, candidates)
                    times[name, depth].append((time.perf_counter() - started) * 1000)
                    failures[name, depth] += int(getattr(reranker, "fell_back", False))
                    # A feature reranker's split: features (DB and CPU) and model.
                    for part, ms in getattr(reranker, "last_timings_ms", {}).items():
                        parts[name, depth].setdefault(part, []).append(ms)
    figures: dict[str, Any] = {}
    for name, found in rerankers.items():
        if isinstance(found, str):
            figures[name] = {"status": "skipped", "reason": found}
            continue
        figures[name] = {"status": "measured", "depths": {}}
        for depth in depths:
            spent = times[name, depth]
            figures[name]["depths"][str(depth)] = {
                "candidates": round(float(np.mean(sizes[depth])), 1),
                "samples": len(spent),
                "p50_ms": round(percentile(spent, 50), 3),
                "p95_ms": round(percentile(spent, 95), 3),
                "candidates_per_s": round(sum(sizes[depth]) / (sum(spent) / 1000), 1) if sum(spent) else None,
                "failures": failures[name, depth],
                "parts_p50_ms": {
                    part: round(percentile(values, 50), 3) for part, values in parts[name, depth].items()
                },
            }
    features = figures.get("features", {}).get("depths", {}).get("100")
    return {
        "domain": domain,
        "questions": len(questions),
        "rounds": rounds,
        "depths": depths,
        "rerankers": figures,
        "features_target_p50_ms_at_100": FEATURES_TARGET_P50_MS,
        "features_target_met": features["p50_ms"] <= FEATURES_TARGET_P50_MS if features else None,
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a text table, one row per reranker and depth; skipped ones with their reason."""
    rows = [
        f"{'reranker':<15}{'depth':>6}{'cands':>7}{'p50 ms':>10}{'p95 ms':>10}{'cands/s':>11}{'failed':>8}"
    ]
    for name, figures in result["rerankers"].items():
        if figures["status"] == "skipped":
            rows.append(f"{name:<15}  skipped: {figures['reason']}")
            continue
        for depth, row in figures["depths"].items():
            rate = f"{row['candidates_per_s']:>11.0f}" if row["candidates_per_s"] else f"{'-':>11}"
            rows.append(
                f"{name:<15}{depth:>6}{row['candidates']:>7.0f}{row['p50_ms']:>10.2f}{row['p95_ms']:>10.2f}"
                f"{rate}{row['failures']:>8}"
            )
    met = result["features_target_met"]
    if met is not None:
        verdict = "met" if met else "NOT met"
        rows.append(f"target: features at depth 100 p50 <= {FEATURES_TARGET_P50_MS} ms ({verdict})")
    return "\n".join(rows)
