"""The promotion gate of a domain's router, the same as the rerankers' and the tunings': a router trained on
part of the domain's labeled questions replaces the current one (the domain's stored model, else the built-in
one) only if it routes the held-out part better, by a margin, with a paired test (rerank/promotion.judge).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag_server.embedding import Embedder
from rag_server.rerank.promotion import Verdict, judge
from rag_server.routing.features import Vocabulary
from rag_server.routing.model import LabeledQuestion, RouterModel, featurize

HELD_OUT_SHARE = 0.25
# Fewer held-out questions than this cannot show a significant gain: the candidate is refused.
MIN_HELD_OUT = 8
DEFAULT_MARGIN = 0.02
_SEED = 20261203


def split(rows: Sequence[LabeledQuestion]) -> tuple[list[LabeledQuestion], list[LabeledQuestion]]:
    """(train, held out): a fixed share of the questions, drawn with a fixed seed."""
    order = np.random.default_rng(_SEED).permutation(len(rows))
    cut = round(len(rows) * HELD_OUT_SHARE)
    held = {int(i) for i in order[:cut]}
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def correct(
    model: RouterModel, rows: Sequence[LabeledQuestion], embedder: Embedder, vocabulary: Vocabulary | None
) -> list[float]:
    """1 for each question the model routes to its label (its most probable route), else 0."""
    features, vectors = featurize(rows, embedder, vocabulary)
    return [
        float(model.classes[int(np.argmax(model.probabilities(f, v)))] == row.route)
        for f, v, row in zip(features, vectors, rows, strict=True)
    ]


def decide(
    candidate: RouterModel,
    current: RouterModel,
    held_out: Sequence[LabeledQuestion],
    embedder: Embedder,
    vocabulary: Vocabulary | None,
    margin: float = DEFAULT_MARGIN,
) -> Verdict | None:
    """The verdict on the held-out questions; None when they are too few to judge."""
    if len(held_out) < MIN_HELD_OUT:
        return None
    ours = correct(candidate, held_out, embedder, vocabulary)
    theirs = correct(current, held_out, embedder, vocabulary)
    return judge(ours, theirs, margin)
