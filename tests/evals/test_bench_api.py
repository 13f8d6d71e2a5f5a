"""`rag-server bench api`, tiny: a served API measured at one level of clients, next to the in-process calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.bench_api import request_headers
from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from tests.api.conftest import ingest
from tests.conftest import run_cli


def test_request_headers_carry_a_key_only_when_given() -> None:
    assert "authorization" not in request_headers()
    assert request_headers("rk_x")["authorization"] == "Bearer rk_x"


@pytest.mark.slow
def test_bench_api_measures_search_and_cached_ask(
    settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.txt").write_text("Invoices are sent on the first day of each month.\n")
    (corpus / "refunds.md").write_text("# Refunds\n\nRefunds are approved within 14 days of a request.\n")
    ingest(settings, embedder, corpus, "tiny")
    out = tmp_path / "bench.json"
    env = {
        "DATABASE_URL": settings.database_url.get_secret_value(),  # type: ignore[union-attr]
        "RAG_DATA_DIR": str(settings.data_dir),
    }
    args = ["--domain", "tiny", "--workers", "1", "--clients", "2", "--requests", "6", "--seconds", "30"]
    done = run_cli(
        "bench", "api", *args, "--question", "When are invoices sent?", "--json", str(out), env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["domain"] == "tiny" and result["workers"] == 1 and result["levels"] == [2]
    for endpoint in ("search", "ask_cached"):
        level = result[endpoint]["levels"]["2"]
        assert level["requests"] == 6 and level["errors"] == 0
        assert level["requests_per_s"] > 0 and 0 < level["p50_ms"] <= level["p95_ms"]
        assert result[endpoint]["in_process_ms"]["p50"] > 0 and level["p50_over_in_process"] > 0
    assert result["ask_cached"]["levels"]["2"]["cache_hit_share"] == 1.0  # every repeat came from the cache
    uncached = result["search_uncached"]  # a second server, every query embedded
    assert uncached["embedding_cache"] == "off" and uncached["levels"]["2"]["requests"] == 6
    assert uncached["levels"]["2"]["errors"] == 0
    # Targets are named with what was measured; a level not run leaves a target unmeasured.
    assert result["against_targets"]["search_rps_at_8_clients"]["measured"] is None
    assert (
        result["against_targets"]["ask_cached_p50_ms"]["measured"]
        == result["ask_cached"]["levels"]["2"]["p50_ms"]
    )
    assert (
        "/v1/ask cached" in done.stdout
        and "ratio" in done.stdout
        and "RAG_EMBEDDING_CACHE_SIZE=0" in done.stdout
    )
