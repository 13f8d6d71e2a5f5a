"""The feature reranker's model, its eval gate, its storage and the registry that serves it to ask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from psycopg_pool import ConnectionPool

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.config import Settings
from rag_server.domains import get_domain
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.rerank import NoReranker, store
from rag_server.rerank.feature import FeatureReranker
from rag_server.rerank.features import FEATURE_NAMES
from rag_server.rerank.model import fit
from rag_server.rerank.promotion import judge
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher


def _groups(
    seed: int, questions: int = 30, candidates: int = 20
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Candidates whose relevance the first feature gives away (the others are noise)."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for _ in range(questions):
        x = rng.random((candidates, len(FEATURE_NAMES)))
        y = (x[:, 0] > 0.8).astype(int)
        groups.append(x)
        labels.append(y)
    return groups, labels


def test_the_model_learns_a_telling_feature() -> None:
    model = fit(*_groups(0))
    x, y = _groups(1, questions=1)[0][0], _groups(1, questions=1)[1][0]
    top = np.argsort(-model.score(x))[: int(y.sum())]
    assert y[top].all()


def test_the_gate_promotes_a_real_gain_and_refuses_noise() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.random(40) * 0.5
    assert judge(list(baseline + 0.2), list(baseline)).promoted
    assert not judge(list(baseline + rng.normal(0, 0.05, 40)), list(baseline)).promoted
    assert not judge(list(baseline + 0.001), list(baseline), margin=0.01).promoted  # below the margin


@pytest.fixture
def domain_pool(
    pool: ConnectionPool, settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> ConnectionPool:
    (tmp_path / "a.md").write_text("# Refunds\n\nAnnual plans are refunded in full within 30 days.\n")
    (tmp_path / "b.md").write_text("# SSO\n\nSAML single sign-on works with Okta and Azure AD.\n")
    ingestion = Ingestion(pool, embedder, Analyzer(), IngestOptions.from_settings(settings))
    ingestion.run([tmp_path], "trained")
    ingestion.run([tmp_path], "untrained")
    return pool


def test_the_registry_serves_the_promoted_reranker_and_ask_names_it(
    domain_pool: ConnectionPool, settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    model = fit(*_groups(3))
    with domain_pool.connection() as conn:
        trained = get_domain(conn, "trained")
        refused = store.save(conn, trained.id, "features", {"note": "refused run"}, None)
        promoted = store.save(conn, trained.id, "features", {"note": "promoted run"}, model.to_json())
    searcher = Searcher(domain_pool, embedder, settings.model_copy(update={"answer_cache": "off"}))
    pipeline = Pipeline(searcher, searcher.settings)
    with domain_pool.connection() as conn:
        served = pipeline.rerankers.for_domain(get_domain(conn, "trained"))
        untouched = pipeline.rerankers.for_domain(get_domain(conn, "untrained"))
    assert isinstance(served, FeatureReranker) and served.reranker_id == promoted != refused
    assert isinstance(untouched, NoReranker)
    answered = pipeline.ask(
        AskRequest(question="Within how many days are annual plans refunded?", domain="trained")
    )
    assert answered.reranker == f"features#{promoted}" and "30 days" in answered.answer
    other = pipeline.ask(
        AskRequest(question="Within how many days are annual plans refunded?", domain="untrained")
    )
    assert other.reranker == "none"
