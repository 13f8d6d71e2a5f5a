"""The cross-encoder kind: pairs with hard negatives, fine-tuning from the packaged MiniLM, the gate through the
CLI (a refusal deletes its folder), and a promoted one served by the registry (a missing folder is not).

The domain is test_training's tiny identifier domain (its module fixtures, shared by import).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import get_domain
from rag_server.embedding import packaged_model_dir
from rag_server.rerank import NoReranker, store
from rag_server.rerank.cross_encoder import (
    KIND,
    CrossEncoderReranker,
    FineTuning,
    Pair,
    fine_tune,
    training_pairs,
)
from rag_server.rerank.registry import RerankerRegistry
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import ScoredChunk, SearchRequest
from tests.conftest import run_cli
from tests.rerank.test_training import DOMAIN, TOPICS, _env
from tests.rerank.test_training import dataset as dataset
from tests.rerank.test_training import searcher as searcher

pytestmark = pytest.mark.slow


def _chunk(i: int, text: str) -> ScoredChunk:
    return ScoredChunk(i, i, f"doc-{i}", "Title" if i % 2 else None, text, 0, (), 1.0 - i / 10, "hybrid")


def test_training_pairs_take_the_best_ranked_relevant_and_hard_negatives() -> None:
    candidates = [_chunk(i, f"text {i}") for i in range(8)]
    pairs = training_pairs("q", candidates, [0, 1, 0, 0, 2, 1, 0, 0], positives=2, negatives=3)
    assert [(p.passage, p.label) for p in pairs] == [
        ("Title\ntext 1", 1.0),
        ("text 4", 1.0),
        ("text 0", 0.0),
        ("text 2", 0.0),
        ("Title\ntext 3", 0.0),
    ]
    assert training_pairs("q", candidates, [0] * 8) == []  # no relevant candidate: nothing to learn from


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pairs = [Pair(f"error ERR-{i}", f"Reference ERR-{i}. Contact support.", 1.0) for i in range(8)] + [
        Pair(f"error ERR-{i}", f"Troubleshooting {TOPICS[i % 5]}.", 0.0) for i in range(8)
    ]
    announced: list[str] = []
    steps: list[tuple[int, int]] = []
    out = fine_tune(
        pairs,
        packaged_model_dir(),
        tmp_path_factory.mktemp("ce") / "model",
        FineTuning(batch_size=8, max_length=64),
        progress=lambda done, total: steps.append((done, total)),
        announce=announced.append,
    )
    assert steps == [(1, 2), (2, 2)] and "2 steps" in announced[0] and "min" in announced[0]
    return out


def test_a_promoted_cross_encoder_serves_its_domain_and_a_missing_one_does_not(
    fine_tuned: Path, searcher: Searcher, module_pool: ConnectionPool
) -> None:
    with module_pool.connection() as conn:
        domain = get_domain(conn, DOMAIN)
        reranker_id = store.save(
            conn, domain.id, KIND, {"note": "test"}, {"path": str(fine_tuned), "max_length": 64}
        )
    registry = RerankerRegistry(module_pool, searcher)
    reranker = registry.for_domain(domain)
    assert isinstance(reranker, CrossEncoderReranker) and reranker.reranker_id == reranker_id
    question = f"{TOPICS[1]} ERR-1037"
    candidates = searcher.search(SearchRequest(question, DOMAIN, "hybrid", 10)).chunks
    reranked = reranker.rerank(question, None, candidates)
    assert sorted(c.chunk_id for c in reranked) == sorted(c.chunk_id for c in candidates)
    assert {c.chunk_id: c.score for c in reranked} == {c.chunk_id: c.score for c in candidates}
    scores = reranker.scores(question, reranked)
    assert list(scores) == sorted(scores, reverse=True)  # ordered by the model

    with module_pool.connection() as conn:
        store.save(conn, domain.id, KIND, {"note": "gone"}, {"path": str(fine_tuned.parent / "gone")})
    assert isinstance(registry.for_domain(domain), NoReranker)  # logged, not served, nothing breaks


def test_train_reranker_cross_encoder_is_gated_and_a_refusal_leaves_no_model(
    searcher: Searcher,
    dataset: Path,
    module_settings: Settings,
    tmp_path: Path,
) -> None:
    env = {**_env(module_settings), "RAG_DATA_DIR": str(tmp_path)}
    done = run_cli(
        "train-reranker",
        "--domain",
        DOMAIN,
        "--dataset",
        str(dataset),
        "--no-ingest",
        "--kind",
        "cross-encoder",
        "--depth",
        "10",
        "--margin",
        "0.9",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert decision["promoted"] is False and "below the margin" in decision["reason"]
    assert decision["training_questions"] == 12 and decision["evaluated_questions"] == 5
    assert decision["weight_questions"] == 3 and decision["weight"] in (0.25, 0.5, 0.75, 1.0)
    assert set(decision["weight_ndcg@10"]) == {"0.25", "0.5", "0.75", "1.0"}
    assert decision["training_pairs"] > 15 and decision["base"].startswith("packaged")
    assert "fine-tuning:" in done.stderr and "steps, about" in done.stderr
    assert not any((tmp_path / "rerankers").glob("*"))  # the refused model's folder is gone

    listed = run_cli("rerankers", "list", "--domain", DOMAIN, "--json", env=env)
    rows = json.loads(listed.stdout)
    assert any(row["kind"] == KIND and row["id"] == decision["id"] for row in rows)

    wrong = run_cli(
        "train-reranker", "--domain", DOMAIN, "--dataset", str(dataset), "--kind", "bert", env=env
    )
    assert wrong.returncode != 0 and "unknown --kind 'bert'" in wrong.stderr
