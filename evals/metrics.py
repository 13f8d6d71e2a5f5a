"""Ranking metrics (nDCG, recall, MRR) and percentiles: pure functions shared by every eval command.

A ranking is a sequence of document ids, best first; qrels map document ids to graded relevance.
Grades <= 0 count as not relevant. A ranking that repeats an id is read with each id once, at its
first occurrence, so later ids move up (a duplicate neither earns a second gain nor takes a rank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields


def ndcg_at_k(ranked_ids: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Normalised DCG of the top k with linear gain (gain = grade) and discount log2(rank + 1)."""
    top = _top_k(ranked_ids, k)
    ideal_grades = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)
    if not ideal_grades:
        return 0.0
    dcg = sum(
        qrels.get(doc_id, 0) / math.log2(rank + 1)
        for rank, doc_id in enumerate(top, start=1)
        if qrels.get(doc_id, 0) > 0
    )
    ideal = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal_grades[:k], start=1))
    return dcg / ideal


def recall_at_k(ranked_ids: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Fraction of the relevant (grade > 0) documents found in the top k; 0.0 when none is relevant."""
    top = _top_k(ranked_ids, k)
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return sum(1 for doc_id in top if doc_id in relevant) / len(relevant)


def mrr_at_k(ranked_ids: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top k; 0.0 when there is none."""
    relevant = _relevant(qrels)
    for rank, doc_id in enumerate(_top_k(ranked_ids, k), start=1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between closest ranks like numpy's default."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


@dataclass(frozen=True)
class RetrievalScores:
    """The retrieval metrics of one query, or their means over many."""

    ndcg_at_10: float
    recall_at_10: float
    recall_at_100: float
    mrr_at_10: float

    def as_dict(self) -> dict[str, float]:
        """The scores keyed by their report names: ndcg@10, recall@10, recall@100, mrr@10."""
        return {
            "ndcg@10": self.ndcg_at_10,
            "recall@10": self.recall_at_10,
            "recall@100": self.recall_at_100,
            "mrr@10": self.mrr_at_10,
        }


def score_ranking(ranked_ids: Sequence[str], qrels: Mapping[str, int]) -> RetrievalScores:
    """All the reported metrics of one ranking."""
    return RetrievalScores(
        ndcg_at_10=ndcg_at_k(ranked_ids, qrels, 10),
        recall_at_10=recall_at_k(ranked_ids, qrels, 10),
        recall_at_100=recall_at_k(ranked_ids, qrels, 100),
        mrr_at_10=mrr_at_k(ranked_ids, qrels, 10),
    )


def mean_scores(scores: Sequence[RetrievalScores]) -> RetrievalScores:
    """The per-metric arithmetic mean (macro average over queries); ValueError when empty."""
    if not scores:
        raise ValueError("mean of no scores")
    return RetrievalScores(
        **{
            field.name: math.fsum(getattr(score, field.name) for score in scores) / len(scores)
            for field in fields(RetrievalScores)
        }
    )


def _top_k(ranked_ids: Sequence[str], k: int) -> list[str]:
    """The first k distinct ids of the ranking, each at its first occurrence."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    top: dict[str, None] = {}
    for doc_id in ranked_ids:
        top.setdefault(doc_id)
        if len(top) == k:
            break
    return list(top)


def _relevant(qrels: Mapping[str, int]) -> set[str]:
    return {doc_id for doc_id, grade in qrels.items() if grade > 0}
