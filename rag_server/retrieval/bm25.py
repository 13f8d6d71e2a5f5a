"""An in-process BM25 index: exactly rank-bm25's BM25Okapi (0.2.2), as a sparse matrix of precomputed weights.

BM25Okapi scores a document d for query terms q1..qn as

    score(d) = sum_i idf(qi) * tf(qi, d) * (k1 + 1) / (tf(qi, d) + k1 * (1 - b + b * |d| / avgdl))

with idf(t) = log(N - df(t) + 0.5) - log(df(t) + 0.5), where a negative idf (a term in more than half of
the documents) is replaced by epsilon * (the mean idf over the whole vocabulary, taken before that
replacement). Repeated query terms count as often as they are repeated; unknown terms count 0.

Every (term, document) weight in that sum depends on the term and the document only, so the index stores
them precomputed in a CSC matrix (documents x terms): a query is the sum of a few sparse columns, costing
time in the postings of its terms instead of in the size of the corpus.

Results: the documents that contain at least one query term, ranked by score (then id). BM25Okapi's
scores are positive for such documents except in degenerate corpora (tiny ones where the mean idf is not
positive, or a term in exactly half of the documents, whose idf is 0), and there a matching document keeps
its zero or negative score and its place among the matches, where rank-bm25 would rank it below the
non-matching documents' 0. Documents matching no query term are never returned.

An index is immutable once built: it can be searched from several threads at once.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain

import numpy as np
import scipy.sparse as sp

# A query whose terms have fewer postings than size / _SORT_RATIO is summed by sorting its postings;
# larger ones with a dense accumulator over the whole corpus, which is then cheaper.
_SORT_RATIO = 16
# Top-k over more than 4 * k * _BLOCK candidates first bounds the k-th score by blocks' maxima.
_BLOCK = 64


class BM25Index:
    """BM25Okapi over documents given as term lists, each with an integer id.

    `ids`: one distinct integer per document (e.g. chunk ids); results are given by id.
    `term_lists`: the analyzed terms of each document, in the order of `ids`.
    `k1`, `b`, `epsilon`: BM25Okapi's parameters, defaults as in rank-bm25.
    `dtype`: of the stored weights; float32 halves their memory at a relative error of about 1e-7.
    """

    def __init__(
        self,
        ids: Sequence[int] | np.ndarray,
        term_lists: Sequence[Sequence[str]],
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        dtype: type[np.floating] = np.float64,
    ) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b, self.epsilon = float(k1), float(b), float(epsilon)
        self._ids = np.asarray(ids, dtype=np.int64)
        if self._ids.ndim != 1:
            raise ValueError(f"ids must be one-dimensional, got shape {self._ids.shape}")
        n = len(self._ids)
        if len(term_lists) != n:
            raise ValueError(f"{n} ids but {len(term_lists)} term lists")
        sorted_ids = np.sort(self._ids)
        duplicated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
        if len(duplicated):
            raise ValueError(f"duplicate document id {int(duplicated[0])}")
        del sorted_ids, duplicated

        # Term -> column, numbered in order of first appearance, every token mapped at C speed.
        lengths = np.fromiter(map(len, term_lists), dtype=np.int64, count=n)
        total = int(lengths.sum())
        index_dtype = np.int32 if max(total, n) < 2**31 else np.int64
        vocabulary: defaultdict[str, int] = defaultdict()
        vocabulary.default_factory = vocabulary.__len__
        columns = np.fromiter(
            map(vocabulary.__getitem__, chain.from_iterable(term_lists)), dtype=index_dtype, count=total
        )
        vocabulary.default_factory = None  # from now on a plain mapping: a miss is a miss
        self._vocabulary: dict[str, int] = vocabulary
        n_terms = len(vocabulary)

        # Term frequencies: one row per document, duplicates summed (each row's columns sorted) by scipy;
        # counted in float32, exact far beyond any document's length.
        indptr = np.zeros(n + 1, dtype=index_dtype)
        np.cumsum(lengths, out=indptr[1:])
        tf = sp.csr_array((np.ones(total, dtype=np.float32), columns, indptr), shape=(n, n_terms))
        del columns, indptr
        tf.sum_duplicates()
        tf.data = tf.data.astype(np.float64)

        # idf, exactly as BM25Okapi._calc_idf.
        df = np.bincount(tf.indices, minlength=n_terms).astype(np.float64)
        idf = np.log(n - df + 0.5) - np.log(df + 0.5)
        self.average_idf = float(idf.mean()) if n_terms else 0.0
        idf[idf < 0] = self.epsilon * self.average_idf
        self._idf = idf
        self.avgdl = total / n if n else 0.0

        # Weights, as BM25Okapi.get_scores computes each term's share.
        if tf.nnz:
            norm = self.k1 * (1 - self.b + self.b * lengths / self.avgdl)
            norm_per_entry = np.repeat(norm, np.diff(tf.indptr))
            freq = tf.data
            tf.data = idf[tf.indices] * (freq * (self.k1 + 1) / (freq + norm_per_entry))
            del norm_per_entry, freq
        weights = tf.tocsc()
        weights.data = weights.data.astype(dtype, copy=False)
        self._weights = weights
        self._vocabulary_nbytes = sys.getsizeof(vocabulary) + sum(map(sys.getsizeof, vocabulary))

    # --- properties ---

    @property
    def size(self) -> int:
        """The number of documents."""
        return len(self._ids)

    @property
    def vocabulary_size(self) -> int:
        """The number of distinct terms."""
        return len(self._vocabulary)

    @property
    def nbytes(self) -> int:
        """The index's memory footprint in bytes: its arrays, plus the vocabulary's dict and strings."""
        arrays = (
            self._weights.data,
            self._weights.indices,
            self._weights.indptr,
            self._ids,
            self._idf,
        )
        return sum(array.nbytes for array in arrays) + self._vocabulary_nbytes

    @property
    def max_idf(self) -> float:
        """The highest idf (that of the rarest term); 0 for an empty index."""
        return float(self._idf.max()) if self._idf.size else 0.0

    @property
    def ids(self) -> np.ndarray:
        """The documents' ids, in build order (the order of `get_scores` and of boolean `allowed` masks)."""
        return self._ids

    @property
    def matrix(self) -> sp.csc_array:
        """The weights: documents (build order) x terms (see `column`)."""
        return self._weights

    def column(self, term: str) -> int | None:
        """The matrix column of `term`, None if no document has it."""
        return self._vocabulary.get(term)

    def idf(self, term: str) -> float:
        """The term's idf as used in scores (after the epsilon floor); 0 for an unknown term."""
        column = self._vocabulary.get(term)
        return 0.0 if column is None else float(self._idf[column])

    def __repr__(self) -> str:
        return (
            f"BM25Index(size={self.size}, vocabulary_size={self.vocabulary_size}, "
            f"nnz={self._weights.nnz}, nbytes={self.nbytes})"
        )

    # --- scoring ---

    def get_scores(self, query_terms: Iterable[str]) -> np.ndarray:
        """Every document's score, in build order: what rank-bm25's ``get_scores`` gives."""
        totals = np.zeros(self.size, dtype=np.float64)
        for _, rows, weights in self._postings(query_terms):
            np.add.at(totals, rows, weights)
        return totals

    def search(
        self,
        query_terms: Iterable[str] | Mapping[str, float],
        k: int,
        allowed: np.ndarray | Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """The top `k` documents as (id, score), by score descending, then id ascending.

        Only documents containing at least one query term are candidates (see the module docstring).
        `allowed`, when given, restricts the candidates: either a boolean mask over the documents in
        build order (see `ids`), or an array of allowed ids (ids not in the index are ignored).
        """
        if k <= 0 or self.size == 0:
            return []
        postings = self._postings(query_terms)
        if not postings:
            return []
        candidates, scores = self._sum(postings)
        if allowed is not None:
            keep = self._allowed_positions(allowed, candidates)
            candidates, scores = candidates[keep], scores[keep]
        selected = _top_candidates(scores, k)
        ids, scores = self._ids[candidates[selected]], scores[selected]
        order = np.lexsort((ids, -scores))[:k]
        return list(zip(ids[order].tolist(), scores[order].tolist(), strict=True))

    def _postings(
        self, query_terms: Iterable[str] | Mapping[str, float]
    ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(column, rows, weights) of each distinct known query term, in order of first appearance;
        a term repeated r times has its weights times r (rank-bm25 adds them r times). A mapping gives
        each term its own factor instead (expanded queries)."""
        counts: dict[str, float] = {}
        if isinstance(query_terms, Mapping):
            counts = {term: float(factor) for term, factor in query_terms.items() if factor > 0}
        else:
            for term in query_terms:
                counts[term] = counts.get(term, 0) + 1
        indptr, indices, data = self._weights.indptr, self._weights.indices, self._weights.data
        postings = []
        for term, count in counts.items():
            column = self._vocabulary.get(term)
            if column is None:
                continue
            start, end = indptr[column], indptr[column + 1]
            weights = data[start:end].astype(np.float64, copy=False)
            postings.append((column, indices[start:end], weights * count if count != 1 else weights))
        return postings

    def _sum(self, postings: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """The rows (documents) in any of the postings, ascending, and their summed weights."""
        if len(postings) == 1:
            return postings[0][1], postings[0][2]  # tocsc leaves each column's rows sorted and distinct
        n_postings = sum(len(rows) for _, rows, _ in postings)
        if n_postings * _SORT_RATIO < self.size:
            rows = np.concatenate([rows for _, rows, _ in postings])
            weights = np.concatenate([weights for _, _, weights in postings])
            order = np.argsort(rows, kind="stable")
            rows, weights = rows[order], weights[order]
            starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
            return rows[starts], np.add.reduceat(weights, starts)
        totals = np.zeros(self.size, dtype=np.float64)
        for _, rows, weights in postings:
            np.add.at(totals, rows, weights)
        if all(self._idf[column] > 0 for column, _, _ in postings):
            # Every weight is then positive: the documents with a positive total are the matching ones.
            candidates = np.flatnonzero(totals > 0)
        else:
            hit = np.zeros(self.size, dtype=bool)
            for _, rows, _ in postings:
                hit[rows] = True
            candidates = np.flatnonzero(hit)
        return candidates, totals[candidates]

    def _allowed_positions(self, allowed: np.ndarray | Sequence[int], candidates: np.ndarray) -> np.ndarray:
        """A boolean over `candidates` (positions): True where `allowed` lets the document through."""
        allowed = np.asarray(allowed)
        if allowed.dtype == np.bool_:
            if allowed.shape != (self.size,):
                raise ValueError(f"a boolean allowed mask needs shape ({self.size},), got {allowed.shape}")
            return allowed[candidates]
        if allowed.size == 0:
            return np.zeros(len(candidates), dtype=bool)
        if not np.issubdtype(allowed.dtype, np.integer):
            raise TypeError(f"allowed must be a boolean mask or an array of ids, not of {allowed.dtype}")
        return np.isin(self._ids[candidates], allowed)


def _top_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions in `scores` of a superset of its top k: all scores >= the k-th highest, ties included,
    so that the caller can settle ties by id.

    On long arrays the threshold comes from blocks of _BLOCK scores: the k-th highest block maximum is
    at most the k-th highest score (the k highest block maxima are k distinct scores), and it is found by
    partitioning only len(scores) / _BLOCK maxima.
    """
    n = len(scores)
    if k >= n:
        return np.arange(n)
    blocks = n // _BLOCK
    if blocks >= 4 * k:
        maxima = scores[: blocks * _BLOCK].reshape(blocks, _BLOCK).max(axis=1)
        threshold = maxima[np.argpartition(maxima, blocks - k)[blocks - k :]].min()
    else:
        threshold = scores[np.argpartition(scores, n - k)[n - k :]].min()
    return np.flatnonzero(scores >= threshold)
