"""Tuning how a domain's documents are chunked (`rag-server tune --chunk-sizes`), gated like its retrieval settings.

1. Each chunk configuration (size, overlap in embedding-model tokens) other than the domain's current one is
   ingested from the data set's corpus into a scratch domain, `{D}--chunks-{size}-{overlap}`, deleted once it
   is scored (also on failure or Ctrl-C); the domain itself stands for its current chunking (column 0).
2. Every judged question is searched in each of them under the domain's current retrieval settings (hybrid
   route, `rerank_depth` chunks) and scored by document-level nDCG@10 (`evals.tune.score`).
3. Held out as the retrieval grid is: k folds (each fold scored by the chunking best on the other folds), or
   chosen on the split and scored on the eval split; then the same gate (`rag_server.rerank.promotion.judge`).
4. Promoted: a tuning row of the domain's current settings plus the winning `chunk_size`/`chunk_overlap`, and
   the domain re-chunked (its corpus re-ingested into it with those options; later ingests of the domain use
   them too). Refused: the row records every configuration's score; nothing is re-ingested.

It is its own decision, taken before the retrieval grid (which then runs on the domain as it is chunked): a
joint grid would cost a corpus ingest per retrieval configuration, and each choice is judged on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evals.tune import DEFAULT_FOLDS, Config, TuningRun, best, cross_validate, questions, score
from ingest.pipeline import Ingestion, IngestOptions, IngestSummary
from rag_server.domains import HnswOptions, delete_domain, get_domain
from rag_server.errors import ConfigError
from rag_server.rerank.promotion import DEFAULT_MARGIN, judge
from rag_server.retrieval import tuning as tunings
from rag_server.retrieval.analyzer import configured_analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.tuning import CHUNKING, TUNABLE, TuningRegistry, checked

_MAX_DOMAIN_NAME = 63


def chunk_grid(sizes: Sequence[int], overlaps: Sequence[int]) -> list[Config]:
    """Every (size, overlap) with the overlap smaller than the size, each checked as a setting.

    >>> [chunk_label(c) for c in chunk_grid([64, 200], [0, 100])]
    ['64/0', '200/0', '200/100']
    """
    configs = []
    for size in sizes:
        for overlap in overlaps:
            if overlap < size:
                try:
                    configs.append(checked({"chunk_size": size, "chunk_overlap": overlap}))
                except ConfigError as error:
                    raise ValueError(str(error)) from None
    if not configs:
        raise ValueError("no chunk configuration: every overlap is at least its chunk size")
    return configs


def chunk_label(config: Mapping[str, Any]) -> str:
    """A chunk configuration as size/overlap (tokens)."""
    return f"{config['chunk_size']}/{config['chunk_overlap']}"


def scratch_domain(domain: str, config: Mapping[str, Any]) -> str:
    """The throwaway domain a chunk configuration of `domain` is ingested into."""
    suffix = f"--chunks-{config['chunk_size']}-{config['chunk_overlap']}"
    return domain[: _MAX_DOMAIN_NAME - len(suffix)] + suffix


@dataclass
class ChunkTuningRun(TuningRun):
    """What the chunk tuning found, and the domain's re-ingest when it was promoted."""

    rechunked: IngestSummary | None = None


def ingestion(searcher: Searcher, config: Mapping[str, Any]) -> Ingestion:
    """An ingestion with the searcher's model and analysis, chunking as `config` says (whatever any tuning says)."""
    settings = searcher.settings
    return Ingestion(
        searcher.pool,
        searcher.embedder,
        configured_analyzer(settings),
        IngestOptions.from_settings(settings, **config),
        HnswOptions.from_settings(settings),
    )


def tune_chunks(
    searcher: Searcher,
    dataset: Path,
    domain: str,
    split: str,
    configs: Sequence[Config],
    folds: int = DEFAULT_FOLDS,
    margin: float = DEFAULT_MARGIN,
    eval_split: str | None = None,
    max_questions: int | None = None,
    progress: Callable[[int], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> ChunkTuningRun:
    """Score each chunking of the corpus, evaluate held out against the domain's, judge, record, re-chunk.

    Raises:
        ValueError: the data set has no corpus.jsonl, or no judged questions in the split.
    """
    started = time.perf_counter()
    say = say or (lambda message: None)
    if not (dataset / "corpus.jsonl").is_file():
        raise ValueError(
            f"no corpus.jsonl in {dataset}: chunk sizes can only be tuned where the corpus can be re-chunked"
        )
    with searcher.pool.connection() as conn:
        found = get_domain(conn, domain)
    current_tuning = searcher.tunings.for_domain(found)
    effective = current_tuning.apply(searcher.settings)
    retrieval: Config = {name: getattr(effective, name) for name in TUNABLE}
    current: Config = {name: getattr(effective, name) for name in CHUNKING}
    candidates = [current] + [c for c in configs if c != current]
    splits = [split] + [name for name in (eval_split,) if name is not None]
    asked = {name: questions(dataset, name, max_questions) for name in splits}
    if not asked[split][0]:
        raise ValueError(f"no judged questions in the {split} split of {dataset}")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in splits}
    ingested: list[dict[str, Any]] = []
    for config in candidates:
        target = domain if config is current else scratch_domain(domain, config)
        try:
            if target != domain:
                with searcher.pool.connection() as conn:
                    delete_domain(conn, target, missing_ok=True)  # a leftover of a run killed outright
                say(f"chunks {chunk_label(config)}: ingesting the corpus into {target}")
                summary = ingestion(searcher, config).run([dataset], target)
                ingested.append(
                    {
                        "label": chunk_label(config),
                        "chunks": summary.chunks_written,
                        "seconds": round(summary.seconds, 1),
                    }
                )
            for name in splits:
                queries, qrels = asked[name]
                columns[name].append(score(searcher, target, queries, qrels, [retrieval], progress)[:, 0])
        finally:
            if target != domain:
                with searcher.pool.connection() as conn:
                    delete_domain(conn, target, missing_ok=True)
    train_scores = np.column_stack(columns[split])
    final = best(train_scores)
    fold_reports: list[dict[str, Any]] = []
    if eval_split is None:
        tuned, fold_reports, _ = cross_validate(train_scores, folds)
        baseline = train_scores[:, 0].tolist()
        protocol = f"{folds}-fold cross-validation over the {split} questions"
        evaluated = len(train_scores)
    else:
        eval_scores = np.column_stack(columns[eval_split])
        baseline, tuned = eval_scores[:, 0].tolist(), eval_scores[:, final].tolist()
        protocol = f"chosen on {split}, evaluated on {eval_split}"
        evaluated = len(eval_scores)
    verdict = judge(tuned, baseline, margin)
    promoted = verdict.promoted and final != 0
    reason = verdict.reason if final != 0 else "the current chunking is the best on every training question"
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
        "kind": "chunking",
        "current": current_tuning.name,
        "current_settings": current,
        "retrieval_settings": retrieval,
        "chosen": chunk_label(candidates[final]),
        "chosen_settings": candidates[final],
        "configurations": [
            {"label": chunk_label(c), "settings": c, "train_ndcg@10": round(float(m), 4)}
            for c, m in zip(candidates, means, strict=True)
        ],
        "scratch_ingests": ingested,
        "dataset": str(dataset),
        "split": split,
        "eval_split": eval_split,
        "protocol": protocol,
        "route": "hybrid",
        "k": searcher.settings.rerank_depth,
        "training_questions": len(train_scores),
        "evaluated_questions": evaluated,
        "folds": [{**f, "chosen": chunk_label(candidates[f["chosen"]])} for f in fold_reports],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    # The promoted row is the domain's whole tuning: its retrieval settings are kept beside the new chunking.
    stored = {**current_tuning.overrides, **candidates[final]} if promoted else None
    # Stored before the re-chunk: a re-ingest cut short is finished by the domain's next ingest, which chunks
    # as its tuning says.
    with searcher.pool.connection() as conn, conn.transaction():
        tuning_id = tunings.save(conn, found.id, stored, decision)
    if isinstance(searcher.tunings, TuningRegistry):
        searcher.tunings.forget(found)
    rechunked = None
    if stored is not None:
        say(f"chunks {chunk_label(candidates[final])} promoted: re-chunking {domain}")
        rechunked = ingestion(searcher, candidates[final]).run([dataset], domain)
    return ChunkTuningRun(verdict, decision, stored, tuning_id, decision["folds"], rechunked)
