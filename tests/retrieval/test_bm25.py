"""The in-process BM25 index: equal to rank-bm25's BM25Okapi, plus top-k, filtering and edge cases."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag_server.retrieval import bm25 as bm25_module
from rag_server.retrieval.bm25 import BM25Index

N_DOCS = 400
COMMON = ["sync", "error", "server"]  # each in well over half of the documents: negative idf -> epsilon
HALF = "halfterm"  # in exactly half of them: idf exactly 0


def _vocabulary() -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "qu", "sa", "do"]
    rng = random.Random(7)
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(3000)})
    identifiers = [f"err-{4000 + i}" for i in range(40)] + [f"v2.{i}.1" for i in range(20)] + ["user_id"]
    return words + identifiers


def _corpus() -> tuple[list[int], list[list[str]], list[str]]:
    """Deterministic pseudo-chunks: Zipf-like term frequencies, lengths 5-160, shuffled sparse ids."""
    rng = random.Random(42)
    vocabulary = _vocabulary()
    rng.shuffle(vocabulary)
    zipf = [1.0 / (rank + 1) ** 1.07 for rank in range(len(vocabulary))]
    docs: list[list[str]] = []
    for i in range(N_DOCS - 1):  # and an empty one
        doc = rng.choices(vocabulary, weights=zipf, k=rng.randint(5, 160))
        doc += [term for term in COMMON if rng.random() < 0.75]
        if i % 2 == 0:
            doc += [HALF] * rng.randint(1, 3)
        rng.shuffle(doc)
        docs.append(doc)
    docs.append([])
    ids = rng.sample(range(1, 10 * len(docs)), len(docs))
    return ids, docs, vocabulary


IDS, DOCS, VOCABULARY = _corpus()
REFERENCE = BM25Okapi(DOCS)
INDEX = BM25Index(IDS, DOCS)


def _queries() -> list[list[str]]:
    rng = random.Random(3)
    frequent = VOCABULARY[:30]
    queries = [
        [COMMON[0]],
        COMMON,
        [HALF, VOCABULARY[0]],
        [VOCABULARY[0], VOCABULARY[0], VOCABULARY[5]],  # a repeated term counts twice
        ["err-4012", "user_id", "v2.3.1"],
        ["nosuchterm", VOCABULARY[10]],
    ]
    while len(queries) < 32:
        query = rng.sample(VOCABULARY, rng.randint(1, 5)) + rng.sample(frequent, rng.randint(0, 2))
        if rng.random() < 0.3:
            query.append(rng.choice(COMMON))
        if rng.random() < 0.2:
            query.append(query[0])
        queries.append(query)
    return queries


QUERIES = _queries()


def _reference_ranking(query: list[str], allowed: set[int] | None = None) -> list[tuple[int, float]]:
    """rank-bm25's scores of the documents containing a query term, by score desc then id asc."""
    scores = REFERENCE.get_scores(query)
    terms = set(query)
    hits = [
        (IDS[i], float(scores[i]))
        for i, doc in enumerate(DOCS)
        if terms.intersection(doc) and (allowed is None or IDS[i] in allowed)
    ]
    return sorted(hits, key=lambda hit: (-hit[1], hit[0]))


def _assert_same(result: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [doc_id for doc_id, _ in result] == [doc_id for doc_id, _ in expected]
    np.testing.assert_allclose([s for _, s in result], [s for _, s in expected], rtol=0, atol=1e-6)


def test_the_corpus_exercises_every_idf_case() -> None:
    assert REFERENCE.average_idf > 0
    for term in COMMON:
        assert REFERENCE.idf[term] == pytest.approx(0.25 * REFERENCE.average_idf)
    assert REFERENCE.idf[HALF] == 0.0
    assert sum(1 for doc in DOCS if HALF in doc) * 2 == len(DOCS)
    assert any(REFERENCE.idf[term] > 3 for term in VOCABULARY if term in REFERENCE.idf)
    assert len(DOCS) == N_DOCS and [] in DOCS


def test_statistics_equal_rank_bm25() -> None:
    assert INDEX.size == len(DOCS)
    assert INDEX.vocabulary_size == len(REFERENCE.idf)
    assert INDEX.avgdl == pytest.approx(REFERENCE.avgdl, rel=1e-12)
    assert INDEX.average_idf == pytest.approx(REFERENCE.average_idf, rel=1e-9)
    for term, idf in REFERENCE.idf.items():
        assert INDEX.idf(term) == pytest.approx(idf, rel=1e-9, abs=1e-12)
    assert INDEX.idf("nosuchterm") == 0.0
    assert INDEX.nbytes > INDEX.matrix.data.nbytes > 0
    assert list(INDEX.ids) == IDS


@pytest.mark.parametrize("query", QUERIES, ids=[" ".join(q)[:40] for q in QUERIES])
def test_scores_of_all_documents_equal_rank_bm25(query: list[str]) -> None:
    np.testing.assert_allclose(INDEX.get_scores(query), REFERENCE.get_scores(query), rtol=0, atol=1e-6)


@pytest.mark.parametrize("query", QUERIES, ids=[" ".join(q)[:40] for q in QUERIES])
def test_top_10_and_full_ranking_equal_rank_bm25(query: list[str]) -> None:
    expected = _reference_ranking(query)
    _assert_same(INDEX.search(query, 10), expected[:10])
    _assert_same(INDEX.search(query, len(DOCS)), expected)


def test_top_10_equals_rank_bm25_order_where_scores_are_positive() -> None:
    # Where every score is positive the matching documents are exactly rank-bm25's nonzero ones.
    for query in QUERIES:
        if HALF in query:
            continue
        scores = REFERENCE.get_scores(query)
        order = sorted((i for i in range(len(DOCS)) if scores[i] > 0), key=lambda i: (-scores[i], IDS[i]))
        assert [doc_id for doc_id, _ in INDEX.search(query, 10)] == [IDS[i] for i in order[:10]]


@pytest.mark.parametrize("ratio", [0, 10**9])
def test_sorting_and_dense_summation_agree(monkeypatch: pytest.MonkeyPatch, ratio: int) -> None:
    monkeypatch.setattr(bm25_module, "_SORT_RATIO", ratio)
    for query in QUERIES:
        _assert_same(INDEX.search(query, 25), _reference_ranking(query)[:25])


def test_a_term_in_exactly_half_the_documents_matches_with_score_zero() -> None:
    result = INDEX.search([HALF], 1000)
    assert len(result) == len(DOCS) // 2
    assert all(score == 0.0 for _, score in result)
    assert [doc_id for doc_id, _ in result] == sorted(doc_id for doc_id, _ in result)


def test_filter_by_mask_and_by_ids() -> None:
    rng = np.random.default_rng(5)
    mask = rng.random(len(IDS)) < 0.3
    allowed_ids = [doc_id for doc_id, keep in zip(IDS, mask, strict=True) if keep]
    for query in QUERIES:
        expected = _reference_ranking(query, set(allowed_ids))[:10]
        _assert_same(INDEX.search(query, 10, mask), expected)
        _assert_same(INDEX.search(query, 10, np.array([*allowed_ids, -1, 10**9])), expected)
        _assert_same(INDEX.search(query, 10, allowed_ids), expected)
    query = QUERIES[1]
    assert INDEX.search(query, 10, np.zeros(len(IDS), dtype=bool)) == []
    assert INDEX.search(query, 10, np.array([], dtype=np.int64)) == []
    assert INDEX.search(query, 10, []) == []
    with pytest.raises(ValueError, match="shape"):
        INDEX.search(query, 10, np.ones(3, dtype=bool))
    with pytest.raises(TypeError):
        INDEX.search(query, 10, np.array([1.5]))


def test_empty_query_unknown_terms_and_k() -> None:
    assert INDEX.search([], 10) == []
    assert not INDEX.get_scores([]).any()
    assert INDEX.search(["nosuchterm", "nor-this-1"], 10) == []
    assert not INDEX.get_scores(["nosuchterm"]).any()
    assert INDEX.search(QUERIES[0], 0) == []
    assert INDEX.search(QUERIES[0], -1) == []
    assert len(INDEX.search(QUERIES[0], 10**6)) == sum(1 for doc in DOCS if QUERIES[0][0] in doc)


def test_ties_are_broken_by_id_including_at_the_kth_place() -> None:
    docs = [["alpha", "beta"], ["alpha", "beta"], ["gamma"], ["alpha", "beta"], ["delta"], ["alpha", "beta"]]
    index = BM25Index([50, 20, 1, 40, 2, 30], docs)
    hits = index.search(["alpha"], 2)
    assert [doc_id for doc_id, _ in hits] == [20, 30]
    assert hits[0][1] == hits[1][1] > 0
    assert [doc_id for doc_id, _ in index.search(["alpha", "beta"], 10)] == [20, 30, 40, 50]


def test_float32_weights() -> None:
    index = BM25Index(IDS, DOCS, dtype=np.float32)
    assert index.matrix.data.dtype == np.float32
    assert index.nbytes < INDEX.nbytes
    for query in QUERIES[:10]:
        np.testing.assert_allclose(index.get_scores(query), REFERENCE.get_scores(query), rtol=1e-5, atol=1e-5)
        assert [doc_id for doc_id, _ in index.search(query, 5)] == [
            doc_id for doc_id, _ in _reference_ranking(query)[:5]
        ]


def test_other_parameters_equal_rank_bm25() -> None:
    reference = BM25Okapi(DOCS, k1=0.9, b=0.4, epsilon=0.5)
    index = BM25Index(IDS, DOCS, k1=0.9, b=0.4, epsilon=0.5)
    for query in QUERIES:
        np.testing.assert_allclose(index.get_scores(query), reference.get_scores(query), rtol=0, atol=1e-6)


def test_small_corpus_with_negative_scores() -> None:
    # Three documents: the mean idf is negative, so common terms score below 0; their documents still
    # match, ranked as rank-bm25 ranks them.
    docs = [["a", "b"], ["a", "c"], ["a", "b", "d"]]
    reference = BM25Okapi(docs)
    assert reference.average_idf < 0
    index = BM25Index([1, 2, 3], docs)
    np.testing.assert_allclose(index.get_scores(["a", "b"]), reference.get_scores(["a", "b"]), atol=1e-12)
    hits = index.search(["a"], 10)
    scores = reference.get_scores(["a"])
    assert [doc_id for doc_id, _ in hits] == [3, 1, 2]  # the longest document is penalized least
    np.testing.assert_allclose([score for _, score in hits], scores[[2, 0, 1]], atol=1e-12)
    assert all(score < 0 for _, score in hits)


def test_edge_cases_of_construction() -> None:
    empty = BM25Index([], [])
    assert (empty.size, empty.vocabulary_size) == (0, 0)
    assert empty.search(["a"], 10) == []
    assert empty.get_scores(["a"]).shape == (0,)
    blank = BM25Index([1, 2], [[], []])
    assert blank.search(["a"], 10) == []
    assert not blank.get_scores(["a"]).any()
    with pytest.raises(ValueError, match="duplicate document id 7"):
        BM25Index([7, 8, 7], [["a"], ["b"], ["c"]])
    with pytest.raises(ValueError, match="2 ids but 1 term lists"):
        BM25Index([1, 2], [["a"]])
    with pytest.raises(ValueError):
        BM25Index([1], [["a"]], b=2.0)
    tuples = BM25Index(np.array([5, 6]), (("x", "y"), ("y",)))
    assert tuples.search(["y", "x"], 5)[0][0] == 5


@pytest.mark.parametrize("k", [1, 10, 50])
def test_top_candidates_include_the_top_k_with_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    for n in (5, 100, 20_000, 100_003):  # short (argpartition) and long (block maxima) arrays
        scores = np.round(rng.random(n) * 50, 1)  # many ties
        ids = rng.permutation(n)
        selected = bm25_module._top_candidates(scores, k)
        assert len(np.unique(selected)) == len(selected)
        top = selected[np.lexsort((ids[selected], -scores[selected]))[:k]]
        expected = np.lexsort((ids, -scores))[:k]
        assert top.tolist() == expected.tolist()
