"""Fusing ranked lists from several routes: reciprocal rank fusion and convex combination."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """Items by sum over rankings of 1 / (k + rank), rank from 1; ties by first appearance.

    >>> reciprocal_rank_fusion([[1, 2], [2, 3]], k=1)
    [(2, 0.8333333333333333), (1, 0.5), (3, 0.3333333333333333)]
    """
    if k < 1:
        raise ValueError("RRF k must be >= 1")
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scores rescaled to [0, 1]; all equal -> all 1."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return dict.fromkeys(scores, 1.0)
    return {item: (score - low) / (high - low) for item, score in scores.items()}


def convex_combination(
    semantic: Mapping[int, float], keyword: Mapping[int, float], weight: float = 0.5
) -> list[tuple[int, float]]:
    """Items by weight * semantic + (1 - weight) * keyword, each min-max normalized; absent counts 0;
    ties keep the order of first appearance (semantic first).

    >>> convex_combination({1: 0.9, 2: 0.5}, {2: 10.0, 3: 4.0}, weight=0.5)
    [(1, 0.5), (2, 0.5), (3, 0.0)]
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError("convex weight must be within [0, 1]")
    sem, key = min_max(semantic), min_max(keyword)
    items = list(dict.fromkeys([*semantic, *keyword]))
    fused = {item: weight * sem.get(item, 0.0) + (1 - weight) * key.get(item, 0.0) for item in items}
    return sorted(fused.items(), key=lambda pair: -pair[1])
