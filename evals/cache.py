"""The semantic cache's calibration: the cosine above which a new question may replay a stored answer.

A set of pairs (`paraphrases.jsonl`: a stored question, a question asked later, whether one answer serves
both, and the kind of pair) is embedded with the domain's model. A pair is *served* when the guard
(`rag_server/pipeline/paraphrase.py`) finds nothing that tells the two apart and their cosine reaches the
threshold. The threshold is the highest cosine of a negative pair that the guard lets through, plus a margin:
zero false hits on the pairs it is fitted on, since a wrong cached answer is worse than a miss.

The packaged threshold is fitted on every pair. To say what such a fit is worth on pairs it never saw, the
pairs of each kind also alternate between a calibration half and a held-out half: a threshold fitted on the
first is scored on the second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_server.embedding import Embedder
from rag_server.errors import RagError
from rag_server.pipeline.paraphrase import differences, specifics

PAIRS_FILE = Path(__file__).parent / "sets" / "demo" / "paraphrases.jsonl"


@dataclass(frozen=True)
class Pair:
    """A stored question, a question asked later, and whether the stored answer serves it."""

    id: str
    cached: str
    asked: str
    same: bool
    kind: str


@dataclass(frozen=True)
class Scored:
    """A pair, the cosine of its two questions, and what the guard found that tells them apart."""

    pair: Pair
    similarity: float
    differences: tuple[str, ...]
    half: str

    def served(self, threshold: float, guard: bool = True) -> bool:
        return self.similarity >= threshold and not (guard and self.differences)


def load_pairs(path: Path) -> list[Pair]:
    """The pairs of a JSON-lines file: {"id", "cached", "asked", "same", "kind"} each."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(Pair(row["id"], row["cached"], row["asked"], bool(row["same"]), row["kind"]))
        except (ValueError, KeyError) as error:
            raise RagError(f"{path}:{number}: not a pair ({error})") from None
    if not any(p.same for p in pairs) or all(p.same for p in pairs):
        raise RagError(f"{path}: needs both positive and negative pairs")
    return pairs


def halves(pairs: Sequence[Pair]) -> list[str]:
    """`calibration` or `heldout` for each pair: the pairs of each kind alternate, in file order."""
    seen: dict[str, int] = {}
    names = []
    for pair in pairs:
        seen[pair.kind] = seen.get(pair.kind, 0) + 1
        names.append("calibration" if seen[pair.kind] % 2 else "heldout")
    return names


def score_pairs(embedder: Embedder, pairs: Sequence[Pair]) -> list[Scored]:
    """Each pair's cosine (the embedder's vectors are unit length) and the guard's differences."""
    cached = embedder.embed([p.cached for p in pairs])
    asked = embedder.embed([p.asked for p in pairs])
    similarities = np.sum(np.asarray(cached) * np.asarray(asked), axis=1)
    return [
        Scored(
            pair,
            round(float(similarity), 4),
            tuple(differences(specifics(pair.cached), specifics(pair.asked))),
            half,
        )
        for pair, similarity, half in zip(pairs, similarities, halves(pairs), strict=True)
    ]


def fit_threshold(scored: Sequence[Scored], margin: float, guard: bool = True) -> float:
    """The highest cosine of a negative pair that would be served but for the threshold, plus `margin`,
    rounded up to 0.01 (at most 1.0): no false hit on these pairs."""
    negatives = [s.similarity for s in scored if not s.pair.same and not (guard and s.differences)]
    if not negatives:
        raise RagError("no negative pair passes the guard: nothing to fit the threshold on")
    return min(1.0, math.ceil((max(negatives) + margin) * 100 - 1e-9) / 100)


def measure(scored: Sequence[Scored], threshold: float, guard: bool = True) -> dict[str, Any]:
    """Hits (served pairs), their precision, the recall of positive pairs, and what the guard refused."""
    served = [s for s in scored if s.served(threshold, guard)]
    true_hits = sum(s.pair.same for s in served)
    positives = [s for s in scored if s.pair.same]
    negatives = [s for s in scored if not s.pair.same]
    return {
        "pairs": len(scored),
        "positives": len(positives),
        "negatives": len(negatives),
        "hits": len(served),
        "false_hits": len(served) - true_hits,
        "hit_precision": round(true_hits / len(served), 4) if served else None,
        "hit_recall": round(true_hits / len(positives), 4) if positives else None,
        "false_hit_ids": [s.pair.id for s in served if not s.pair.same],
        "guard_refused_negatives": sum(bool(s.differences) for s in negatives),
        "guard_refused_positives": sum(bool(s.differences) for s in positives),
    }


def run_cache_eval(embedder: Embedder, pairs: Sequence[Pair], margin: float) -> dict[str, Any]:
    """The threshold fitted on every pair (what is packaged), and the same fit made on the calibration half
    only and scored on the held-out half: what the procedure and its margin are worth on unseen pairs. For
    comparison, the threshold the similarity alone would need (no guard)."""
    scored = score_pairs(embedder, pairs)
    calibration = [s for s in scored if s.half == "calibration"]
    heldout = [s for s in scored if s.half == "heldout"]
    split = fit_threshold(calibration, margin)
    threshold = fit_threshold(scored, margin)
    unguarded = fit_threshold(scored, margin, guard=False)
    return {
        "model": embedder.name,
        "margin": margin,
        "threshold": threshold,
        "all": measure(scored, threshold),
        "split": {
            "threshold": split,
            "calibration": measure(calibration, split),
            "heldout": measure(heldout, split),
        },
        "without_guard": {"threshold": unguarded, "all": measure(scored, unguarded, guard=False)},
        "per_pair": [
            {
                "id": s.pair.id,
                "kind": s.pair.kind,
                "same": s.pair.same,
                "half": s.half,
                "similarity": s.similarity,
                "differences": list(s.differences),
                "served": s.served(threshold),
            }
            for s in scored
        ],
    }


def threshold_file(report: dict[str, Any], pairs_path: Path) -> dict[str, Any]:
    """What `rag_server/pipeline/semantic_cache.json` holds: the threshold, its model and how it was fitted."""
    keys = ("pairs", "hits", "false_hits", "hit_precision", "hit_recall")
    split = report["split"]
    return {
        "threshold": report["threshold"],
        "model": report["model"],
        "fitted_on": f"{pairs_path.name}, all {report['all']['pairs']} pairs, margin {report['margin']}",
        "measured": {key: report["all"][key] for key in keys},
        "split": {
            "threshold": split["threshold"],
            **{half: {key: split[half][key] for key in keys} for half in ("calibration", "heldout")},
        },
    }
