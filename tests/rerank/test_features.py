"""The feature matrix of a question's candidates, feature by feature, on a hand-built BM25 index."""

from __future__ import annotations

import numpy as np
import pytest

from rag_server.rerank.features import (
    FEATURE_NAMES,
    FEATURES,
    compute_features,
    exact_phrases,
    question_terms,
)
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.bm25 import BM25Index
from rag_server.retrieval.types import ScoredChunk

ANALYZER = Analyzer()
TEXTS = {
    10: ("Sync errors", "The sync fails with ERR-4012 when the token expires."),
    11: ("Billing", "Invoices are sent monthly; the sync of billing data is nightly."),
    12: ("Tokens", "Refresh the token before it expires, see the sync guide."),
    13: ("Unrelated", "Penguins live in the southern hemisphere."),
}


def _chunk(chunk_id: int, score: float, ordinal: int = 0) -> ScoredChunk:
    title, text = TEXTS[chunk_id]
    return ScoredChunk(chunk_id, chunk_id, f"doc-{chunk_id}", title, text, ordinal, (), score, "hybrid")


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index(list(TEXTS), [ANALYZER.terms(f"{t}\n{x}") for t, x in TEXTS.values()])


def test_every_feature_is_named_once_and_described() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURES) == 11
    assert all(feature.description for feature in FEATURES)


def test_exact_phrases_are_quoted_phrases_and_identifiers() -> None:
    assert exact_phrases('Why does "Sync Queue" fail with ERR-4012 on v2.3?') == (
        "sync queue",
        "err-4012",
        "v2.3",
    )
    assert exact_phrases("how do I reset my password") == ()
    assert exact_phrases("re-ingest the x-request-id header") == ("re-ingest", "x-request-id")


def test_features_of_each_candidate(index: BM25Index) -> None:
    question = "sync fails with ERR-4012"
    terms = question_terms(question, ANALYZER, index)
    assert terms.terms == ("sync", "fail", "err-4012")
    candidates = [_chunk(11, 0.03), _chunk(10, 0.02, ordinal=3), _chunk(13, 0.01)]
    q = np.array([1.0, 0.0], dtype=np.float32)
    vectors = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)  # the last: deleted since
    x = compute_features(terms, q, candidates, vectors, index, ANALYZER)
    column = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_allclose(column["input_score"], [1.0, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(column["input_rank"], [1, 2, 3])
    np.testing.assert_allclose(column["dense_cosine"], [0.0, 1 / np.sqrt(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(column["dense_gap"], column["dense_cosine"] - 1 / np.sqrt(2), atol=1e-6)
    # BM25 equals the index's own score of the question's terms, for each candidate.
    full = dict(zip(index.ids.tolist(), index.get_scores(ANALYZER.terms(question)).tolist(), strict=True))
    np.testing.assert_allclose(column["bm25"], [full[11], full[10], 0.0])
    assert column["bm25"][1] > column["bm25"][0] > 0
    np.testing.assert_allclose(column["bm25_ratio"], column["bm25"] / full[10])
    idf = {term: index.idf(term) for term in terms.terms}
    np.testing.assert_allclose(column["term_coverage"], [idf["sync"] / sum(idf.values()), 1.0, 0.0])
    # "Sync errors" holds sync (not "fail": the title says errors).
    np.testing.assert_allclose(column["title_coverage"], [0.0, idf["sync"] / sum(idf.values()), 0.0])
    np.testing.assert_array_equal(column["exact_match"], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(column["ordinal"], [0, 3, 0])
    np.testing.assert_array_equal(column["length"], [len(TEXTS[i][1].split()) for i in (11, 10, 13)])


def test_a_candidate_missing_from_the_index_and_a_question_without_known_terms(index: BM25Index) -> None:
    gone = ScoredChunk(99, 99, "gone", None, "the sync fails", 0, (), 0.5, "hybrid")
    terms = question_terms("sync", ANALYZER, index)
    x = compute_features(terms, np.ones(2), [gone, _chunk(10, 0.4)], np.ones((2, 2)), index, ANALYZER)
    assert x[0, FEATURE_NAMES.index("bm25")] == 0.0 and x[1, FEATURE_NAMES.index("bm25")] > 0
    nothing = question_terms("penguin zebra", Analyzer(), BM25Index([1], [["other"]]))
    assert nothing.terms == ()
    x = compute_features(nothing, np.ones(2), [_chunk(10, 1.0)], np.ones((1, 2)), index, ANALYZER)
    assert x[0, FEATURE_NAMES.index("term_coverage")] == 0.0 and np.isfinite(x).all()
