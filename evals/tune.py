"""Tuning a domain's retrieval settings on its labeled questions, gated like a reranker's promotion.

1. Every configuration of the grid (keyword expansion x fusion kind and weight x candidate depth) and the
   domain's current one (the global defaults, or its promoted tuning) search every judged question of the
   training split through the serving path (`Searcher.search`, hybrid route, `rerank_depth` chunks, the
   configuration given as the domain's tuning); each gets the question's document-level nDCG@10.
2. Held out: k folds over the questions (each fold's questions scored by the configuration that was best on
   the other folds), or, with an eval split, the configuration best on the whole training split scored on the
   eval split's questions.
3. Those per-question scores against the current configuration's go to the reranker's gate
   (`rag_server.rerank.promotion.judge`: mean gain >= margin and a one-sided paired Wilcoxon test).
4. Promoted: the configuration best on every training question is stored for the domain and serves its
   searches from then on; refused: recorded with every configuration's score, and what served keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evals.beir import EvalQuery, load_qrels, load_queries
from evals.metrics import ndcg_at_k
from evals.retrieval import document_ranking
from rag_server.domains import get_domain
from rag_server.rerank.promotion import DEFAULT_MARGIN, Verdict, judge
from rag_server.retrieval import tuning as tunings
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.tuning import CHUNKING, TUNABLE, FixedTuning, Tuning, TuningRegistry, checked
from rag_server.retrieval.types import SearchRequest

DEFAULT_FOLDS = 5
EXPANSIONS = ("none", "rm3")
FUSIONS = ("rrf", "convex")
WEIGHTS = (0.5, 0.7, 0.9)
DEPTHS = (50, 100)
_SEED = 13
_EMBED_BATCH = 64

Config = dict[str, Any]


def grid(
    expansions: Sequence[str] = EXPANSIONS,
    fusions: Sequence[str] = FUSIONS,
    weights: Sequence[float] = WEIGHTS,
    depths: Sequence[int] = DEPTHS,
) -> list[Config]:
    """Every configuration to try (a convex weight only with convex fusion), each checked as a setting.

    >>> len(grid()), label(grid()[0])
    (16, 'none/rrf/d50')
    """
    configs = []
    for expansion in expansions:
        for fusion in fusions:
            for weight in weights if fusion == "convex" else [None]:
                for depth in depths:
                    config: Config = {
                        "keyword_expansion": expansion,
                        "fusion": fusion,
                        "candidate_depth": depth,
                    }
                    if weight is not None:
                        config["convex_weight"] = weight
                    configs.append(checked(config))
    if not configs:
        raise ValueError("the grid is empty")
    return configs


def label(config: Mapping[str, Any]) -> str:
    """A configuration in a few characters: expansion/fusion[weight]/depth."""
    fusion = config["fusion"] + (str(config["convex_weight"]) if config["fusion"] == "convex" else "")
    return f"{config['keyword_expansion']}/{fusion}/d{config['candidate_depth']}"


def _essential(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides a configuration's ranking (the convex weight only matters with convex fusion)."""
    weight = config["convex_weight"] if config["fusion"] == "convex" else None
    return (config["keyword_expansion"], config["fusion"], weight, config["candidate_depth"])


@dataclass
class TuningRun:
    """What `tune` found: the verdict, the figures for the record, and the configuration when promoted."""

    verdict: Verdict
    decision: dict[str, Any]
    settings: Config | None
    tuning_id: int | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)


def questions(dataset: Path, split: str, max_questions: int | None = None) -> tuple[list[EvalQuery], dict]:
    """The split's judged questions (a fixed sample of `max_questions`) and their qrels."""
    queries = load_queries(dataset, split)
    qrels = load_qrels(dataset, split)
    if max_questions is not None and len(queries) > max_questions:
        keep = np.sort(np.random.default_rng(_SEED).permutation(len(queries))[:max_questions])
        queries = [queries[i] for i in keep]
    return queries, qrels


def score(
    searcher: Searcher,
    domain: str,
    queries: Sequence[EvalQuery],
    qrels: Mapping[str, dict[str, int]],
    configs: Sequence[Config],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """nDCG@10 (document level) of every question (rows) under every configuration (columns).

    Each configuration serves as the domain's tuning for its searches; the searcher's own source is restored.
    """
    k = searcher.settings.rerank_depth
    scores = np.zeros((len(queries), len(configs)), dtype=np.float64)
    served = searcher.tunings
    try:
        for start in range(0, len(queries), _EMBED_BATCH):
            batch = queries[start : start + _EMBED_BATCH]
            vectors = searcher.embedder.embed([query.text for query in batch])
            for row, (query, vector) in enumerate(zip(batch, vectors, strict=True), start):
                for column, config in enumerate(configs):
                    searcher.tunings = FixedTuning(Tuning(None, config))
                    result = searcher.search(
                        SearchRequest(query.text, domain, "hybrid", k), query_vector=vector
                    )
                    ranked = document_ranking([chunk.external_id for chunk in result.chunks])
                    scores[row, column] = ndcg_at_k(ranked, qrels[query.id], 10)
                if progress:
                    progress(1)
    finally:
        searcher.tunings = served
    return scores


def best(scores: np.ndarray) -> int:
    """The column with the highest mean; ties go to the earliest (the current configuration is column 0)."""
    means = scores.mean(axis=0)
    return int(np.flatnonzero(means >= means.max() - 1e-12)[0])


def cross_validate(scores: np.ndarray, folds: int) -> tuple[list[float], list[dict[str, Any]], list[int]]:
    """k-fold over the questions: each fold scored by the column best on the other folds.

    Returns the per-question held-out scores (in row order), a report per fold, and each fold's choice."""
    if folds < 2 or folds > len(scores):
        raise ValueError(f"cannot make {folds} folds of {len(scores)} questions")
    held_out = np.zeros(len(scores), dtype=np.float64)
    reports, chosen = [], []
    shuffled = np.random.default_rng(_SEED).permutation(len(scores))
    for number, held in enumerate(np.array_split(shuffled, folds)):
        training = np.setdiff1d(np.arange(len(scores)), held)
        column = best(scores[training])
        held_out[held] = scores[held, column]
        chosen.append(column)
        reports.append(
            {
                "fold": number,
                "questions": len(held),
                "chosen": column,
                "current_ndcg@10": round(float(scores[held, 0].mean()), 4),
                "tuned_ndcg@10": round(float(scores[held, column].mean()), 4),
            }
        )
    return held_out.tolist(), reports, chosen


def tune(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    split: str,
    folds: int = DEFAULT_FOLDS,
    margin: float = DEFAULT_MARGIN,
    eval_split: str | None = None,
    test_split: str | None = None,
    max_questions: int | None = None,
    configs: Sequence[Config] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TuningRun:
    """Grid-search, evaluate held out against the current configuration, judge, and record the decision."""
    started = time.perf_counter()
    with searcher.pool.connection() as conn:
        found = get_domain(conn, domain)
    current_tuning = searcher.tunings.for_domain(found)
    effective = current_tuning.apply(searcher.settings)
    current: Config = {name: getattr(effective, name) for name in TUNABLE}
    # Column 0 is the current configuration; a grid point that ranks exactly like it is not searched twice.
    candidates = [current] + [c for c in (configs or grid()) if _essential(c) != _essential(current)]
    queries, qrels = questions(dataset, split, max_questions)
    if not queries:
        raise ValueError(f"no judged questions in the {split} split of {dataset}")
    train_scores = score(searcher, domain, queries, qrels, candidates, progress)
    fold_reports: list[dict[str, Any]] = []
    final = best(train_scores)
    if eval_split is None:
        tuned, fold_reports, _ = cross_validate(train_scores, folds)
        baseline = train_scores[:, 0].tolist()
        protocol = f"{folds}-fold cross-validation over the {split} questions"
        evaluated = len(queries)
    else:
        eval_queries, eval_qrels = questions(dataset, eval_split, max_questions)
        pair = score(searcher, domain, eval_queries, eval_qrels, [current, candidates[final]], progress)
        baseline, tuned = pair[:, 0].tolist(), pair[:, 1].tolist()
        protocol = f"chosen on {split}, evaluated on {eval_split}"
        evaluated = len(eval_queries)
    verdict = judge(tuned, baseline, margin)
    promoted = verdict.promoted and final != 0
    reason = (
        verdict.reason if final != 0 else "the current configuration is the best on every training question"
    )
    gate = verdict.as_dict()
    gate.update(
        promoted=promoted,
        reason=reason,
        paired_test="wilcoxon signed-rank, one-sided (tuned > current)",
        **{"tuned_ndcg@10": gate.pop("reranked_ndcg@10")},
    )
    means = train_scores.mean(axis=0)
    decision: dict[str, Any] = {
        **gate,
        "current": current_tuning.name,
        "current_settings": current,
        "chosen": label(candidates[final]),
        "chosen_settings": candidates[final],
        "configurations": [
            {"label": label(c), "settings": c, "train_ndcg@10": round(float(m), 4)}
            for c, m in zip(candidates, means, strict=True)
        ],
        "dataset": str(dataset),
        "split": split,
        "eval_split": eval_split,
        "protocol": protocol,
        "route": "hybrid",
        "k": searcher.settings.rerank_depth,
        "training_questions": len(queries),
        "evaluated_questions": evaluated,
        "folds": [{**f, "chosen": label(candidates[f["chosen"]])} for f in fold_reports],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if test_split is not None:
        test_queries, test_qrels = questions(dataset, test_split)
        pair = score(searcher, domain, test_queries, test_qrels, [current, candidates[final]], progress)
        decision["test"] = {
            "split": test_split,
            "questions": len(test_queries),
            "current_ndcg@10": round(float(pair[:, 0].mean()), 4),
            "tuned_ndcg@10": round(float(pair[:, 1].mean()), 4),
        }
    decision["seconds"] = round(time.perf_counter() - started, 1)
    # A promoted row is the domain's whole tuning: the chunk options of the one it replaces are kept.
    kept = {name: value for name, value in current_tuning.overrides.items() if name in CHUNKING}
    stored = {**kept, **candidates[final]} if promoted else None
    with searcher.pool.connection() as conn, conn.transaction():
        tuning_id = tunings.save(conn, found.id, stored, decision)
    if isinstance(searcher.tunings, TuningRegistry):
        searcher.tunings.forget(found)
    return TuningRun(verdict, decision, stored, tuning_id, decision["folds"])
