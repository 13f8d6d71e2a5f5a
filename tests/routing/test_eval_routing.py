"""`rag-server eval routing` and `eval retrieval --route auto` on a small BEIR-format set, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from rag_server.config import Settings
from tests.conftest import run_cli

CORPUS = [
    (
        "d1",
        "Resetting a password",
        "To reset your password open the sign-in page and choose forgot password.",
    ),
    (
        "d2",
        "ERR-4012",
        "ERR-4012 means the data source rejected the credentials: update the stored password.",
    ),
    ("d3", "Refund policy", "Annual plans can be refunded within 30 days of the first payment."),
    ("d4", "Exports", "Dashboards can be exported to PDF or PNG from the share menu."),
]
QUERIES = [
    ("q1", "ERR-4012"),
    ("q2", "I forgot how I log in, how do I get a new one?"),
    ("q3", "can I get my money back on a yearly subscription"),
]
QRELS = [("q1", "d2", 1), ("q2", "d1", 1), ("q3", "d3", 1)]


def make_set(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS)
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES)
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS)
    )
    return folder


def test_eval_routing_reports_accuracy_confusion_and_routed_ndcg(settings: Settings, tmp_path: Path) -> None:
    dataset = make_set(tmp_path / "tiny")
    env = {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]
    out, labels = tmp_path / "routing.json", tmp_path / "oracle.jsonl"
    done = run_cli(
        "eval",
        "routing",
        "--dataset",
        str(dataset),
        "--json",
        str(out),
        "--write-labels",
        str(labels),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["labels"] == "oracle" and report["labeled_questions"] == 3
    assert 0 <= report["routing_accuracy"] <= 1
    ndcg = report["ndcg@10"]
    assert set(ndcg) == {"routed", "semantic", "keyword", "hybrid", "oracle"}
    assert ndcg["oracle"] >= max(ndcg["semantic"], ndcg["keyword"], ndcg["hybrid"], ndcg["routed"]) - 1e-9
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 3
    for row in report["per_query"]:  # the oracle is the best route, ties to the cheaper one
        best = max(row["ndcg@10"][r] for r in ("keyword", "semantic", "hybrid"))
        assert row["ndcg@10"][row["oracle"]] == best
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    found = [row for row in report["per_query"] if max(row["ndcg@10"].values()) > 0]
    assert found and [row["route"] for row in rows] == [row["oracle"] for row in found]

    hand = tmp_path / "routes.tsv"
    hand.write_text("query-id\troute\nq1\tkeyword\nq2\tsemantic\nq3\tsemantic\n")
    graded = run_cli(
        "eval", "routing", "--dataset", str(dataset), "--labels", str(hand), "--json", str(out), env=env
    )
    assert json.loads(out.read_text())["labels"] == "hand", graded.stderr

    auto = run_cli(
        "eval", "retrieval", "--dataset", str(dataset), "--route", "auto", "--json", str(out), env=env
    )
    assert auto.returncode == 0, auto.stderr
    assert "auto" in json.loads(out.read_text())["routes"]
