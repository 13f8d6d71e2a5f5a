"""Ranking metrics against hand-computed values, an independent nDCG, and numpy's percentile."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest

from evals.metrics import (
    RetrievalScores,
    mean_scores,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    score_ranking,
)

LOG2_3 = math.log2(3)  # 1.58496...

# The running example: "a" is unjudged, "d" is relevant but never retrieved.
RANKING = ["a", "b", "c"]
QRELS = {"b": 2, "c": 1, "d": 1}


def test_ndcg_graded_hand_computed() -> None:
    # DCG@3  = 0/log2(2) + 2/log2(3) + 1/log2(4) = 1.26186 + 0.5 = 1.76186
    # IDCG@3 = grades sorted 2,1,1: 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.63093 + 0.5 = 3.13093
    expected = (2 / LOG2_3 + 1 / 2) / (2 + 1 / LOG2_3 + 1 / 2)
    assert expected == pytest.approx(0.562727, abs=1e-6)
    assert ndcg_at_k(RANKING, QRELS, 3) == pytest.approx(expected)


def test_ndcg_cutoff_truncates_both_dcg_and_ideal() -> None:
    # k=2: DCG@2 = 2/log2(3) = 1.26186; IDCG@2 = 2 + 1/log2(3) = 2.63093 -> 0.479625
    assert ndcg_at_k(RANKING, QRELS, 2) == pytest.approx((2 / LOG2_3) / (2 + 1 / LOG2_3))
    # k=1: only "a" (unjudged) is in the top 1 -> DCG 0
    assert ndcg_at_k(RANKING, QRELS, 1) == 0.0
    # k larger than the ranking: same as k=3 for DCG, but the ideal still has only three grades
    assert ndcg_at_k(RANKING, QRELS, 100) == pytest.approx(ndcg_at_k(RANKING, QRELS, 3))


def test_ndcg_grades_matter() -> None:
    # Ideal order b(2), c(1), d(1) -> 1.0; swapping the grade-2 document down costs:
    # [c, b, d]: DCG = 1 + 2/log2(3) + 1/2 = 2.76186; IDCG = 3.13093 -> 0.882121
    assert ndcg_at_k(["b", "c", "d"], QRELS, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "d", "c"], QRELS, 3) == pytest.approx(1.0)  # equal grades tie
    assert ndcg_at_k(["c", "b", "d"], QRELS, 3) == pytest.approx(
        (1 + 2 / LOG2_3 + 1 / 2) / (2 + 1 / LOG2_3 + 1 / 2)
    )
    # linear gain (not 2^rel - 1): a lone grade-3 document at rank 2 scores 3/log2(3) / 3 = 0.63093
    assert ndcg_at_k(["x", "y"], {"y": 3}, 10) == pytest.approx(1 / LOG2_3)


def test_ideal_dcg_is_cut_at_k_when_more_documents_are_relevant() -> None:
    # 12 relevant, the top 10 all relevant: DCG@10 = IDCG@10 -> 1.0, recall@10 = 10/12
    qrels = {f"x{i}": 1 for i in range(12)}
    ranking = [f"x{i}" for i in range(10)]
    assert ndcg_at_k(ranking, qrels, 10) == pytest.approx(1.0)
    assert recall_at_k(ranking, qrels, 10) == pytest.approx(10 / 12)


def test_non_positive_grades_are_not_relevant() -> None:
    # qrels {a:0, b:-1, c:1}: only c counts. DCG@3 = 1/log2(4) = 0.5; IDCG@3 = 1/log2(2) = 1 -> 0.5
    qrels = {"a": 0, "b": -1, "c": 1}
    assert ndcg_at_k(["a", "b", "c"], qrels, 3) == pytest.approx(0.5)
    assert recall_at_k(["a", "b", "c"], qrels, 3) == 1.0
    assert mrr_at_k(["a", "b", "c"], qrels, 3) == pytest.approx(1 / 3)


@pytest.mark.parametrize("qrels", [{}, {"a": 0}, {"a": 0, "b": -1}])
def test_query_without_relevant_documents_scores_zero(qrels: dict[str, int]) -> None:
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k):
        assert metric(["a", "b"], qrels, 10) == 0.0
    assert score_ranking(["a", "b"], qrels) == RetrievalScores(0.0, 0.0, 0.0, 0.0)


def test_empty_ranking_scores_zero() -> None:
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k):
        assert metric([], QRELS, 10) == 0.0


def test_recall_hand_computed() -> None:
    # relevant {b, c, d}: top 3 holds b and c -> 2/3; top 2 holds b -> 1/3; top 1 holds none -> 0
    assert recall_at_k(RANKING, QRELS, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, QRELS, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKING, QRELS, 1) == 0.0


def test_mrr_hand_computed() -> None:
    # first relevant is b at rank 2 -> 1/2; cut at k=1 it is out of reach -> 0
    assert mrr_at_k(RANKING, QRELS, 10) == 0.5
    assert mrr_at_k(RANKING, QRELS, 2) == 0.5
    assert mrr_at_k(RANKING, QRELS, 1) == 0.0
    assert mrr_at_k(["c", "b"], QRELS, 10) == 1.0  # any positive grade counts, not just the best


def test_duplicates_count_once_at_first_occurrence() -> None:
    qrels = {"b": 1, "c": 1}
    # [b, b, b] reads as [b]: DCG = 1; IDCG = 1 + 1/log2(3) = 1.63093 -> 0.613147; recall 1/2
    assert ndcg_at_k(["b", "b", "b"], qrels, 3) == pytest.approx(1 / (1 + 1 / LOG2_3))
    assert recall_at_k(["b", "b", "b"], qrels, 3) == 0.5
    # [a, a, b] reads as [a, b]: b is at rank 2 (the duplicate takes no rank), also within k=2
    assert mrr_at_k(["a", "a", "b"], qrels, 10) == 0.5
    assert mrr_at_k(["a", "a", "b"], qrels, 2) == 0.5
    # [b, b, c] reads as [b, c]: the ideal ranking -> 1.0, and both are within the top 2
    assert ndcg_at_k(["b", "b", "c"], qrels, 2) == pytest.approx(1.0)
    assert recall_at_k(["b", "b", "c"], qrels, 2) == 1.0


@pytest.mark.parametrize("metric", [ndcg_at_k, recall_at_k, mrr_at_k])
@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_rejected(metric, k: int) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        metric(RANKING, QRELS, k)


def _reference_ndcg(ranking: list[str], qrels: dict[str, int], k: int) -> float:
    """Independent nDCG: numpy arrays over a set-based dedup, explicit ideal ranking of ids."""
    seen: set[str] = set()
    distinct = [doc for doc in ranking if not (doc in seen or seen.add(doc))][:k]
    gains = np.array([max(qrels.get(doc, 0), 0) for doc in distinct], dtype=float)
    ideal_ids = sorted((doc for doc in qrels if qrels[doc] > 0), key=lambda doc: -qrels[doc])[:k]
    ideal_gains = np.array([qrels[doc] for doc in ideal_ids], dtype=float)
    if ideal_gains.size == 0:
        return 0.0
    dcg = float(np.sum(gains / np.log2(np.arange(2, gains.size + 2))))
    idcg = float(np.sum(ideal_gains / np.log2(np.arange(2, ideal_gains.size + 2))))
    return dcg / idcg


def test_ndcg_matches_reference_on_random_rankings() -> None:
    rng = random.Random(1234)
    pool = [f"d{i}" for i in range(40)]
    for _ in range(300):
        qrels = {doc: rng.choice([-1, 0, 1, 1, 2, 3]) for doc in rng.sample(pool, rng.randint(0, 15))}
        ranking = rng.choices(pool, k=rng.randint(0, 30))  # with repeats
        k = rng.choice([1, 3, 5, 10, 20])
        assert ndcg_at_k(ranking, qrels, k) == pytest.approx(_reference_ndcg(ranking, qrels, k), abs=1e-12)


def test_score_ranking_and_report_keys() -> None:
    # relevant r0..r3 (grade 1) at ranks 2, 5, 50 (after 1 and 3 unjudged fillers), r3 never retrieved
    ranking = ["n0", "r0", "n1", "n2", "r1", *[f"m{i}" for i in range(44)], "r2"]
    assert ranking.index("r2") == 49  # rank 50
    qrels = {"r0": 1, "r1": 1, "r2": 1, "r3": 1}
    scores = score_ranking(ranking, qrels)
    # nDCG@10: (1/log2(3) + 1/log2(6)) / (1 + 1/log2(3) + 1/log2(4) + 1/log2(5))
    expected_ndcg = (1 / LOG2_3 + 1 / math.log2(6)) / (1 + 1 / LOG2_3 + 1 / 2 + 1 / math.log2(5))
    assert scores == RetrievalScores(
        ndcg_at_10=pytest.approx(expected_ndcg),
        recall_at_10=0.5,  # r0, r1 of 4
        recall_at_100=0.75,  # plus r2
        mrr_at_10=0.5,  # r0 at rank 2
    )
    assert list(scores.as_dict()) == ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
    assert scores.as_dict()["recall@100"] == 0.75


def test_scores_are_frozen() -> None:
    scores = RetrievalScores(1.0, 1.0, 1.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.ndcg_at_10 = 0.0  # type: ignore[misc]


def test_mean_scores_is_per_metric_mean() -> None:
    mean = mean_scores(
        [
            RetrievalScores(1.0, 0.5, 1.0, 1.0),
            RetrievalScores(0.0, 0.25, 0.5, 0.5),
            RetrievalScores(0.5, 0.0, 0.0, 0.0),
        ]
    )
    assert mean.as_dict() == pytest.approx(
        {"ndcg@10": 0.5, "recall@10": 0.25, "recall@100": 0.5, "mrr@10": 0.5}
    )
    assert mean_scores([RetrievalScores(0.1, 0.2, 0.3, 0.4)]) == RetrievalScores(0.1, 0.2, 0.3, 0.4)
    with pytest.raises(ValueError):
        mean_scores([])


@pytest.mark.parametrize("q", [0, 1, 10, 25, 33.3, 50, 75, 90, 95, 99, 99.9, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 10, 101])
def test_percentile_matches_numpy(q: float, size: int) -> None:
    rng = random.Random(size)
    values = [rng.uniform(0.1, 500.0) for _ in range(size)]
    original = list(values)
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert values == original  # not sorted in place


def test_percentile_hand_computed() -> None:
    # sorted [1, 2, 3, 4]: p50 at position 0.5*3 = 1.5 -> 2 + 0.5*(3-2) = 2.5; p95 at 2.85 -> 3.85
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([4, 1, 3, 2], 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    for q in (-1, 100.5):
        with pytest.raises(ValueError, match="within"):
            percentile([1.0, 2.0], q)
