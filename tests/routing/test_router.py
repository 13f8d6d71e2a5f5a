"""The query router: the built-in model, per-domain trained models, fallbacks, model routing, and `auto`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from evals.routing import oracle_label
from ingest.tables import import_table_files
from rag_server.api.app import create_app
from rag_server.config import Settings
from rag_server.demo import DEMO_TYPES, table_files
from rag_server.domains import Domain, HnswOptions, ensure_domain, get_domain
from rag_server.embedding import Embedder
from rag_server.errors import RagError
from rag_server.routing.features import FEATURE_NAMES, Vocabulary, handcrafted
from rag_server.routing.model import (
    DEFAULT_DATA,
    LabeledQuestion,
    featurize,
    load_labeled,
    save_model,
    train,
    training_catalogs,
)
from rag_server.routing.router import QueryRouter
from tests.conftest import run_cli
from tests.scripted_llm import ScriptedLLM


@pytest.fixture(scope="module")
def domains(module_pool: ConnectionPool, embedder: Embedder) -> dict[str, Domain]:
    with module_pool.connection() as conn:
        shop = ensure_domain(conn, "shop", embedder.name, embedder.dimension, HnswOptions())
        docs = ensure_domain(conn, "docs", embedder.name, embedder.dimension, HnswOptions())
    import_table_files(module_pool, shop, table_files(), DEMO_TYPES)
    return {"shop": shop, "docs": docs}


@pytest.fixture(scope="module")
def router(module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder) -> QueryRouter:
    return QueryRouter(module_pool, embedder, module_settings)


@pytest.fixture(scope="module")
def full_router(module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder) -> QueryRouter:
    """The built-in model's own choices, semantic and keyword included (RAG_ROUTER_BUILTIN=full)."""
    return QueryRouter(module_pool, embedder, module_settings.model_copy(update={"router_builtin": "full"}))


def feature(question: str, name: str, vocabulary: Vocabulary | None = None) -> float:
    return float(handcrafted(question, vocabulary or Vocabulary())[FEATURE_NAMES.index(name)])


def test_features_see_identifiers_aggregates_and_tables() -> None:
    vocabulary = Vocabulary.from_schema(
        ["orders.amount", "orders.order_date", "customers.plan"], ["enterprise"]
    )
    assert feature("ERR-4012 after v2.4.1 upgrade", "identifiers") == 2
    assert feature("how many orders per plan", "how_many") == 1
    assert feature("how many orders per plan", "table_mentions", vocabulary) > 0
    assert feature("total amount for Enterprise", "value_mentions", vocabulary) > 0
    assert feature("total amount for Enterprise", "has_tables") == 0  # the empty vocabulary: no tables


@pytest.mark.parametrize(
    ("question", "domain", "route", "untrained"),
    [
        ("ERR-4012", "shop", "keyword", "keyword"),
        ("198.51.100.24", "docs", "keyword", "keyword"),
        (
            "why does my dashboard stop refreshing when I close the laptop overnight",
            "docs",
            "semantic",
            "hybrid",
        ),
        ("How many refunds were approved per plan in 2025?", "shop", "sql", "sql"),
        ("Number of urgent tickets by category", "shop", "sql", "sql"),
        # A full question is not a document question: shape alone must not decide.
        ("What is the average refund amount for billing errors?", "shop", "sql", "sql"),
        ("What is the highest uptime credit you give for an outage?", "shop", "semantic", "hybrid"),
    ],
)
def test_default_model_routes_clear_cases(
    question: str,
    domain: str,
    route: str,
    untrained: str,
    router: QueryRouter,
    full_router: QueryRouter,
    domains: dict[str, Domain],
) -> None:
    """`route`: the built-in model's own choice. `untrained`: what a domain with no trained router gets by
    default, where its semantic and plain keyword choices become hybrid (they lost to hybrid on every shared
    set) and identifiers still go to keyword, analytical questions to sql."""
    decision = full_router.route(question, domains[domain])
    assert decision.route == route, decision
    assert decision.decided_by == "builtin" and 0 <= decision.confidence <= 1 and decision.reasons
    structural = router.route(question, domains[domain])
    assert structural.route == untrained, structural
    if untrained != route:
        # The model still says what it would have chosen.
        assert max(structural.probabilities, key=structural.probabilities.__getitem__) == route
        assert any("no router trained for this domain" in reason for reason in structural.reasons)


def test_a_domain_without_tables_is_never_routed_to_sql(
    router: QueryRouter, domains: dict[str, Domain]
) -> None:
    decision = router.route("How many refunds were approved per plan in 2025?", domains["docs"])
    assert decision.route != "sql" and decision.probabilities["sql"] == 0
    assert "no tables in this domain" in decision.reasons


def test_low_confidence_falls_back_to_hybrid_and_fans_out_to_sql(
    module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder, domains: dict[str, Domain]
) -> None:
    unsure = QueryRouter(
        module_pool, embedder, module_settings.model_copy(update={"router_min_confidence": 1.0})
    )
    decision = unsure.route("refunds for enterprise customers", domains["shop"])
    assert decision.route == "hybrid" and decision.fanout_sql
    assert "low confidence" in decision.reasons[0] and "sql" in decision.reasons[0]
    plain = unsure.route("why is the sky blue", domains["docs"])
    assert plain.route == "hybrid" and not plain.fanout_sql


def test_trained_models_are_versioned_per_domain(
    module_pool: ConnectionPool, router: QueryRouter, embedder: Embedder, domains: dict[str, Domain]
) -> None:
    # A deliberately odd labeling: every question about colours is keyword, about animals semantic.
    rows = [
        LabeledQuestion(f"{word} {tail}", "keyword", ())
        for word in ("red", "blue", "green")
        for tail in ("a", "b", "c")
    ]
    rows += [
        LabeledQuestion(f"{word} {tail}", "semantic", ())
        for word in ("cat", "dog", "horse")
        for tail in ("a", "b", "c")
    ]
    model = train(rows, embedder)
    with module_pool.connection() as conn, conn.transaction():
        first = save_model(conn, domains["docs"].id, model)
        second = save_model(conn, domains["docs"].id, model)
    assert second == first + 1
    decision = router.route("green c", domains["docs"])
    assert decision.decided_by == f"docs v{second}" and decision.route == "keyword"
    assert router.route("horse b", domains["docs"]).route == "semantic"
    assert router.route("ERR-4012", domains["shop"]).decided_by == "builtin"  # other domains unaffected


def test_built_in_rows_are_featurized_against_their_schemas_catalogs(embedder: Embedder) -> None:
    """Training sees value mentions and "the offline generator maps it" as serving does, not constant zeros."""
    catalogs = training_catalogs()
    rows = load_labeled(DEFAULT_DATA)
    schemas = {frozenset(row.schema) for row in rows if row.schema}
    assert schemas <= set(catalogs), "a built-in schema without a shipped catalog"
    saas = next(catalog for catalog in catalogs.values() if "subscriptions" in catalog.tables)
    assert "enterprise" in saas.table("subscriptions").column("plan").text_values
    names = tuple(f"{t.name}.{c.name}" for t in saas.tables.values() for c in t.columns)
    asked = [
        LabeledQuestion("how many urgent tickets per category", "sql", names),
        LabeledQuestion(
            "how many urgent tickets per category", "sql", ("tickets.priority", "tickets.category")
        ),
    ]
    features, _ = featurize(asked, embedder)
    values, expressible = FEATURE_NAMES.index("value_mentions"), FEATURE_NAMES.index("sql_expressible")
    assert features[0, values] > 0 and features[0, expressible] == 1
    assert features[1, values] == 0 and features[1, expressible] == 0  # bare names: no values, no catalog


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"question": "how many orders", "route": "sql"}', "missing field 'text'"),
        ("not json", "not a labeled question"),
        ('{"text": "how many orders", "route": "banana"}', "route 'banana' is not one of"),
    ],
)
def test_bad_labeled_rows_name_their_line(tmp_path: Path, row: str, message: str) -> None:
    data = tmp_path / "labels.jsonl"
    data.write_text('{"text": "ERR-4012", "route": "keyword"}\n' + row + "\n")
    with pytest.raises(RagError, match=f"labels.jsonl:2: {message}"):
        load_labeled(data)


def test_model_routing_is_counted_and_bounded(
    module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder, domains: dict[str, Domain]
) -> None:
    def script(body: dict[str, Any]) -> dict[str, Any]:
        assert body["tools"][0]["function"]["name"] == "choose_route"
        return {
            "tool": "choose_route",
            "arguments": {"route": "semantic", "confidence": 0.8, "reason": "prose"},
        }

    with ScriptedLLM(script) as llm:
        settings = module_settings.model_copy(
            update={"openai_base_url": llm.base_url, "router_llm": "always"}
        )
        from rag_server.llm import OpenAIChatModel

        decision = QueryRouter(module_pool, embedder, settings, OpenAIChatModel(settings)).route(
            "ERR-4012", domains["shop"]
        )
    assert decision.decided_by == "llm" and decision.route == "semantic" and decision.confidence == 0.8
    assert decision.model_calls[0].purpose == "route" and decision.model_calls[0].prompt_tokens > 0
    # A broken reply leaves the trained router's decision standing.
    with ScriptedLLM(lambda body: "not json") as llm:
        settings = module_settings.model_copy(
            update={"openai_base_url": llm.base_url, "router_llm": "always"}
        )
        from rag_server.llm import OpenAIChatModel

        kept = QueryRouter(module_pool, embedder, settings, OpenAIChatModel(settings)).route(
            "ERR-4012", domains["shop"]
        )
    assert kept.decided_by == "builtin" and kept.route == "keyword"


def test_oracle_ties_go_to_the_cheaper_route() -> None:
    assert oracle_label({"keyword": 0.5, "semantic": 0.5, "hybrid": 0.5}) == "keyword"
    assert oracle_label({"keyword": 0.1, "semantic": 0.6, "hybrid": 0.6}) == "semantic"
    assert oracle_label({"keyword": 0.1, "semantic": 0.5, "hybrid": 0.6}) == "hybrid"


def test_search_auto_carries_the_decision(module_settings: Settings, domains: dict[str, Domain]) -> None:
    with TestClient(create_app(module_settings)) as client:
        sql = client.post(
            "/v1/search", json={"query": "Customer count per region", "domain": "shop", "route": "auto"}
        )
        assert sql.status_code == 200, sql.text
        body = sql.json()
        assert body["route"] == "sql" and body["routing"]["route"] == "sql"
        assert body["sql"]["rows"] and "route" in body["timings_ms"]
        assert body["routing"]["before_embedding"] is True and "embed" not in body["timings_ms"]
        # The router's draft runs as is: the offline generator wrote it once, to decide; asked for sql
        # explicitly, the route writes it itself, the same SQL.
        assert "generate" not in body["timings_ms"]
        asked = client.post(
            "/v1/search", json={"query": "Customer count per region", "domain": "shop", "route": "sql"}
        ).json()
        assert "generate" in asked["timings_ms"] and asked["sql"]["sql"] == body["sql"]["sql"]
        explicit = client.post("/v1/search", json={"query": "x", "domain": "docs", "route": "keyword"}).json()
        assert explicit["routing"] == {
            "route": "keyword",
            "confidence": 1.0,
            "reasons": ["route requested explicitly"],
            "decided_by": "request",
            "probabilities": {},
            "fanout_sql": False,
            "fanout_documents": False,
            "model_calls": [],
            "before_embedding": False,
        }


def test_sure_keyword_questions_are_routed_before_embedding(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: Embedder,
    router: QueryRouter,
) -> None:
    with module_pool.connection() as conn:  # a domain of its own: no trained model from another test
        plain = ensure_domain(conn, "plain", embedder.name, embedder.dimension, HnswOptions())
    asked: list[str] = []

    def embedding(question: str) -> Any:
        def compute() -> np.ndarray:
            asked.append(question)
            return embedder.embed([question])[0]

        return compute

    code = router.route("ERR-4012", plain, embedding("ERR-4012"))
    assert code.route == "keyword" and code.confidence >= module_settings.router_surface_confidence
    assert code.before_embedding and not asked
    natural = "why does my dashboard stop refreshing when I close the laptop overnight"
    assert router.route(natural, plain, embedding(natural)).route == "hybrid"
    assert asked == [natural]
    # Turned off, every question is embedded first; the full model still says keyword.
    always = module_settings.model_copy(update={"router_surface_confidence": 1.0})
    full = QueryRouter(module_pool, embedder, always).route("ERR-4012", plain, embedding("ERR-4012"))
    assert full.route == "keyword" and asked == [natural, "ERR-4012"]
    assert not full.before_embedding
    with TestClient(create_app(module_settings)) as client:
        body = client.post(
            "/v1/search", json={"query": "ERR-4012", "domain": "plain", "route": "auto"}
        ).json()
    assert body["route"] == "keyword" and body["routing"]["before_embedding"] is True
    assert "embed" not in body["timings_ms"] and "route" in body["timings_ms"]


def test_train_router_cli_stores_a_version(settings: Settings, tmp_path: Path, embedder: Embedder) -> None:
    from rag_server.db import open_pool

    with open_pool(settings) as pool, pool.connection() as conn:
        ensure_domain(conn, "kb", embedder.name, embedder.dimension, HnswOptions())
    data = tmp_path / "labels.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": f"question {i}", "route": ("keyword", "semantic")[i % 2]}) + "\n"
            for i in range(12)
        )
    )
    env = {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]
    gated = run_cli("train-router", "--data", str(data), "--domain", "kb", "--json", env=env)
    assert gated.returncode == 0, gated.stderr
    assert "version" not in json.loads(gated.stdout)  # 3 held-out questions: too few for the gate
    assert "too few to judge" in json.loads(gated.stdout)["gate"]["reason"]
    done = run_cli("train-router", "--data", str(data), "--domain", "kb", "--no-gate", "--json", env=env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["version"] == 1 and metrics["rows"] > 800  # with the built-in data
    alone = run_cli("train-router", "--data", str(data), "--without-default", "--json", env=env)
    assert json.loads(alone.stdout)["rows"] == 12
    assert np.isfinite(json.loads(alone.stdout)["cv_accuracy"])
    assert "warning" not in done.stderr
    # Questions labeled sql for a domain whose tables are not imported yet: said, not silently trained on.
    with data.open("a") as labels:
        labels.write(json.dumps({"text": "how many orders per plan", "route": "sql"}) + "\n")
    warned = run_cli(
        "train-router", "--data", str(data), "--domain", "kb", "--without-default", "--no-gate", env=env
    )
    assert warned.returncode == 0, warned.stderr
    assert "domain 'kb' has no tables" in warned.stderr and "labeled sql (1)" in warned.stderr


def test_auto_falls_back_to_hybrid_when_sql_cannot_answer(
    module_settings: Settings, domains: dict[str, Domain]
) -> None:
    with TestClient(create_app(module_settings)) as client:
        body = client.post(
            "/v1/search",
            json={"query": "what share of tickets were resolved by plan", "domain": "shop", "route": "auto"},
        ).json()
    # One name for the route taken, whatever fell back.
    assert body["route"] == body["routing"]["route"]
    if body["routing"]["route"] == "sql":
        assert "cannot express" in body["sql_error"] and body["routing"]["fanout_documents"]
        assert all(chunk["route"] == "hybrid" for chunk in body["results"])


def test_expressible_questions_fan_out_to_sql(
    module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder, domains: dict[str, Domain]
) -> None:
    # A router that never says sql: analytical questions the tables can answer still reach SQL.
    rows = [
        LabeledQuestion(f"{w} question {i}", ("semantic", "keyword")[i % 2], ())
        for i, w in enumerate("abcdefghij")
    ]
    model = train(rows, embedder)
    with module_pool.connection() as conn, conn.transaction():
        ensure_domain(conn, "shop2", embedder.name, embedder.dimension, HnswOptions())
    with module_pool.connection() as conn:
        from rag_server.domains import get_domain

        shop2 = get_domain(conn, "shop2")
    import_table_files(module_pool, shop2, table_files(), DEMO_TYPES)
    with module_pool.connection() as conn, conn.transaction():
        save_model(conn, shop2.id, model)
    router = QueryRouter(
        module_pool, embedder, module_settings.model_copy(update={"router_min_confidence": 0.0})
    )
    decision = router.route("How many customers are on the team plan?", shop2)
    assert decision.route in {"semantic", "keyword"} and decision.fanout_sql
    assert any("offline generator" in reason for reason in decision.reasons)
    assert not router.route("why is the sky blue", shop2).fanout_sql


def test_unsure_or_empty_sql_brings_documents_beside_the_rows(
    module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder
) -> None:
    from ingest.pipeline import Ingestion
    from rag_server.demo import corpus_dir
    from rag_server.retrieval.search import Searcher
    from rag_server.retrieval.types import SearchRequest

    Ingestion.from_settings(module_pool, module_settings).run([corpus_dir()], "both")
    with module_pool.connection() as conn:
        both = get_domain(conn, "both")
    import_table_files(module_pool, both, table_files(), DEMO_TYPES)
    sure = Searcher(module_pool, embedder, module_settings)
    rows = sure.search(SearchRequest("Customer count per region", "both", "auto"))
    assert rows.route == "sql" and rows.sql is not None and rows.sql.rows and not rows.chunks
    assert rows.routing is not None and not rows.routing.fanout_documents
    # Sure from its surface, and mapped onto the tables: the rows need no embedding, so none was computed.
    assert rows.routing.before_embedding and "embed" not in rows.timings_ms
    # Less sure of sql than RAG_ROUTER_SQL_CONFIDENCE: the same rows, and hybrid chunks beside them.
    unsure_settings = module_settings.model_copy(update={"router_sql_confidence": 1.0})
    unsure = Searcher(module_pool, embedder, unsure_settings)
    both_ways = unsure.search(SearchRequest("Customer count per region", "both", "auto"))
    assert both_ways.sql is not None and both_ways.sql.rows == rows.sql.rows
    assert both_ways.chunks and {chunk.route for chunk in both_ways.chunks} == {"hybrid"}
    assert both_ways.routing is not None and both_ways.routing.fanout_documents
    assert not both_ways.routing.before_embedding and "embed" in both_ways.timings_ms
    assert any(reason.startswith("documents too") for reason in both_ways.routing.reasons)
    # A query that finds nothing: the tables may not hold the answer, so the chunks are searched too.
    empty = sure.search(SearchRequest("Total amount refunded in 1999", "both", "auto"))
    assert empty.route == "sql" and empty.sql is not None
    assert all(value is None for row in empty.sql.rows for value in row)
    assert empty.chunks and empty.routing is not None and empty.routing.fanout_documents
    assert "documents too: the query found no rows" in empty.routing.reasons
    assert empty.routing.before_embedding and "embed" in empty.timings_ms  # embedded for the chunks only
    with TestClient(create_app(unsure_settings)) as client:
        body = client.post(
            "/v1/search", json={"query": "Customer count per region", "domain": "both", "route": "auto"}
        ).json()
    assert body["route"] == "sql" and body["sql"]["rows"] and body["results"]
    assert body["routing"]["fanout_documents"] is True
    assert len(body["citations"]) == len(body["results"]) + 1


def test_multiquery_expansion_searches_the_models_rephrasings(
    module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder
) -> None:
    from ingest.pipeline import Ingestion
    from rag_server.demo import corpus_dir
    from rag_server.retrieval.search import Searcher
    from rag_server.retrieval.types import SearchRequest

    Ingestion.from_settings(module_pool, module_settings).run([corpus_dir()], "mq")
    script = lambda body: '["refund policy for annual plans", "money back on a yearly subscription"]'  # noqa: E731
    with ScriptedLLM(script) as llm:
        settings = module_settings.model_copy(
            update={
                "openai_base_url": llm.base_url,
                "semantic_expansion": "multiquery",
                "sql_generator": "deterministic",
            }
        )
        searcher = Searcher(module_pool, embedder, settings)
        result = searcher.search(SearchRequest("zqx", "mq", "semantic", 5))
    assert "expand" in result.timings_ms and result.model_calls[0].purpose == "multiquery"
    assert result.chunks[0].external_id == "policies/refund-policy.md"
    assert searcher.sql.model is None  # RAG_SQL_GENERATOR=deterministic keeps SQL offline
    assert llm.requests[0]["messages"][1]["content"] == "zqx"


def test_a_table_is_also_named_by_its_descriptions_label(
    router: QueryRouter, domains: dict[str, Domain]
) -> None:
    vocabulary = router.vocabulary(domains["shop"])  # orders: "Invoices: one row per subscription charge ..."
    assert {"invoice", "invoices"} <= vocabulary.tables
    assert feature("the biggest paid invoice", "table_mentions", vocabulary) > 0
    assert "lumen" not in vocabulary.tables  # customers: "Lumen customers: ...", only the label's noun


def test_the_vocabulary_follows_new_joins(
    router: QueryRouter, domains: dict[str, Domain], module_pool: ConnectionPool
) -> None:
    from rag_server.sql.catalog import add_join

    before = router.vocabulary(domains["shop"]).catalog
    assert before is not None
    with module_pool.connection() as conn:
        add_join(conn, domains["shop"], "tickets.ticket_id", "refunds.refund_id")  # new, if odd
    after = router.vocabulary(domains["shop"]).catalog
    assert after is not None and len(after.joins) == len(before.joins) + 1


def test_the_demo_router_is_retrained_when_its_training_data_changes(
    module_pool: ConnectionPool, module_settings: Settings, embedder: Embedder
) -> None:
    from rag_server.demo import DEMO_DOMAIN
    from rag_server.routing.model import load_model
    from rag_server.services.demo import train_demo_router

    with module_pool.connection() as conn:
        demo = ensure_domain(conn, DEMO_DOMAIN, embedder.name, embedder.dimension, HnswOptions())
    first = train_demo_router(module_pool, module_settings)
    assert first is not None and first.startswith("v1")
    assert train_demo_router(module_pool, module_settings) is None  # same data and code: kept

    def store(version: int, **metrics: str) -> None:
        with module_pool.connection() as conn, conn.transaction():
            model = load_model(conn, demo.id, version)
            model.metrics.update(metrics)
            save_model(conn, demo.id, model)

    store(1, fingerprint="trained-before-an-upgrade")  # v2: stale
    retrained = train_demo_router(module_pool, module_settings)
    assert retrained is not None and retrained.startswith("v3")
    store(3, source="train-router", fingerprint="")  # v4: the user's own model
    assert train_demo_router(module_pool, module_settings) is None
