"""Synthetic training questions: sampled chunks of a small ingested domain, a heuristic question each
(deterministic, judged against the chunk's document, never the passage's sentence as it is), written as a
BEIR folder that `train-reranker --no-ingest` trains on; the model's questions through the scripted server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from evals.beir import load_qrels, load_queries
from evals.rerank import transfer
from ingest.pipeline import Ingestion, IngestOptions
from rag_server.config import Settings
from rag_server.domains import Domain, HnswOptions, ensure_domain, get_domain
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import RagError
from rag_server.llm import OpenAIChatModel
from rag_server.rerank.synthetic import (
    MANIFEST,
    HeuristicGenerator,
    ModelGenerator,
    generate,
    sample_order,
    write_folder,
)
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from tests.conftest import run_cli
from tests.scripted_llm import ScriptedLLM, last_user_message

pytestmark = pytest.mark.slow

DOMAIN = "engines"
SUBJECTS = [
    ("turbine blade", "thermal fatigue", "ceramic coating"),
    ("wing spar", "torsional flutter", "carbon laminate"),
    ("rocket nozzle", "throat erosion", "graphite insert"),
    ("landing gear", "shimmy oscillation", "hydraulic damper"),
    ("fuel pump", "cavitation pitting", "inducer stage"),
    ("rotor hub", "lead-lag resonance", "elastomeric bearing"),
    ("cabin wall", "acoustic transmission", "viscoelastic layer"),
    ("radar dome", "rain abrasion", "polyurethane boot"),
    ("heat shield", "ablative recession", "phenolic matrix"),
    ("compressor disk", "burst margin", "shot peening"),
    ("propeller tip", "compressibility drag", "swept planform"),
    ("wind tunnel", "wall interference", "slotted liner"),
]


def _corpus(folder: Path) -> Path:
    rows = []
    for number, (part, problem, remedy) in enumerate(SUBJECTS):
        text = (
            f"This report covers the {part}. "
            f"Tests showed that {problem} limits the life of the {part} under repeated loading. "
            f"A {remedy} reduced the {problem} by half in later runs. "
            "The results agree with earlier work."
        )
        rows.append({"_id": f"r{number}", "title": f"{part.title()} {problem}", "text": text})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def domain(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Domain:
    corpus = _corpus(tmp_path_factory.mktemp("engines") / "corpus")
    Ingestion(module_pool, embedder, Analyzer(), IngestOptions.from_settings(module_settings)).run(
        [corpus], DOMAIN
    )
    with module_pool.connection() as conn:
        return get_domain(conn, DOMAIN)


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    return {"DATABASE_URL": url, "RAG_DATA_DIR": str(settings.data_dir), **extra}


def _sentences(text: str) -> list[str]:
    return [s.strip(" .").lower() for s in re.split(r"(?<=\.)\s+", text) if s.strip()]


def test_heuristic_questions_are_deterministic_and_judged_against_their_chunks_document(
    module_pool: ConnectionPool, module_settings: Settings, domain: Domain
) -> None:
    with module_pool.connection() as conn:
        generator = HeuristicGenerator.for_domain(conn, domain, module_settings, seed=3)
        first = generate(conn, domain, generator, 8, seed=3)
        again = generate(conn, domain, HeuristicGenerator.for_domain(conn, domain, module_settings, 3), 8, 3)
        other = generate(conn, domain, generator, 8, seed=4)
        texts: dict[int, str] = dict(
            conn.execute("SELECT c.id, c.text FROM chunks c WHERE c.domain_id = %s", (domain.id,)).fetchall()
        )
        documents: dict[int, str] = dict(
            conn.execute(
                "SELECT c.id, d.external_id FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE c.domain_id = %s",
                (domain.id,),
            ).fetchall()
        )
    assert first.questions == again.questions and len(first.questions) == 8
    assert [q.chunk_id for q in other.questions] != [q.chunk_id for q in first.questions]
    # Spread over the documents: eight questions, eight documents.
    assert len({q.document_id for q in first.questions}) == 8
    for question in first.questions:
        assert question.document_id == documents[question.chunk_id]
        assert question.text.endswith("?") and question.text.islower()
        chunk = texts[question.chunk_id].lower()
        assert question.text.rstrip("?") not in chunk
        assert not any(sentence in question.text for sentence in _sentences(chunk))
    # The chunk's rarest words are asked about: its subject, found nowhere else in the domain.
    part, problem, _ = SUBJECTS[int(first.questions[0].document_id[1:])]
    assert any(word in first.questions[0].text for word in (*part.split(), *problem.split()))
    assert first.calls == [] and first.usage.model_calls == 0


def test_sampling_takes_every_document_once_before_any_twice(
    module_pool: ConnectionPool, domain: Domain
) -> None:
    with module_pool.connection() as conn:
        order = sample_order(conn, domain, seed=0)
        owners: dict[int, int] = dict(
            conn.execute("SELECT id, document_id FROM chunks WHERE domain_id = %s", (domain.id,))
        )
    first_round = [owners[chunk_id] for chunk_id in order[: len(SUBJECTS)]]
    assert sorted(first_round) == sorted(set(first_round)) and len(first_round) == len(SUBJECTS)


def test_cli_writes_a_beir_folder_that_a_reranker_trains_on(
    module_settings: Settings, domain: Domain, tmp_path: Path
) -> None:
    out = tmp_path / "synthetic"
    done = run_cli("questions", "generate", "--domain", DOMAIN, "--out", str(out), env=_env(module_settings))
    assert done.returncode == 0, done.stderr
    assert f"{DOMAIN}: {len(SUBJECTS)} heuristic questions written to {out}" in done.stdout
    assert "(the domain gave only 12)" in done.stdout  # 300 asked for by default
    assert f"train-reranker --domain {DOMAIN} --dataset {out} --no-ingest" in done.stdout
    assert not (out / "corpus.jsonl").exists()
    assert (out / "qrels" / "train.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    queries, qrels = load_queries(out, "train"), load_qrels(out, "train")
    assert len(queries) == len(SUBJECTS) and all(len(qrels[q.id]) == 1 for q in queries)
    assert {doc for judged in qrels.values() for doc in judged} == {f"r{i}" for i in range(len(SUBJECTS))}
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["generator"] == "heuristic" and manifest["seed"] == 0

    trained = run_cli(
        "train-reranker",
        "--domain",
        DOMAIN,
        "--dataset",
        str(out),
        "--no-ingest",
        "--folds",
        "3",
        "--json",
        env=_env(module_settings),
    )
    assert trained.returncode == 0, trained.stderr
    decision = json.loads(trained.stdout)
    assert decision["split"] == "train" and decision["training_questions"] == len(SUBJECTS)
    assert isinstance(decision["promoted"], bool) and decision["id"] is not None

    again = run_cli("questions", "generate", "--domain", DOMAIN, "--out", str(out), env=_env(module_settings))
    assert again.returncode == 2 and "is not an empty folder" in again.stderr
    unknown = run_cli(
        "questions",
        "generate",
        "--domain",
        "nowhere",
        "--out",
        str(tmp_path / "x"),
        env=_env(module_settings),
    )
    assert unknown.returncode == 2 and "no domain 'nowhere'" in unknown.stderr


def test_a_domain_without_chunks_is_refused(
    module_pool: ConnectionPool, module_settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    with module_pool.connection() as conn:
        empty = ensure_domain(conn, "empty", embedder.name, embedder.dimension, HnswOptions())
        generator = HeuristicGenerator.for_domain(conn, empty, module_settings)
        with pytest.raises(RagError, match="has no chunk of 8 or more terms"):
            generate(conn, empty, generator, 5)


def test_model_questions_through_the_scripted_server(
    module_pool: ConnectionPool, module_settings: Settings, domain: Domain, tmp_path: Path
) -> None:
    def script(body: dict[str, Any]) -> str:
        passage = last_user_message(body)
        number = re.search(r"Title: (.+)", passage)
        assert number is not None and "Write one question" in body["messages"][0]["content"]
        return f'Question: "What limits the {number.group(1).lower()}?"\nIt is explained in the report.'

    with ScriptedLLM(script) as llm:
        settings = module_settings.model_copy(update={"openai_base_url": llm.base_url})
        generator = ModelGenerator(OpenAIChatModel(settings))
        with module_pool.connection() as conn:
            made = generate(conn, domain, generator, 5, seed=1)
        assert len(llm.requests) == 5
    assert len(made.questions) == 5 and made.generator == "llm"
    assert all(q.text.startswith("What limits the ") and q.text.endswith("?") for q in made.questions)
    assert made.usage.model_calls == 5 and made.usage.prompt_tokens > 0 and made.usage.cost_usd > 0
    assert {call.purpose for call in made.calls} == {"synthetic question"}
    write_folder(made, tmp_path / "llm", DOMAIN)
    assert json.loads((tmp_path / "llm" / MANIFEST).read_text())["usage"]["model_calls"] == 5


def test_cli_llm_generator_reports_usage(module_settings: Settings, domain: Domain, tmp_path: Path) -> None:
    with ScriptedLLM(lambda body: "How is the part tested?") as llm:
        done = run_cli(
            "questions",
            "generate",
            "--domain",
            DOMAIN,
            "--out",
            str(tmp_path / "q"),
            "--generator",
            "llm",
            "--questions",
            "3",
            "--json",
            env=_env(module_settings, OPENAI_BASE_URL=llm.base_url),
        )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # The same reply for every chunk: asked once, the repeats passed over.
    assert summary["questions"] == 1 and summary["skipped_chunks"] == len(SUBJECTS) - 1
    assert summary["usage"]["model_calls"] == len(SUBJECTS)


def test_a_model_trained_on_synthetic_questions_is_scored_on_real_judgements(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    domain: Domain,
    tmp_path: Path,
) -> None:
    with module_pool.connection() as conn:
        made = generate(conn, domain, HeuristicGenerator.for_domain(conn, domain, module_settings), 12)
    write_folder(made, tmp_path / "synthetic", DOMAIN)
    real = tmp_path / "real"
    (real / "qrels").mkdir(parents=True)
    questions = [
        {"_id": f"q{i}", "text": f"what limits the life of a {s[0]}?"} for i, s in enumerate(SUBJECTS)
    ]
    (real / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    judged = "".join(f"q{i}\tr{i}\t1\n" for i in range(len(SUBJECTS)))
    (real / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + judged)

    report = transfer(
        Searcher(module_pool, embedder, module_settings),
        tmp_path / "synthetic",
        "train",
        real,
        "test",
        DOMAIN,
    )
    assert report["training_questions"] == 12 and report["evaluated_questions"] == len(SUBJECTS)
    assert 0 < report["baseline_ndcg@10"] <= 1 and 0 < report["reranked_ndcg@10"] <= 1
    assert isinstance(report["promoted"], bool)
