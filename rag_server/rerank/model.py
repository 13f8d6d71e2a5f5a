"""The feature reranker's model: LightGBM lambdarank over `FEATURES`, stored as JSON (the booster as text).

Lambdarank optimizes nDCG directly from graded labels grouped by question, so the hard negatives (retrieved,
not relevant) of a question teach it exactly what the reranker has to do: put that question's relevant
chunks above them. A question whose candidates are all unlabeled (or all relevant) has no pair to learn
from and only shifts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_server.errors import RagError
from rag_server.rerank.features import FEATURE_NAMES, FEATURE_VERSION

KIND = "lightgbm-lambdarank"

# Small trees and few rounds: a domain has hundreds of questions, not millions; more overfits the folds.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "lambdarank_truncation_level": 20,
    "num_threads": 1,
    "deterministic": True,
    "seed": 13,
    "verbosity": -1,
}
DEFAULT_ROUNDS = 150


@dataclass
class FeatureModel:
    """A fitted ranker: `score(features)` gives one number per candidate, higher first."""

    booster_text: str
    features: tuple[str, ...] = FEATURE_NAMES
    feature_version: int = FEATURE_VERSION
    parameters: dict[str, Any] = field(default_factory=dict)
    _booster: Any = field(default=None, repr=False, compare=False)

    def score(self, features: np.ndarray) -> np.ndarray:
        """The model's score of each row of a (candidates x FEATURES) matrix."""
        if len(features) == 0:
            return np.zeros(0)
        return np.asarray(self.booster().predict(features, num_threads=1), dtype=np.float64)

    def booster(self) -> Any:
        if self._booster is None:
            import lightgbm

            self._booster = lightgbm.Booster(model_str=self.booster_text)
        return self._booster

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "features": list(self.features),
            "feature_version": self.feature_version,
            "parameters": self.parameters,
            "booster": self.booster_text,
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> FeatureModel:
        """A stored model; RagError if it was trained on other features than this version computes."""
        if stored.get("kind") != KIND:
            raise RagError(f"not a {KIND} model: {stored.get('kind')!r}")
        if (
            stored.get("feature_version") != FEATURE_VERSION
            or tuple(stored.get("features", ())) != FEATURE_NAMES
        ):
            raise RagError(
                f"the stored reranker was trained on features v{stored.get('feature_version')} "
                f"{stored.get('features')}, this version computes v{FEATURE_VERSION}: retrain it"
            )
        return cls(stored["booster"], FEATURE_NAMES, FEATURE_VERSION, dict(stored.get("parameters", {})))


def fit(
    groups: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    rounds: int = DEFAULT_ROUNDS,
    parameters: dict[str, Any] | None = None,
) -> FeatureModel:
    """A lambdarank model fitted on per-question feature matrices and their graded labels (ints >= 0).

    Raises:
        RagError: no question has both a relevant and a non-relevant candidate.
    """
    import lightgbm

    kept = [(x, y) for x, y in zip(groups, labels, strict=True) if len(y) > 1 and y.max() > y.min()]
    if not kept:
        raise RagError("no question has both a relevant and a non-relevant candidate: nothing to learn from")
    params = {**DEFAULT_PARAMETERS, **(parameters or {})}
    relevant = sum(int((y > 0).sum()) for _, y in kept)
    # A leaf needs that many rows: on a small domain 20 would forbid any split isolating the relevant ones.
    params["min_data_in_leaf"] = min(params["min_data_in_leaf"], max(2, relevant // 4))
    top = int(max(y.max() for _, y in kept))
    if top > 30:  # lambdarank's default gains cover grades 0..30
        params["label_gain"] = [float(2**g - 1) for g in range(top + 1)]
    data = lightgbm.Dataset(
        np.vstack([x for x, _ in kept]),
        label=np.concatenate([y for _, y in kept]),
        group=[len(y) for _, y in kept],
        feature_name=list(FEATURE_NAMES),
        free_raw_data=True,
    )
    booster = lightgbm.train(params, data, num_boost_round=rounds)
    return FeatureModel(booster.model_to_string(), parameters={**params, "rounds": rounds}, _booster=booster)
