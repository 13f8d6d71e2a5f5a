"""Per-domain tuning: the grid and its folds, promotion and refusal on a tiny labeled domain, the tuned settings
read by search and ask for that domain only, and `tunings list`.

The domain (as in tests/rerank/test_training.py) is built so that the default hybrid order is beatable: every
question names an error code and asks in words that "decoy" documents repeat at length, while the one document
with the code is short. The semantic side prefers the decoys; a configuration that weighs BM25 (where the rare
code counts) more ranks the code's document higher, and the tuner has to find that from the labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from psycopg_pool import ConnectionPool

from evals.tune import cross_validate, grid, label, tune
from ingest.pipeline import Ingestion, IngestOptions
from rag_server.api.schemas import SearchResponse
from rag_server.config import Settings
from rag_server.domains import get_domain
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import ConfigError
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.tuning import DEFAULTS, FixedTuning, Tuning, TuningRegistry, checked
from rag_server.retrieval.types import SearchRequest
from tests.conftest import run_cli

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


def _env(settings: Settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]


# --- the grid, the folds, the settings a tuning may set ----------------------------------------------------


def test_grid_covers_every_setting_once() -> None:
    configs = grid()
    assert len(configs) == 16 and len({label(c) for c in configs}) == 16
    assert {c["keyword_expansion"] for c in configs} == {"none", "rm3"}
    assert all(("convex_weight" in c) == (c["fusion"] == "convex") for c in configs)
    assert len(grid(["none"], ["rrf"], [0.5], [50])) == 1


def test_checked_refuses_what_no_setting_accepts() -> None:
    assert checked({"candidate_depth": "50", "fusion": "rrf"}) == {"candidate_depth": 50, "fusion": "rrf"}
    for bad in ({"convex_weight": 1.5}, {"fusion": "max"}, {"candidate_depth": 0}, {"bm25_k1": 1.0}):
        with pytest.raises(ConfigError):
            checked(bad)


def test_each_fold_is_scored_by_what_won_on_the_other_folds() -> None:
    # Column 1 wins on every question but the first four, where column 2 wins big; column 0 is the current.
    scores = np.array([[0.4, 0.6, 0.0]] * 16 + [[0.4, 0.0, 1.0]] * 4)
    scores = np.vstack([scores[16:], scores[:16]])
    held_out, reports, chosen = cross_validate(scores, 4)
    assert len(held_out) == 20 and sum(r["questions"] for r in reports) == 20
    # Column 1's mean is 0.48, column 2's 0.2: every fold picks column 1, and the four questions where it scores
    # 0 are held out with 0 (not with what the best column in hindsight would have given them).
    assert chosen == [1, 1, 1, 1]
    assert sorted(held_out) == [0.0] * 4 + [0.6] * 16
    ties = np.array([[0.5, 0.5]] * 5)
    assert cross_validate(ties, 5)[2] == [0] * 5  # a tie keeps the current configuration


# --- a tiny labeled domain ---------------------------------------------------------------------------------


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
    Ingestion(module_pool, embedder, Analyzer(), options).run([dataset], "untuned")
    answers = module_settings.model_copy(update={"answer_cache": "off", "abstention": "never"})
    found = Searcher(module_pool, embedder, answers)
    found.tunings = TuningRegistry(module_pool, ttl_s=0)
    return found


def _ranked(searcher: Searcher, domain: str, question: str) -> list[str]:
    return [c.external_id for c in searcher.search(SearchRequest(question, domain, "hybrid", 20)).chunks]


@pytest.mark.slow
def test_promotion_then_refusal_and_the_tuned_settings_serve_that_domain_only(
    searcher: Searcher, module_pool: ConnectionPool, module_settings: Settings, dataset: Path
) -> None:
    question = f"{TOPICS[2]} ERR-1074"
    assert searcher.search(SearchRequest(question, DOMAIN, "hybrid", 20)).tuning == "defaults"
    before = _ranked(searcher, DOMAIN, question)

    run = tune(searcher, dataset, DOMAIN, "test", folds=5)
    decision = run.decision
    assert decision["promoted"] is True and run.settings is not None, decision["reason"]
    assert (
        decision["current"] == "defaults" and decision["tuned_ndcg@10"] >= decision["baseline_ndcg@10"] + 0.05
    )
    assert decision["p_value"] < 0.05 and decision["training_questions"] == 20 and len(decision["folds"]) == 5
    assert len(decision["configurations"]) == 16  # the defaults' point of the grid counted once, as current
    assert decision["chosen_settings"] == run.settings != decision["current_settings"]
    best = max(decision["configurations"], key=lambda c: c["train_ndcg@10"])
    assert best["train_ndcg@10"] == max(c["train_ndcg@10"] for c in decision["configurations"])

    # Search: the domain's promoted settings serve it (exactly as the chosen configuration ranks) ...
    served = searcher.search(SearchRequest(question, DOMAIN, "hybrid", 20))
    assert served.tuning == f"tuning#{run.tuning_id}"
    assert SearchResponse.of(served).tuning == f"tuning#{run.tuning_id}"
    after = [c.external_id for c in served.chunks]
    registry = searcher.tunings
    searcher.tunings = FixedTuning(Tuning(None, run.settings))
    try:
        assert _ranked(searcher, DOMAIN, question) == after
    finally:
        searcher.tunings = registry
    assert after.index("code-2") < before.index("code-2")
    # ... and no other domain: the same corpus untuned ranks as before, under the defaults.
    other = searcher.search(SearchRequest(question, "untuned", "hybrid", 20))
    assert other.tuning == "defaults" and [c.external_id for c in other.chunks] == before

    # Ask: the same, named in the response.
    pipeline = Pipeline(searcher, searcher.settings)
    answered = pipeline.ask(AskRequest(question=question, domain=DOMAIN))
    assert answered.tuning == f"tuning#{run.tuning_id}"
    assert pipeline.ask(AskRequest(question=question, domain="untuned")).tuning == "defaults"

    # Tuned again (through the CLI): the promoted configuration is now the one to beat, and nothing beats it.
    done = run_cli(
        "tune",
        "--domain",
        DOMAIN,
        "--dataset",
        str(dataset),
        "--no-ingest",
        "--json",
        env=_env(module_settings),
    )
    assert done.returncode == 0, done.stderr
    refused = json.loads(done.stdout)
    assert refused["promoted"] is False and refused["current"] == f"tuning#{run.tuning_id}", refused
    assert {name: refused["current_settings"][name] for name in run.settings} == run.settings
    assert refused["id"] > run.tuning_id
    assert searcher.search(SearchRequest(question, DOMAIN, "hybrid", 20)).tuning == f"tuning#{run.tuning_id}"

    listed = run_cli("tunings", "list", "--json", env=_env(module_settings))
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(row["domain"], row["promoted"], row["serving"]) for row in rows] == [
        (DOMAIN, True, True),
        (DOMAIN, False, False),
    ]
    assert rows[0]["settings"] == run.settings and rows[1]["settings"] == {}
    assert len(rows[1]["configurations"]) == 16 and rows[1]["tuned_ndcg@10"] == refused["tuned_ndcg@10"]
    table = run_cli("tunings", "list", env=_env(module_settings))
    assert "| serving |" in table.stdout and "| refused |" in table.stdout


@pytest.mark.slow
def test_a_domain_never_tuned_keeps_the_defaults(module_pool: ConnectionPool, searcher: Searcher) -> None:
    with module_pool.connection() as conn:
        untuned = get_domain(conn, "untuned")
    assert TuningRegistry(module_pool).for_domain(untuned) is DEFAULTS
    assert DEFAULTS.apply(searcher.settings) is searcher.settings
