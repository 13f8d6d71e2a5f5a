"""The eval gate: a trained reranker serves a domain only if it beats the un-reranked order on held-out questions.

Two conditions, both on per-question nDCG@10 of questions the model did not train on:
1. the mean gain is at least `margin` (reranked mean - baseline mean >= margin, margin > 0 means "beats");
2. a one-sided Wilcoxon signed-rank test over the per-question differences (reranked - baseline) gives
   p < `alpha`: the gain is not a few lucky questions. Questions with no difference carry no sign and are
   left out of the test (scipy's `zero_method="wilcox"`); if every difference is zero, p is 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MARGIN = 0.005
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Verdict:
    """The gate's answer and the figures behind it."""

    promoted: bool
    baseline_ndcg: float
    reranked_ndcg: float
    gain: float
    p_value: float
    questions: int
    improved: int
    worsened: int
    margin: float
    alpha: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "baseline_ndcg@10": round(self.baseline_ndcg, 4),
            "reranked_ndcg@10": round(self.reranked_ndcg, 4),
            "gain": round(self.gain, 4),
            "p_value": self.p_value,
            "questions": self.questions,
            "improved": self.improved,
            "worsened": self.worsened,
            "margin": self.margin,
            "alpha": self.alpha,
            "paired_test": "wilcoxon signed-rank, one-sided (reranked > baseline)",
            "reason": self.reason,
        }


def paired_p_value(reranked: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided Wilcoxon signed-rank p-value that `reranked` beats `baseline`, question by question."""
    from scipy.stats import wilcoxon

    differences = np.asarray(reranked, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    differences = differences[np.abs(differences) > 1e-12]
    if len(differences) == 0:
        return 1.0
    result = wilcoxon(differences, zero_method="wilcox", alternative="greater")
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p


def judge(
    reranked: Sequence[float],
    baseline: Sequence[float],
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
) -> Verdict:
    """Promote only when the held-out mean gain is >= margin and the paired test gives p < alpha.

    >>> judge([1.0] * 12, [0.5] * 12).promoted
    True
    >>> judge([0.5, 0.6], [0.6, 0.5]).promoted
    False
    """
    if len(reranked) != len(baseline) or not reranked:
        raise ValueError("judge needs the same questions, at least one, scored both ways")
    ours, theirs = np.asarray(reranked, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    gain = float(ours.mean() - theirs.mean())
    p = paired_p_value(ours.tolist(), theirs.tolist())
    difference = ours - theirs
    beats, significant = gain >= margin, p < alpha
    if beats and significant:
        reason = f"gain {gain:+.4f} >= margin {margin} and p = {p:.3g} < {alpha}"
    elif not beats:
        reason = f"gain {gain:+.4f} below the margin {margin}"
    else:
        reason = f"gain {gain:+.4f} not significant: p = {p:.3g} >= {alpha}"
    return Verdict(
        promoted=beats and significant,
        baseline_ndcg=float(theirs.mean()),
        reranked_ndcg=float(ours.mean()),
        gain=gain,
        p_value=p,
        questions=len(ours),
        improved=int((difference > 1e-12).sum()),
        worsened=int((difference < -1e-12).sum()),
        margin=margin,
        alpha=alpha,
        reason=reason,
    )
