"""Training a domain's feature reranker on a BEIR-format set, and the held-out eval that gates its promotion.

1. Every judged question of the split is searched (hybrid, `depth` chunks); each candidate is labeled with its
   document's grade (0 when unjudged or judged not relevant: the retrieved non-relevant ones are the hard
   negatives), and its features computed exactly as serving computes them.
2. Held out: k folds over the questions (each question scored by a model that never saw it), or, with an
   eval split, a model trained on the whole training split scored on the eval split's questions.
3. nDCG@10 at document level (a document ranks where its best chunk does) of the reranked order against the
   un-reranked hybrid order, question by question, goes to the gate (`rag_server.rerank.promotion.judge`).
4. Promoted: the model is refitted on every training question and stored; refused: the decision is stored
   without a model and the domain keeps what served it before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evals.beir import EvalQuery, load_qrels, load_queries
from evals.metrics import ndcg_at_k
from evals.retrieval import document_ranking
from rag_server.domains import get_domain
from rag_server.rerank import store
from rag_server.rerank.cross_encoder import KIND as CROSS_ENCODER_KIND
from rag_server.rerank.cross_encoder import (
    WEIGHTS,
    CrossEncoderReranker,
    FineTuning,
    blend,
    fine_tune,
    training_pairs,
)
from rag_server.rerank.feature import CandidateFeatures, order
from rag_server.rerank.features import FEATURE_NAMES, FEATURE_VERSION
from rag_server.rerank.model import KIND, FeatureModel, fit
from rag_server.rerank.promotion import DEFAULT_MARGIN, Verdict, judge
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import ScoredChunk, SearchRequest

DEFAULT_DEPTH = 50
DEFAULT_FOLDS = 5
_SEED = 13
_EMBED_BATCH = 64


@dataclass
class LabeledList:
    """One question's candidates (hybrid order), their features and their documents' grades."""

    query_id: str
    candidates: list[ScoredChunk]
    features: np.ndarray
    labels: np.ndarray
    qrels: dict[str, int]
    question: str = ""

    def ndcg(self, positions: Sequence[int] | None = None) -> float:
        """Document-level nDCG@10 of the candidates in `positions`' order (the hybrid order when None)."""
        ordered = self.candidates if positions is None else [self.candidates[i] for i in positions]
        return ndcg_at_k(document_ranking([chunk.external_id for chunk in ordered]), self.qrels, 10)


@dataclass
class TrainingRun:
    """What `train` found: the verdict, the figures for the record, and the model when promoted."""

    verdict: Verdict
    decision: dict[str, Any]
    model: FeatureModel | None
    reranker_id: int | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)


def collect(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    split: str,
    depth: int = DEFAULT_DEPTH,
    max_questions: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[LabeledList]:
    """Search every judged question of the split and label and featurize its candidates."""
    queries = load_queries(dataset, split)
    qrels = load_qrels(dataset, split)
    if max_questions is not None and len(queries) > max_questions:
        keep = np.sort(np.random.default_rng(_SEED).permutation(len(queries))[:max_questions])
        queries = [queries[i] for i in keep]
    with searcher.pool.connection() as conn:
        found = get_domain(conn, domain)
    features = CandidateFeatures(searcher.pool, found, searcher.keyword, searcher.embedder.embed)
    lists = []
    for start in range(0, len(queries), _EMBED_BATCH):
        batch: list[EvalQuery] = queries[start : start + _EMBED_BATCH]
        vectors = searcher.embedder.embed([query.text for query in batch])
        for query, vector in zip(batch, vectors, strict=True):
            request = SearchRequest(query.text, domain, "hybrid", depth)
            candidates = searcher.search(request, query_vector=vector).chunks
            judged = qrels[query.id]
            labels = np.array([max(judged.get(c.external_id, 0), 0) for c in candidates], dtype=np.int64)
            lists.append(
                LabeledList(
                    query.id, candidates, features(query.text, vector, candidates), labels, judged, query.text
                )
            )
            if progress:
                progress(1)
    return lists


def held_out_scores(
    eval_lists: Sequence[LabeledList], model: FeatureModel
) -> tuple[list[float], list[float]]:
    """Per question of `eval_lists`: (reranked nDCG@10, hybrid nDCG@10)."""
    reranked, baseline = [], []
    for item in eval_lists:
        reranked.append(item.ndcg(order(model.score(item.features))))
        baseline.append(item.ndcg())
    return reranked, baseline


def cross_validate(
    lists: Sequence[LabeledList], folds: int
) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    """k-fold over the questions: each question scored by a model trained on the other folds."""
    if folds < 2 or folds > len(lists):
        raise ValueError(f"cannot make {folds} folds of {len(lists)} questions")
    shuffled = np.random.default_rng(_SEED).permutation(len(lists))
    reranked: list[float] = []
    baseline: list[float] = []
    reports = []
    for number, held in enumerate(np.array_split(shuffled, folds)):
        held_set = set(held.tolist())
        train = [lists[i] for i in range(len(lists)) if i not in held_set]
        evaluated = [lists[i] for i in held]
        model = fit([x.features for x in train], [x.labels for x in train])
        ours, theirs = held_out_scores(evaluated, model)
        reranked += ours
        baseline += theirs
        reports.append(
            {
                "fold": number,
                "questions": len(evaluated),
                "baseline_ndcg@10": round(float(np.mean(theirs)), 4),
                "reranked_ndcg@10": round(float(np.mean(ours)), 4),
            }
        )
    return reranked, baseline, reports


def split_report(split: str, reranked: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Both mean nDCG@10 on a test split, reported beside a decision (never part of it)."""
    return {
        "split": split,
        "questions": len(baseline),
        "baseline_ndcg@10": round(float(np.mean(baseline)), 4),
        "reranked_ndcg@10": round(float(np.mean(reranked)), 4),
    }


def train(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    split: str,
    folds: int = DEFAULT_FOLDS,
    depth: int = DEFAULT_DEPTH,
    margin: float = DEFAULT_MARGIN,
    eval_split: str | None = None,
    test_split: str | None = None,
    max_questions: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainingRun:
    """Train, evaluate held out, judge, and record the decision (and the model when promoted)."""
    started = time.perf_counter()
    lists = collect(searcher, dataset, domain, split, depth, max_questions, progress)
    fold_reports: list[dict[str, Any]] = []
    if eval_split is None:
        reranked, baseline, fold_reports = cross_validate(lists, folds)
        protocol = f"{folds}-fold cross-validation over the {split} questions"
        evaluated = len(lists)
        final: FeatureModel | None = None
    else:
        eval_lists = collect(searcher, dataset, domain, eval_split, depth, max_questions, progress)
        final = fit([x.features for x in lists], [x.labels for x in lists])
        reranked, baseline = held_out_scores(eval_lists, final)
        protocol = f"trained on {split}, evaluated on {eval_split}"
        evaluated = len(eval_lists)
    verdict = judge(reranked, baseline, margin)
    if verdict.promoted and final is None:
        final = fit([x.features for x in lists], [x.labels for x in lists])
    decision: dict[str, Any] = {
        **verdict.as_dict(),
        "dataset": str(dataset),
        "split": split,
        "eval_split": eval_split,
        "protocol": protocol,
        "depth": depth,
        "training_questions": len(lists),
        "evaluated_questions": evaluated,
        "questions_with_a_relevant_candidate": sum(int(x.labels.max(initial=0) > 0) for x in lists),
        "candidates": sum(len(x.candidates) for x in lists),
        "relevant_candidates": sum(int((x.labels > 0).sum()) for x in lists),
        "features": list(FEATURE_NAMES),
        "feature_version": FEATURE_VERSION,
        "folds": fold_reports,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if test_split is not None:
        model = final or fit([x.features for x in lists], [x.labels for x in lists])
        test_lists = collect(searcher, dataset, domain, test_split, depth, None, progress)
        ours, theirs = held_out_scores(test_lists, model)
        decision["test"] = split_report(test_split, ours, theirs)
    decision["seconds"] = round(time.perf_counter() - started, 1)
    stored_model = final if verdict.promoted else None
    with searcher.pool.connection() as conn, conn.transaction():
        found = get_domain(conn, domain)
        reranker_id = store.save(
            conn, found.id, KIND, decision, stored_model.to_json() if stored_model is not None else None
        )
    return TrainingRun(verdict, decision, stored_model, reranker_id, fold_reports)


# The share of the labeled questions a cross-encoder is judged on (one held-out part: k fine-tunings would
# cost k times the CPU time of one).
DEFAULT_HELD_OUT = 0.25
# The share of the other questions that chooses the blend weight instead of fine-tuning the model.
WEIGHT_PART = 0.2


@dataclass(frozen=True)
class CrossEncoderTraining:
    """Where a cross-encoder comes from and where a promoted one is kept."""

    models_dir: Path
    pretrained: Path | None = None  # a local cross-encoder to judge as it is, instead of fine-tuning
    options: FineTuning = field(default_factory=FineTuning)
    held_out: float = DEFAULT_HELD_OUT


def held_out_part(
    lists: Sequence[LabeledList], fraction: float
) -> tuple[list[LabeledList], list[LabeledList]]:
    """(training, held-out) questions: a seeded random `fraction` is held out."""
    if not 0 < fraction < 1:
        raise ValueError("the held-out fraction must be between 0 and 1")
    shuffled = np.random.default_rng(_SEED).permutation(len(lists))
    cut = round(len(lists) * fraction)
    if cut < 2 or cut > len(lists) - 2:
        raise ValueError(f"{len(lists)} questions are too few to hold {fraction:.0%} out")
    held = set(shuffled[:cut].tolist())
    return [x for i, x in enumerate(lists) if i not in held], [x for i, x in enumerate(lists) if i in held]


def cross_encoder_scores(
    eval_lists: Sequence[LabeledList],
    reranker: CrossEncoderReranker,
    progress: Callable[[int], None] | None,
    weights: Sequence[float] | None = None,
) -> tuple[dict[float, list[float]], list[float]]:
    """Per question of `eval_lists`: ({weight: reranked nDCG@10}, hybrid nDCG@10), the model's scores blended
    with the fused order at each weight (the reranker's own weight when none are given)."""
    weights = [reranker.weight] if weights is None else list(weights)
    reranked: dict[float, list[float]] = {weight: [] for weight in weights}
    baseline = []
    for item in eval_lists:
        scores = reranker.scores(item.question, item.candidates)
        for weight in weights:
            reranked[weight].append(item.ndcg(order(blend(scores, weight))))
        baseline.append(item.ndcg())
        if progress:
            progress(1)
    return reranked, baseline


def train_cross_encoder(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    split: str,
    training: CrossEncoderTraining,
    depth: int = DEFAULT_DEPTH,
    margin: float = DEFAULT_MARGIN,
    eval_split: str | None = None,
    test_split: str | None = None,
    max_questions: int | None = None,
    progress: Callable[[int], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> TrainingRun:
    """Fine-tune (or take) a cross-encoder, judge it on held-out questions, record the decision.

    Promoted, the model's folder stays under `training.models_dir` and the stored model names it; refused, a
    fine-tuned folder is deleted.
    """
    import shutil

    from rag_server.embedding import packaged_model_dir

    started = time.perf_counter()
    lists = collect(searcher, dataset, domain, split, depth, max_questions, progress)
    if eval_split is None:
        train_lists, eval_lists = held_out_part(lists, training.held_out)
        protocol = f"{split} questions, {training.held_out:.0%} held out"
    else:
        train_lists = lists
        eval_lists = collect(searcher, dataset, domain, eval_split, depth, max_questions, progress)
        protocol = f"{split} questions, evaluated on {eval_split}"
    # The blend weight is chosen on a part of the training questions the model does not fine-tune on.
    fit_lists, weight_lists = held_out_part(train_lists, WEIGHT_PART)
    protocol = f"fine-tuned on {len(fit_lists)} {protocol}; blend weight chosen on {len(weight_lists)} others"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    pairs = [
        pair
        for item in fit_lists
        for pair in training_pairs(item.question, item.candidates, item.labels.tolist())
    ]
    if training.pretrained is not None:
        path, base = training.pretrained, str(training.pretrained)
        protocol = f"pretrained {training.pretrained}, evaluated on {len(eval_lists)} held-out questions"
    else:
        base = "packaged all-MiniLM-L6-v2"
        path = fine_tune(
            pairs,
            packaged_model_dir(),
            training.models_dir / f"{domain}-{stamp}",
            training.options,
            announce=announce,
        )
    reranker = CrossEncoderReranker(path, max_length=training.options.max_length)
    by_weight, _ = cross_encoder_scores(weight_lists, reranker, progress, WEIGHTS)
    weight_ndcg = {weight: float(np.mean(scores)) for weight, scores in by_weight.items()}
    reranker.weight = max(WEIGHTS, key=lambda weight: (weight_ndcg[weight], -weight))
    reranked_by_weight, baseline = cross_encoder_scores(eval_lists, reranker, progress)
    reranked = reranked_by_weight[reranker.weight]
    verdict = judge(reranked, baseline, margin)
    decision: dict[str, Any] = {
        **verdict.as_dict(),
        "dataset": str(dataset),
        "split": split,
        "eval_split": eval_split,
        "protocol": protocol,
        "depth": depth,
        "base": base,
        "training_questions": len(fit_lists),
        "training_pairs": len(pairs) if training.pretrained is None else 0,
        "weight": reranker.weight,
        "weight_questions": len(weight_lists),
        "weight_ndcg@10": {str(weight): round(ndcg, 4) for weight, ndcg in weight_ndcg.items()},
        "evaluated_questions": len(eval_lists),
        "fine_tuning": asdict(training.options),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if test_split is not None:
        test_lists = collect(searcher, dataset, domain, test_split, depth, None, progress)
        ours, theirs = cross_encoder_scores(test_lists, reranker, progress)
        decision["test"] = split_report(test_split, ours[reranker.weight], theirs)
    decision["seconds"] = round(time.perf_counter() - started, 1)
    model = (
        {"path": str(path), "max_length": training.options.max_length, "weight": reranker.weight}
        if verdict.promoted
        else None
    )
    if not verdict.promoted and training.pretrained is None:
        shutil.rmtree(path, ignore_errors=True)
    with searcher.pool.connection() as conn, conn.transaction():
        found = get_domain(conn, domain)
        reranker_id = store.save(conn, found.id, CROSS_ENCODER_KIND, decision, model)
    return TrainingRun(verdict, decision, None, reranker_id)


def transfer(
    searcher: Searcher,
    train_dataset: Path,
    train_split: str,
    eval_dataset: Path,
    eval_split: str,
    domain: str,
    depth: int = DEFAULT_DEPTH,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """A feature model fitted on one set's questions (synthetic ones, say) and scored on another's (the
    domain's real judgements) against the hybrid order: whether the labels transfer. A report; nothing is
    stored and nothing promoted ("promoted" says what the gate would have said)."""
    started = time.perf_counter()
    train_lists = collect(searcher, train_dataset, domain, train_split, depth, None, progress)
    eval_lists = collect(searcher, eval_dataset, domain, eval_split, depth, None, progress)
    model = fit([x.features for x in train_lists], [x.labels for x in train_lists])
    reranked, baseline = held_out_scores(eval_lists, model)
    return {
        **judge(reranked, baseline).as_dict(),
        "trained_on": f"{train_dataset} ({train_split})",
        "evaluated_on": f"{eval_dataset} ({eval_split})",
        "training_questions": len(train_lists),
        "evaluated_questions": len(eval_lists),
        "depth": depth,
        "seconds": round(time.perf_counter() - started, 1),
    }
