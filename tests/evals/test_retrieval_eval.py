"""The retrieval eval end to end: a small BEIR folder through `rag-server eval retrieval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.report import markdown_table
from evals.retrieval import rotated
from rag_server.config import Settings
from tests.conftest import run_cli

DOCUMENTS = {
    "d1": "ERR-7001 means the upload was rejected because the file is larger than the limit.",
    "d2": "To change your billing address, open Settings and choose Billing.",
    "d3": "Our office dogs are friendly and enjoy long walks in the park.",
    "d4": "Exports run nightly; a failed export retries three times before alerting.",
}
QUERIES = {
    "q1": ("ERR-7001", {"d1": 2}),
    "q2": ("where do I update the address on my invoices", {"d2": 2}),
    "q3": ("pets at the workplace", {"d3": 1}),
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": key, "title": "", "text": text}) for key, text in DOCUMENTS.items())
    )
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": key, "text": text}) for key, (text, _) in QUERIES.items())
    )
    rows = [
        f"{query}\t{doc}\t{grade}" for query, (_, judged) in QUERIES.items() for doc, grade in judged.items()
    ]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_eval_retrieval_writes_comparable_json_and_gates(
    settings: Settings, dataset: Path, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": settings.database_url.get_secret_value()}  # type: ignore[union-attr]
    out = tmp_path / "run.json"
    done = run_cli(
        "eval", "retrieval", "--dataset", str(dataset), "--route", "all", "--json", str(out),
        "--report", str(tmp_path / "report"), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["queries"] == 3 and set(report["routes"]) == {"semantic", "keyword", "hybrid"}
    for summary in report["routes"].values():
        assert set(summary) == {
            "ndcg@10",
            "recall@10",
            "recall@100",
            "mrr@10",
            "latency_ms_p50",
            "latency_ms_p95",
        }
        assert all(0 <= summary[key] <= 1 for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10"))
    # Four documents: semantic ranks all of them, so finds every relevant one within 100; keyword cannot
    # find "pets at the workplace" (no word in common with d3).
    assert report["routes"]["semantic"]["recall@100"] == report["routes"]["hybrid"]["recall@100"] == 1.0
    assert report["routes"]["keyword"]["recall@100"] == pytest.approx(2 / 3, abs=1e-4)
    keyword = {row["query_id"]: row for row in report["per_query"]["keyword"]}
    assert keyword["q1"]["top10"][0] == "d1" and keyword["q1"]["ndcg@10"] == 1.0
    assert (tmp_path / "report" / "report.md").read_text().startswith("# Retrieval eval")
    assert (tmp_path / "report" / "chart.png").read_bytes()[:4] == b"\x89PNG"

    # The second run re-uses the ingested corpus, and a threshold above what was measured fails the gate.
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"tiny": {"keyword": {"recall@100": 1.0, "ndcg@10": 0.99}}}))
    gated = run_cli(
        "eval", "retrieval", "--dataset", str(dataset), "--route", "keyword", "--thresholds", str(thresholds),
        env=env,
    )  # fmt: skip
    assert "0 added" in gated.stderr and "4 unchanged" in gated.stderr
    measured = report["routes"]["keyword"]["ndcg@10"]
    assert (gated.returncode == 1) == (measured < 0.99)
    if measured < 0.99:
        assert "below threshold: tiny keyword ndcg@10" in gated.stderr


def test_markdown_table_has_a_row_per_route() -> None:
    run = {
        "dataset": "/x/set",
        "queries": 2,
        "routes": {"keyword": {"ndcg@10": 0.5, "recall@10": 1.0}, "semantic": {"ndcg@10": 0.25}},
    }
    lines = markdown_table([run]).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| set | keyword | 2 | 0.500 | 1.000 |")


def test_routes_take_turns_at_each_position() -> None:
    """A query searched again finds its rows warm: over any run of queries, each route goes first (and
    last) equally often, so no route's latency is measured warm more than another's."""
    routes = ["keyword", "semantic", "hybrid", "auto"]
    orders = [rotated(routes, number) for number in range(8)]
    assert all(sorted(order) == sorted(routes) for order in orders)
    for position in range(len(routes)):
        assert sorted(order[position] for order in orders) == sorted(routes * 2)
    assert rotated([], 3) == []
