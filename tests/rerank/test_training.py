"""Training on a tiny labeled domain: promotion and refusal, the registry, and `rerankers list`.

The domain is built so that hybrid's order is beatable by one feature: every question names an error code
and asks in words that a few "decoy" documents repeat at length, while the one document with the code is
short and says little else. Hybrid ranks the decoys first; exact identifier match puts the code's document
first, and the reranker has to learn that from the labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from psycopg_pool import ConnectionPool

from evals.rerank import train
from ingest.pipeline import Ingestion, IngestOptions
from rag_server.config import Settings
from rag_server.domains import get_domain
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.rerank import NoReranker
from rag_server.rerank.feature import FeatureReranker
from rag_server.rerank.registry import RerankerRegistry
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

DOMAIN = "codes"
TOPICS = [
    "upload sync failure on the storage server",
    "login timeout on the authentication gateway",
    "payment declined during checkout processing",
    "report export stuck in the background queue",
    "email delivery delayed by the mail relay",
]


def _dataset(folder: Path) -> Path:
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for t, topic in enumerate(TOPICS):
        for copy in range(2):
            text = " ".join(
                [f"Troubleshooting {topic}."] * 4 + [f"Common causes of {topic} and fixes {copy}."]
            )
            corpus.append({"_id": f"decoy-{t}-{copy}", "title": topic.capitalize(), "text": text})
    for i in range(20):
        code = f"ERR-{1000 + 37 * i}"
        corpus.append(
            {"_id": f"code-{i}", "title": f"Note {i}", "text": f"Reference {code}. Contact support."}
        )
        queries.append({"_id": f"q{i}", "text": f"{TOPICS[i % len(TOPICS)]} {code}"})
        qrels.append(f"q{i}\tcode-{i}\t1")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dataset(tmp_path_factory.mktemp("codes") / "codes")


@pytest.fixture(scope="module")
def searcher(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    dataset: Path,
) -> Searcher:
    options = IngestOptions.from_settings(module_settings)
    Ingestion(module_pool, embedder, Analyzer(), options).run([dataset], DOMAIN)
    Ingestion(module_pool, embedder, Analyzer(), options).run([dataset], "untrained")
    return Searcher(module_pool, embedder, module_settings)


def _env(settings: Settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]


def test_hybrid_order_is_beatable_here(searcher: Searcher) -> None:
    result = searcher.search(SearchRequest(f"{TOPICS[0]} ERR-1000", DOMAIN, "hybrid", 20))
    ranked = [chunk.external_id for chunk in result.chunks]
    assert "code-0" in ranked and ranked.index("code-0") >= 2  # found, below decoys


def test_promotion_then_refusal_keeps_the_promoted_reranker(
    searcher: Searcher, module_pool: ConnectionPool, module_settings: Settings, dataset: Path
) -> None:
    registry = RerankerRegistry(module_pool, searcher)
    with module_pool.connection() as conn:
        domain, untrained = get_domain(conn, DOMAIN), get_domain(conn, "untrained")
    assert isinstance(registry.for_domain(domain), NoReranker) and registry.decision(domain) is None

    run = train(searcher, dataset, DOMAIN, "test", folds=5, depth=30)
    assert run.verdict.promoted, run.decision
    assert run.verdict.reranked_ndcg > run.verdict.baseline_ndcg + 0.2 and run.verdict.p_value < 0.05
    assert run.decision["training_questions"] == 20 and len(run.decision["folds"]) == 5

    reranker = registry.for_domain(domain)
    assert isinstance(reranker, FeatureReranker) and reranker.reranker_id == run.reranker_id
    assert registry.for_domain(domain) is reranker  # cached by the stored id
    assert isinstance(registry.for_domain(untrained), NoReranker)
    question = f"{TOPICS[1]} ERR-1037"
    candidates = searcher.search(SearchRequest(question, DOMAIN, "hybrid", 20)).chunks
    reranked = reranker.rerank(question, None, candidates)
    assert reranked[0].external_id == "code-1" != candidates[0].external_id
    assert sorted(c.chunk_id for c in reranked) == sorted(c.chunk_id for c in candidates)
    assert {c.chunk_id: c.score for c in reranked} == {c.chunk_id: c.score for c in candidates}
    vector = searcher.embedder.embed([question])[0]
    assert reranker.rerank(question, vector, candidates) == reranked

    # A margin no reranker can reach: refused through the CLI, recorded, and the promoted one still serves.
    done = run_cli(
        "train-reranker",
        "--domain",
        DOMAIN,
        "--dataset",
        str(dataset),
        "--margin",
        "0.9",
        "--json",
        env=_env(module_settings),
    )
    assert done.returncode == 0, done.stderr
    refused = json.loads(done.stdout)
    assert refused["promoted"] is False and "below the margin" in refused["reason"]
    assert registry.for_domain(domain) is reranker
    decision = registry.decision(domain)
    assert decision is not None and decision["id"] == run.reranker_id and decision["promoted"] is True

    listed = run_cli("rerankers", "list", "--json", env=_env(module_settings))
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(row["domain"], row["promoted"], row["serving"]) for row in rows] == [
        (DOMAIN, True, True),
        (DOMAIN, False, False),
    ]
    assert rows[1]["reranked_ndcg@10"] == refused["reranked_ndcg@10"] and np.isfinite(rows[1]["p_value"])
    table = run_cli("rerankers", "list", env=_env(module_settings))
    assert "| serving |" in table.stdout and "| refused |" in table.stdout


def test_random_labels_are_refused(searcher: Searcher, dataset: Path, tmp_path: Path) -> None:
    # The same questions, each "relevant" to a document drawn at random: nothing to learn that holds out.
    shuffled = _dataset(tmp_path / "random")
    rng = np.random.default_rng(7)
    ids = [json.loads(line)["_id"] for line in (dataset / "corpus.jsonl").read_text().splitlines()]
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\t{ids[rng.integers(len(ids))]}\t1" for i in range(20)]
    (shuffled / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    run = train(searcher, shuffled, DOMAIN, "test", folds=5, depth=30)
    assert not run.verdict.promoted, run.decision
    assert run.model is None
