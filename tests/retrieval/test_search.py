"""The three routes through `Searcher`, on the demo corpus in the embedded Postgres."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from psycopg_pool import ConnectionPool
from rank_bm25 import BM25Okapi

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.config import Settings
from rag_server.demo import corpus_dir
from rag_server.domains import HnswOptions, ensure_domain_index, get_domain
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import NotFound, RetrievalError
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import SearchRequest
from tests.conftest import run_cli

DOMAIN = "demo"


@pytest.fixture(scope="module")
def searcher(
    module_pool: ConnectionPool, module_settings: Settings, embedder: SentenceTransformerEmbedder
) -> Searcher:
    options = IngestOptions.from_settings(module_settings)
    Ingestion(module_pool, embedder, Analyzer(), options).run([corpus_dir()], DOMAIN)
    return Searcher(module_pool, embedder, module_settings)


@pytest.mark.parametrize("route", ["semantic", "keyword", "hybrid"])
def test_every_route_ranks_chunks_with_timings(searcher: Searcher, route: str) -> None:
    result = searcher.search(SearchRequest("How do I reset my password?", DOMAIN, route, 5))  # type: ignore[arg-type]
    assert result.route == route and 1 <= len(result.chunks) <= 5
    assert all(chunk.route == route for chunk in result.chunks)
    assert [c.score for c in result.chunks] == sorted((c.score for c in result.chunks), reverse=True)
    assert result.chunks[0].external_id == "howto/reset-password.md"
    expected_stages = {"semantic": {"embed", "semantic"}, "keyword": {"keyword"}}.get(
        route, {"embed", "semantic", "keyword", "fuse"}
    )
    assert set(result.timings_ms) == expected_stages and all(ms >= 0 for ms in result.timings_ms.values())


def test_identifier_query_is_found_by_keyword(searcher: Searcher) -> None:
    result = searcher.search(SearchRequest("SYNC-422", DOMAIN, "keyword", 3))
    assert result.chunks[0].external_id == "errors/sync-422-schema-mismatch.md"


def test_keyword_scores_equal_rank_bm25_on_the_stored_terms(
    module_pool: ConnectionPool, module_settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    # Without query expansion the keyword route is plain BM25Okapi.
    searcher = Searcher(
        module_pool, embedder, module_settings.model_copy(update={"keyword_expansion": "none"})
    )
    with module_pool.connection() as conn:
        domain = get_domain(conn, DOMAIN)
        rows = conn.execute(
            "SELECT id, terms FROM chunks WHERE domain_id = %s ORDER BY id", (domain.id,)
        ).fetchall()
    ids = np.array([row[0] for row in rows])
    reference = BM25Okapi([row[1] for row in rows])  # the same k1, b, epsilon defaults
    for query in ["refund policy for annual plans", "ERR-4029 rate limit", "SAML single sign-on setup"]:
        scores = reference.get_scores(searcher.keyword.analyzer.terms(query))
        expected = ids[np.argsort(-scores, kind="stable")[:10]]
        result = searcher.search(SearchRequest(query, DOMAIN, "keyword", 10))
        assert [chunk.chunk_id for chunk in result.chunks] == list(expected)
        by_id = dict(zip(ids, scores, strict=True))
        assert all(abs(chunk.score - by_id[chunk.chunk_id]) < 1e-6 for chunk in result.chunks)


def test_filters_return_k_results_even_when_selective(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
) -> None:
    # 120 documents, 3 of them for team "rare": the filter keeps few of the HNSW's nearest neighbours.
    records = [
        {
            "id": f"n{n}",
            "text": f"Note {n} about billing invoices and payments.",
            "metadata": {"team": "common"},
        }
        for n in range(117)
    ]
    records += [
        {"id": f"r{n}", "text": f"Rare note {n} on kitchen recipes.", "metadata": {"team": "rare"}}
        for n in range(3)
    ]
    (tmp_path / "notes.jsonl").write_text("\n".join(json.dumps(record) for record in records))
    options = IngestOptions.from_settings(module_settings)
    Ingestion(module_pool, embedder, Analyzer(), options).run([tmp_path / "notes.jsonl"], "filtered")
    searcher = Searcher(module_pool, embedder, module_settings)
    for route in ("semantic", "keyword", "hybrid"):
        query = "billing invoices payments"
        rare = searcher.search(SearchRequest(query, "filtered", route, 2, {"team": "rare"}))  # type: ignore[arg-type]
        wanted = 2 if route != "keyword" else 0  # "billing invoices" never occurs in the rare notes
        assert len(rare.chunks) == wanted and all(c.external_id.startswith("r") for c in rare.chunks)
        common = searcher.search(SearchRequest(query, "filtered", route, 10, {"team": "common"}))  # type: ignore[arg-type]
        assert len(common.chunks) == 10 and all(c.external_id.startswith("n") for c in common.chunks)
    recipes = searcher.search(SearchRequest("recipes", "filtered", "keyword", 10, {"team": "rare"}))
    assert sorted(c.external_id for c in recipes.chunks) == ["r0", "r1", "r2"]


@pytest.mark.slow
def test_an_ingest_in_another_process_is_found_at_once(
    searcher: Searcher, module_settings: Settings, tmp_path: Path
) -> None:
    query = "quasar flux capacitor QX-9001"
    assert not searcher.search(SearchRequest(query, DOMAIN, "keyword", 5)).chunks  # the index is built now
    (tmp_path / "new.md").write_text(
        "# QX-9001\n\nThe quasar flux capacitor QX-9001 overheats when left on.\n"
    )
    url = module_settings.database_url.get_secret_value()  # type: ignore[union-attr]
    done = run_cli("ingest", str(tmp_path / "new.md"), "--domain", DOMAIN, env={"DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    for route in ("keyword", "semantic", "hybrid"):
        result = searcher.search(SearchRequest(query, DOMAIN, route, 3))  # type: ignore[arg-type]
        assert result.chunks[0].external_id == "new.md", route


def test_bad_requests_are_refused_clearly(searcher: Searcher) -> None:
    with pytest.raises(NotFound, match="no domain 'nope'"):
        searcher.search(SearchRequest("x", "nope", "keyword", 5))
    with pytest.raises(RetrievalError, match="unknown route"):
        searcher.search(SearchRequest("x", DOMAIN, "fuzzy", 5))  # type: ignore[arg-type]
    with pytest.raises(RetrievalError, match="k must be"):
        searcher.search(SearchRequest("x", DOMAIN, "keyword", 0))
    with pytest.raises(RetrievalError, match="empty"):
        searcher.search(SearchRequest("   ", DOMAIN, "keyword", 5))
    # Only stop words: no terms, no results, no error.
    assert searcher.search(SearchRequest("the of and", DOMAIN, "keyword", 5)).chunks == []


def test_halfvec_index_finds_the_same_neighbours(
    searcher: Searcher,
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
) -> None:
    half = module_settings.model_copy(update={"vector_precision": "halfvec"})
    with module_pool.connection() as conn:
        domain = get_domain(conn, DOMAIN)
        ensure_domain_index(conn, domain, HnswOptions.from_settings(half))
        indexes = {
            row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")
        }
    assert domain.index_name("halfvec") in indexes
    half_searcher = Searcher(module_pool, embedder, half)
    for query in ("How do I reset my password?", "invoice was charged twice", "single sign-on with Okta"):
        full = searcher.search(SearchRequest(query, DOMAIN, "semantic", 5)).chunks
        halved = half_searcher.search(SearchRequest(query, DOMAIN, "semantic", 5)).chunks
        assert [c.chunk_id for c in halved][:3] == [c.chunk_id for c in full][:3]
    with module_pool.connection() as conn:
        vector = embedder.embed(["reset password"])[0]
        conn.execute("SET enable_sort = off")  # as semantic_search does without filters
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT id FROM chunks WHERE domain_id = {domain.id}"
                " ORDER BY embedding::halfvec(384) <=> %s::halfvec(384) LIMIT 5",
                (vector,),
            )
        )
    assert domain.index_name("halfvec") in plan


def test_rm3_expansion_adds_feedback_terms_and_keeps_the_query(
    searcher: Searcher, module_pool: ConnectionPool
) -> None:
    from rag_server.retrieval.keyword import Expansion, _expanded

    with module_pool.connection() as conn:
        domain = get_domain(conn, DOMAIN)
        built = searcher.keyword.current(conn, domain)
        terms = searcher.keyword.analyzer.terms("reset password")
        feedback = built.index.search(terms, 5)
        query = _expanded(conn, terms, feedback, Expansion(documents=5, terms=8, keep=0.6))
    assert all(term in query for term in terms)
    assert sum(query[t] for t in terms) >= 0.6 - 1e-9  # the original terms keep at least their share
    assert len(query) > len(terms) and abs(sum(query.values()) - 1.0) < 1e-6
    result = searcher.search(SearchRequest("reset password", DOMAIN, "keyword", 3))
    assert result.chunks[0].external_id == "howto/reset-password.md"


def test_routing_metadata_says_when_the_route_was_the_default(searcher: Searcher) -> None:
    """Nobody asked for a route: the response must not claim the request did."""
    asked = searcher.search(SearchRequest("reset password", DOMAIN, "hybrid", 3)).routing
    assert asked is not None and asked.decided_by == "request"
    hybrid_default = searcher.settings.model_copy(update={"default_route": "hybrid"})
    defaulted = Searcher(searcher.pool, searcher.embedder, hybrid_default).search(
        SearchRequest("reset password", DOMAIN, None, 3)
    )
    assert defaulted.route == "hybrid" and defaulted.routing is not None
    assert defaulted.routing.decided_by == "default" and "RAG_DEFAULT_ROUTE" in defaulted.routing.reasons[0]
    routed = searcher.search(SearchRequest("reset password", DOMAIN, None, 3)).routing
    assert routed is not None and routed.decided_by not in ("request", "default")
