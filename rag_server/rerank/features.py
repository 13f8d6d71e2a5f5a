"""The features of a (question, candidate chunk) pair that the feature reranker scores: one matrix per question.

Every feature is computed from what serving already has in hand: the candidates (text, title, ordinal and
the route's score), the question's embedding, the chunks' stored embeddings (one query by id) and the
domain's in-process BM25 index (the keyword route's, kept current by its generation). No feature depends on
the candidates' absolute position in the corpus, so a model trained on one depth serves another.

>>> [feature.name for feature in FEATURES][:3]
['input_score', 'input_rank', 'dense_cosine']
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.bm25 import BM25Index
from rag_server.retrieval.types import ScoredChunk


@dataclass(frozen=True)
class Feature:
    """One column of the feature matrix: its name (stored with every model) and what it measures."""

    name: str
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("input_score", "the route's (fused) score, divided by the best score of the list"),
    Feature("input_rank", "1-based rank in the order the route returned"),
    Feature("dense_cosine", "cosine of the question's and the chunk's embeddings"),
    Feature("dense_gap", "dense_cosine minus the best dense_cosine of the list"),
    Feature("bm25", "BM25Okapi score of the chunk for the question's terms (the domain's keyword index)"),
    Feature("bm25_ratio", "bm25 divided by the best bm25 of the list (0 when none matches)"),
    Feature("term_coverage", "idf-weighted share of the question's distinct known terms found in the chunk"),
    Feature(
        "title_coverage", "idf-weighted share of the question's distinct terms in the title and headings"
    ),
    Feature(
        "exact_match",
        "share of the question's quoted phrases and identifiers (tokens with a digit or an inner dash) found "
        "verbatim, case-folded, in the chunk's title or text; 0 when the question has none",
    ),
    Feature("ordinal", "the chunk's position in its document (0 = first)"),
    Feature("length", "the chunk's length in words"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
# Bumped when a feature's definition changes: a stored model of another version is not served.
FEATURE_VERSION = 1

_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]{2,})[\"“”«»]")
_TOKEN = re.compile(r"[^\s\"'“”«»()\[\]{},;:!?]+")
_DIGIT = re.compile(r"\d")
_ASCENDING: weakref.WeakKeyDictionary[BM25Index, bool] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class QuestionTerms:
    """What the question contributes to every candidate's features, computed once per question."""

    terms: tuple[str, ...]  # the distinct analyzed terms the index knows, in order of first appearance
    counts: np.ndarray  # how often each appears in the question (BM25 counts repeats)
    idf: np.ndarray  # each term's idf in the index, floored at 0
    phrases: tuple[str, ...]  # quoted phrases and identifiers, case-folded


def question_terms(question: str, analyzer: Analyzer, index: BM25Index) -> QuestionTerms:
    """The question's known terms (with counts and idf) and its exact-match phrases."""
    counts: dict[str, int] = {}
    for term in analyzer.terms(question):
        if index.column(term) is not None:
            counts[term] = counts.get(term, 0) + 1
    terms = tuple(counts)
    return QuestionTerms(
        terms,
        np.array([counts[term] for term in terms], dtype=np.float64),
        np.array([max(index.idf(term), 0.0) for term in terms], dtype=np.float64),
        exact_phrases(question),
    )


def exact_phrases(question: str) -> tuple[str, ...]:
    """The question's quoted phrases and identifiers (tokens with a digit or an inner dash), case-folded.

    >>> exact_phrases('Why does "sync queue" fail with ERR-4012 on v2.3?')
    ('sync queue', 'err-4012', 'v2.3')
    """
    found = [match.strip().casefold() for match in _QUOTED.findall(question)]
    for token in _TOKEN.findall(question):
        token = token.strip(".-_")
        if len(token) > 1 and (_DIGIT.search(token) or "-" in token):
            found.append(token.casefold())
    return tuple(dict.fromkeys(phrase for phrase in found if phrase))


def chunk_vectors(conn: psycopg.Connection[Any], chunk_ids: Sequence[int], dimension: int) -> np.ndarray:
    """The stored embeddings of the chunks, in the order of `chunk_ids` (zeros for a chunk deleted since)."""
    vectors = np.zeros((len(chunk_ids), dimension), dtype=np.float32)
    if not chunk_ids:
        return vectors
    position = {chunk_id: i for i, chunk_id in enumerate(chunk_ids)}
    # Binary: pgvector's loader reads each vector as one buffer, where text would parse 384 numbers.
    with conn.cursor(binary=True) as cursor:
        cursor.execute("SELECT id, embedding FROM chunks WHERE id = ANY(%s)", (list(chunk_ids),))
        for chunk_id, vector in cursor:
            vectors[position[chunk_id]] = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
    return vectors


def compute_features(
    question: QuestionTerms,
    question_vector: np.ndarray,
    candidates: Sequence[ScoredChunk],
    vectors: np.ndarray,
    index: BM25Index,
    analyzer: Analyzer,
) -> np.ndarray:
    """The feature matrix (candidates x FEATURES, float64) of one question's candidates, in their order.

    `vectors` are the candidates' embeddings (see `chunk_vectors`), `index` the domain's BM25 index.
    """
    n = len(candidates)
    out = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return out
    scores = np.array([chunk.score for chunk in candidates], dtype=np.float64)
    best = np.abs(scores).max()
    out[:, 0] = scores / best if best > 0 else 0.0
    out[:, 1] = np.arange(1, n + 1)

    cosines = _cosines(question_vector, vectors)
    out[:, 2] = cosines
    out[:, 3] = cosines - cosines.max()

    weights = _term_weights(index, question.terms, [chunk.chunk_id for chunk in candidates])
    bm25 = weights @ question.counts if question.terms else np.zeros(n)
    out[:, 4] = bm25
    top = bm25.max()
    out[:, 5] = bm25 / top if top > 0 else 0.0
    total_idf = question.idf.sum()
    if total_idf > 0:
        out[:, 6] = (weights != 0) @ question.idf / total_idf
        known = dict(zip(question.terms, question.idf.tolist(), strict=True))
        for i, chunk in enumerate(candidates):
            heading = _title_terms(analyzer, chunk.title or "", chunk.heading_path)
            out[i, 7] = sum(weight for term, weight in known.items() if term in heading) / total_idf

    for i, chunk in enumerate(candidates):
        if question.phrases:
            text = f"{chunk.title or ''}\n{chunk.text}".casefold()
            out[i, 8] = sum(phrase in text for phrase in question.phrases) / len(question.phrases)
        out[i, 9] = chunk.ordinal
        out[i, 10] = chunk.text.count(" ") + 1
    return out


def _cosines(question_vector: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    q = np.asarray(question_vector, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(q) or 1.0)
    dots = vectors.astype(np.float64) @ q
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _term_weights(index: BM25Index, terms: Sequence[str], chunk_ids: Sequence[int]) -> np.ndarray:
    """The BM25 weights (candidates x terms) of the question's terms in the candidates; 0 where absent."""
    weights = np.zeros((len(chunk_ids), len(terms)), dtype=np.float64)
    if not terms or not chunk_ids or index.size == 0:
        return weights
    positions, found = _positions(index, chunk_ids)
    if not found.any():
        return weights
    columns = [index.column(term) for term in terms]
    block = index.matrix[:, columns].tocsr()[positions[found]].toarray()
    weights[found] = block
    return weights


def _positions(index: BM25Index, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' rows in the index (ids built in ascending order), and which of them it holds."""
    ids = index.ids
    wanted = np.asarray(chunk_ids, dtype=np.int64)
    if _ascending(index):
        positions = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    else:
        lookup = {int(chunk_id): i for i, chunk_id in enumerate(ids)}
        positions = np.array([lookup.get(int(chunk_id), 0) for chunk_id in wanted], dtype=np.int64)
    return positions, ids[positions] == wanted


def _ascending(index: BM25Index) -> bool:
    """Whether the index's ids are sorted (the keyword route builds them `ORDER BY id`); checked once per index."""
    cached = _ASCENDING.get(index)
    if cached is None:
        ids = index.ids
        cached = _ASCENDING[index] = bool(len(ids) < 2 or (ids[1:] > ids[:-1]).all())
    return cached


@functools.lru_cache(maxsize=65536)
def _title_terms(analyzer: Analyzer, title: str, heading_path: tuple[str, ...]) -> frozenset[str]:
    return frozenset(analyzer.terms(" ".join((title, *heading_path))))
