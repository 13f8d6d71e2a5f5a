"""Per-domain chunk tuning: the chunk grid, promotion (the domain re-chunked, its later ingests and searches
following the tuned chunks), refusal (nothing re-ingested), scratch domains deleted even when interrupted, and
a data set without a corpus refused.

The domain is built so that small chunks clearly win: each question's document is a long report of filler
with the one sentence that answers it at the end, and a short "decoy" names the same landmark without the
answer. Chunked at 400 tokens the report is one chunk whose sentence lies past the embedding model's
256-token window (and BM25 divides its few matching terms by its length): the decoy comes first. Chunked at
64 tokens the sentence's chunk is found on both routes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

import evals.tune_chunks
from evals.tune_chunks import chunk_grid, chunk_label, scratch_domain, tune_chunks
from ingest.pipeline import Ingestion, IngestOptions
from rag_server.config import Settings
from rag_server.domains import get_domain, list_domains
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import ConfigError
from rag_server.retrieval import tuning as tunings
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.tuning import TuningRegistry, checked
from rag_server.retrieval.types import SearchRequest
from tests.conftest import run_cli

DOMAIN = "reports"
LANDMARKS = [
    "Alder bridge", "Birch tower", "Cedar gate", "Delta pier", "Elm fountain", "Fir lighthouse", "Granite arch",
    "Hazel mill", "Iris chapel", "Juniper dam", "Kestrel lock", "Larch pavilion", "Maple viaduct",
    "Nettle windmill", "Oak bandstand", "Poplar quay", "Quartz obelisk", "Rowan aqueduct", "Spruce belfry",
    "Thistle ferry",
]  # fmt: skip
CREWS = ["harbour council", "river guild", "parish volunteers", "county engineers", "school pupils"]
COLOURS = ["green", "crimson", "ochre", "violet", "teal"]
FILLER = [
    "The quarterly meeting began with a review of the catering invoices.",
    "Parking permits for the east lot will be renewed in the autumn.",
    "Several members asked for the minutes to be circulated earlier.",
    "The printer on the second floor still jams on heavy paper.",
    "A new coffee supplier was chosen after a short tasting session.",
    "Attendance at the winter lectures rose compared with last year.",
    "The newsletter will move to a monthly schedule from January.",
    "Volunteers are needed to sort the donated books in the annex.",
    "The heating in the archive room was serviced in November.",
    "Members approved a small increase to the stationery budget.",
    "The website's event calendar now shows recurring sessions.",
    "Lost property from the summer fair is kept at the front desk.",
    "The board thanked the retiring treasurer for many years of service.",
    "Minor repairs to the kitchen cupboards were completed on time.",
    "The photography club will exhibit prints in the main hall.",
]


def _dataset(folder: Path, with_corpus: bool = True) -> Path:
    rng = random.Random(7)
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for i, landmark in enumerate(LANDMARKS):
        crew, colour = CREWS[i % len(CREWS)], COLOURS[i % len(COLOURS)]
        filler = " ".join(rng.choice(FILLER) for _ in range(26))
        fact = f"The {landmark} was repainted {colour} by the {crew} last spring."
        corpus.append({"_id": f"report-{i}", "title": f"Minutes {i}", "text": f"{filler} {fact}"})
        corpus.append(
            {"_id": f"decoy-{i}", "title": landmark, "text": f"The {landmark} opens to visitors at nine."}
        )
        queries.append({"_id": f"q{i}", "text": f"which colour did the {crew} repaint the {landmark}"})
        qrels.append(f"q{i}\treport-{i}\t1")
    folder.mkdir(parents=True, exist_ok=True)
    if with_corpus:
        (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def _env(settings: Settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]


# --- the chunk grid ----------------------------------------------------------------------------------------


def test_chunk_grid_keeps_overlaps_smaller_than_their_size() -> None:
    assert [chunk_label(c) for c in chunk_grid([64, 200], [0, 100])] == ["64/0", "200/0", "200/100"]
    with pytest.raises(ValueError, match="overlap"):
        chunk_grid([32], [32])
    with pytest.raises(ValueError):
        chunk_grid([8], [0])  # below the smallest chunk size a setting accepts
    with pytest.raises(ConfigError):
        checked({"chunk_size": 64, "chunk_overlap": 64})
    assert scratch_domain("docs", {"chunk_size": 64, "chunk_overlap": 16}) == "docs--chunks-64-16"
    assert len(scratch_domain("x" * 63, {"chunk_size": 320, "chunk_overlap": 30})) == 63


def test_chunk_sizes_need_a_corpus(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "no-corpus", with_corpus=False)
    done = run_cli(
        "tune", "--domain", DOMAIN, "--dataset", str(dataset), "--no-ingest", "--chunk-sizes", "64"
    )
    assert done.returncode == 2 and "no corpus.jsonl" in done.stderr, done.stderr


# --- a tiny labeled domain chunked too coarsely -------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dataset(tmp_path_factory.mktemp("reports") / "reports")


@pytest.fixture(scope="module")
def coarse(module_settings: Settings) -> Settings:
    """The global settings chunk at 400 tokens, no overlap."""
    return module_settings.model_copy(
        update={"chunk_size": 400, "chunk_overlap": 0, "answer_cache": "off", "abstention": "never"}
    )


@pytest.fixture(scope="module")
def searcher(
    module_pool: ConnectionPool, coarse: Settings, embedder: SentenceTransformerEmbedder, dataset: Path
) -> Searcher:
    Ingestion(module_pool, embedder, Analyzer(), IngestOptions.from_settings(coarse)).run([dataset], DOMAIN)
    found = Searcher(module_pool, embedder, coarse)
    found.tunings = TuningRegistry(module_pool, ttl_s=0)
    return found


def _chunks(pool: ConnectionPool, domain: str) -> list[tuple[int, int]]:
    """(id, token count) of the domain's chunks."""
    with pool.connection() as conn:
        found = get_domain(conn, domain)
        rows = conn.execute(
            "SELECT id, token_count FROM chunks WHERE domain_id = %s ORDER BY id", (found.id,)
        )
        return [(int(row[0]), int(row[1])) for row in rows]


def _scratch(pool: ConnectionPool) -> list[str]:
    with pool.connection() as conn:
        return [d.name for d in list_domains(conn) if "--chunks-" in d.name]


@pytest.mark.slow
def test_an_interrupted_run_leaves_no_scratch_domain(
    searcher: Searcher, module_pool: ConnectionPool, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = evals.tune_chunks.score

    def interrupted(searcher: Searcher, domain: str, *args: object, **kwargs: object) -> object:
        if domain != DOMAIN:
            assert _scratch(module_pool) == [domain]  # ingested, then Ctrl-C while it is scored
            raise KeyboardInterrupt
        return real(searcher, domain, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(evals.tune_chunks, "score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune_chunks(searcher, dataset, DOMAIN, "test", chunk_grid([64], [16]))
    assert _scratch(module_pool) == []
    with module_pool.connection() as conn:
        assert tunings.decisions(conn, DOMAIN) == []


@pytest.mark.slow
def test_a_better_chunking_is_promoted_and_rechunks_the_domain_then_nothing_beats_it(
    searcher: Searcher,
    module_pool: ConnectionPool,
    module_settings: Settings,
    coarse: Settings,
    dataset: Path,
) -> None:
    question = f"which colour did the {CREWS[3]} repaint the {LANDMARKS[3]}"
    before = _chunks(module_pool, DOMAIN)
    assert max(tokens for _, tokens in before) > 256 and len(before) == 2 * len(LANDMARKS)

    run = tune_chunks(searcher, dataset, DOMAIN, "test", chunk_grid([64, 160], [16]))
    decision = run.decision
    assert decision["promoted"] is True, decision["reason"]
    assert run.settings == {"chunk_size": 64, "chunk_overlap": 16} == decision["chosen_settings"]
    assert decision["current_settings"] == {"chunk_size": 400, "chunk_overlap": 0}
    assert [c["label"] for c in decision["configurations"]] == ["400/0", "64/16", "160/16"]
    assert decision["tuned_ndcg@10"] >= decision["baseline_ndcg@10"] + 0.1 and decision["p_value"] < 0.05
    assert _scratch(module_pool) == []

    # The domain is re-chunked at 64 tokens, and its searches (named by the new tuning) find the sentence.
    assert run.rechunked is not None and run.rechunked.documents_updated == 2 * len(LANDMARKS)
    after = _chunks(module_pool, DOMAIN)
    assert max(tokens for _, tokens in after) <= 64 and len(after) > 3 * len(before)
    served = searcher.search(SearchRequest(question, DOMAIN, "hybrid", 10))
    assert served.tuning == f"tuning#{run.tuning_id}"
    assert served.chunks[0].external_id == "report-3" and "repainted" in served.chunks[0].text

    # A later ingest of the domain chunks as its tuning says, although the global settings say 400 tokens.
    again = Ingestion.from_settings(module_pool, coarse).run([dataset], DOMAIN)
    assert again.documents_unchanged == 2 * len(LANDMARKS) and again.documents_updated == 0
    assert _chunks(module_pool, DOMAIN) == after

    # Tuned again through the CLI: 400 tokens loses to the promoted 64; refused, nothing re-ingested.
    done = run_cli(
        "tune",
        "--domain",
        DOMAIN,
        "--dataset",
        str(dataset),
        "--no-ingest",
        "--chunk-sizes",
        "400",
        "--chunk-overlaps",
        "0",
        "--expansions",
        "none",
        "--fusions",
        "convex",
        "--weights",
        "0.7",
        "--depths",
        "100",
        "--json",
        env=_env(module_settings),
    )
    assert done.returncode == 0, done.stderr
    chunking = json.loads(done.stdout)["chunking"]
    assert chunking["promoted"] is False and chunking["current"] == f"tuning#{run.tuning_id}", chunking
    assert [(c["label"], c["train_ndcg@10"] < chunking["configurations"][0]["train_ndcg@10"]) for c in
            chunking["configurations"]] == [("64/16", False), ("400/0", True)]  # fmt: skip
    assert _chunks(module_pool, DOMAIN) == after and _scratch(module_pool) == []
    with module_pool.connection() as conn:
        rows = tunings.decisions(conn, DOMAIN)
        assert tunings.promoted(conn, get_domain(conn, DOMAIN).id) == (run.tuning_id, run.settings)
    assert [(row.promoted, row.decision.get("kind")) for row in rows] == [
        (True, "chunking"),
        (False, "chunking"),
        (False, None),  # the retrieval grid, run after the chunking on the domain as it is chunked
    ]
