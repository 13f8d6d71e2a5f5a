"""The sql route as users reach it: the CLI (ingest, tables, sql run, search, eval sql) and the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evals.sql_data import load_questions
from ingest.tables import import_table_files
from rag_server.api.app import create_app
from rag_server.config import Settings
from rag_server.db import open_pool
from rag_server.demo import DEMO_TYPES, table_files, tables_dir
from rag_server.domains import HnswOptions, ensure_domain
from rag_server.embedding import Embedder
from tests.conftest import REPO, SHARED_DATA, run_cli
from tests.scripted_llm import ScriptedLLM

DEFOG = SHARED_DATA / "sql" / "defog"
DEMO_SET = REPO / "evals" / "sets" / "demo"


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "RAG_DATA_DIR": str(settings.data_dir),
        **extra,
    }


def test_ingest_tables_list_and_run(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(settings)
    (tmp_path / "orders.csv").write_text("order_id,amount,status\n1,10.5,paid\n2,3,failed\n")
    (tmp_path / "broken.csv").write_text("a,b\n1,2,3\n")
    (tmp_path / "note.md").write_text("# Orders\n\nOrders are paid monthly.\n")
    done = run_cli(
        "ingest", str(tmp_path), "--domain", "shopcli", "--type", "amount=numeric(8,2)", "--json", env=env
    )
    assert done.returncode == 1, done.stderr  # broken.csv failed, the rest landed
    report = json.loads(done.stdout)
    assert report["documents_added"] == 1
    assert [t["table"] for t in report["tables"]["imported"]] == ["orders"]
    assert "broken.csv" in report["tables"]["failed"][0]["path"]
    listed = json.loads(run_cli("tables", "list", "--domain", "shopcli", "--json", env=env).stdout)
    assert listed["tables"][0]["name"] == "orders" and listed["tables"][0]["row_count"] == 2
    ran = run_cli("sql", "run", "SELECT sum(amount) AS total FROM orders", "--domain", "shopcli", env=env)
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["total", "13.5"], ran.stderr
    hostile = run_cli("sql", "run", "SELECT 1 FROM orders; DROP TABLE orders", "--domain", "shopcli", env=env)
    assert (
        hostile.returncode == 2 and "single_statement" in hostile.stderr and "Traceback" not in hostile.stderr
    )
    found = run_cli(
        "search", "how many orders failed", "--domain", "shopcli", "--route", "sql", "--json", env=env
    )
    assert json.loads(found.stdout)["sql"]["rows"] == [[1]], found.stderr


def test_eval_sql_gold_on_the_demo_set(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "gold.json"
    done = run_cli(
        "eval",
        "sql",
        "--dataset",
        str(DEMO_SET),
        "--tables",
        str(tables_dir()),
        "--gold",
        "--json",
        str(out),
        env=cli_env(settings),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["gold_total"] == report["gold_passed"] == 30


@pytest.mark.shared_data
@pytest.mark.slow
def test_eval_sql_gold_on_defog_has_no_false_rejections(settings: Settings, tmp_path: Path) -> None:
    if not DEFOG.is_dir():
        pytest.skip("../shared/data/sql/defog is absent")
    out = tmp_path / "gold.json"
    done = run_cli(
        "eval", "sql", "--dataset", str(DEFOG), "--gold", "--json", str(out), env=cli_env(settings)
    )
    report = json.loads(out.read_text())
    assert report["failures"] == [] and report["gold_passed"] == report["gold_total"] >= 100, done.stderr
    assert done.returncode == 0


@pytest.mark.shared_data
@pytest.mark.slow
def test_eval_sql_accuracy_with_a_model_on_defog(settings: Settings, tmp_path: Path) -> None:
    """The scripted model answers every third question wrongly, the rest with the gold SQL: the eval must count
    exactly that, through the real openai client and the whole route."""
    if not DEFOG.is_dir():
        pytest.skip("../shared/data/sql/defog is absent")
    questions = load_questions(DEFOG)
    gold = {q.question: q.gold[0] for q in questions}
    wrong = {q.question for q in questions[::3]}

    def script(body: dict[str, Any]) -> str:
        question = next(
            m["content"] for m in body["messages"] if m["role"] == "user" and m["content"] in gold
        )
        if question in wrong:
            return "```sql\nSELECT 'not an answer' AS wrong\n```"
        return f"```sql\n{gold[question]}\n```"

    out = tmp_path / "accuracy.json"
    with ScriptedLLM(script) as llm:
        done = run_cli(
            "eval",
            "sql",
            "--dataset",
            str(DEFOG),
            "--json",
            str(out),
            env=cli_env(settings, OPENAI_BASE_URL=llm.base_url),
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["generator"] == "llm" and report["questions"] == len(questions)
    assert report["correct"] == len(questions) - len(wrong)
    assert {r["question"] for r in report["results"] if not r["correct"]} == wrong
    assert "| date_functions |" in done.stdout


@pytest.fixture(scope="module")
def client(module_settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    with open_pool(module_settings) as pool:
        with pool.connection() as conn:
            domain = ensure_domain(conn, "demo", embedder.name, embedder.dimension, HnswOptions())
        import_table_files(pool, domain, table_files(), DEMO_TYPES)
    with TestClient(create_app(module_settings)) as test_client:
        yield test_client


def test_api_sql_route_returns_rows_and_a_citation(client: TestClient) -> None:
    response = client.post(
        "/v1/search",
        json={"query": "How many customers are on the business plan?", "domain": "demo", "route": "sql"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["route"] == "sql" and body["results"] == []
    assert body["sql"]["rows"] == [[95]] and body["sql"]["generator"] == "deterministic"
    assert body["citations"] == [body["sql"]["citation"]] and body["citations"][0]["kind"] == "table"
    assert {"generate", "validate", "execute"} <= set(body["timings_ms"])


@pytest.mark.parametrize(
    ("query", "fragment"),
    [("Who founded Lumen?", "sql_declined"), ("what is the median refund amount?", "cannot express")],
)
def test_api_sql_route_declines_with_a_reason(client: TestClient, query: str, fragment: str) -> None:
    response = client.post("/v1/search", json={"query": query, "domain": "demo", "route": "sql"})
    assert response.status_code == 422 and fragment in response.text


def test_api_sql_route_on_a_domain_without_tables(client: TestClient) -> None:
    response = client.post("/v1/search", json={"query": "how many orders", "domain": "nope", "route": "sql"})
    assert response.status_code == 404
