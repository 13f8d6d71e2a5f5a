"""`rag-server bench rerank`: every reranker timed on the same real candidates, the JSON's shape (not its times)."""

from __future__ import annotations

import json
from pathlib import Path

from rag_server.config import Settings
from tests.conftest import run_cli
from tests.scripted_rerank import ScriptedReranker

TOPICS = ("refund", "invoice", "backup", "login", "export", "billing", "webhook", "quota")


def _dataset(folder: Path) -> Path:
    """A tiny BEIR folder: three pages a topic, each question judged against its topic's first page."""
    lines, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for number, topic in enumerate(TOPICS):
        for page in range(3):
            text = (
                f"The {topic} page {page}: how {topic} works, {topic} limits and {topic} errors, part {page}."
            )
            lines.append(json.dumps({"_id": f"{topic}-{page}", "title": f"{topic} {page}", "text": text}))
        queries.append(json.dumps({"_id": f"q{number}", "text": f"how does {topic} work"}))
        qrels.append(f"q{number}\t{topic}-0\t1")
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def test_bench_rerank_measures_each_reranker_and_lists_the_skipped(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    dataset = _dataset(tmp_path / "set")
    with ScriptedReranker() as server:
        env = {
            "DATABASE_URL": settings.database_url.get_secret_value(),  # type: ignore[union-attr]
            "RAG_DATA_DIR": str(settings.data_dir),
            "RAG_RERANK_URL": server.url,
        }
        args = ("--domain", "bench-rerank", "--dataset", str(dataset), "--questions", "3")
        done = run_cli("bench", "rerank", *args, "--depth", "5", "--depth", "20", "--json", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert "skipped: no --cross-encoder FOLDER given" in done.stdout
    result = json.loads(out.read_text())
    assert result["questions"] == 3 and result["depths"] == [5, 20] and result["domain"] == "bench-rerank"
    rerankers = result["rerankers"]
    assert list(rerankers) == ["none", "features", "remote", "cross-encoder"]
    assert rerankers["cross-encoder"]["status"] == "skipped"
    for name in ("none", "features", "remote"):
        assert rerankers[name]["status"] == "measured"
        for depth, expected in (("5", 5), ("20", 20)):
            row = rerankers[name]["depths"][depth]
            assert row["candidates"] == expected and row["samples"] == 3 and row["failures"] == 0
            assert 0 <= row["p50_ms"] <= row["p95_ms"] and row["candidates_per_s"] > 0
    assert set(rerankers["features"]["depths"]["20"]["parts_p50_ms"]) == {"features", "model"}
    assert len(server.requests) == 1 + 3 * 2  # the warm-up, then each question at each depth
    # Depth 100 is not measured here: the target reads as not measured.
    assert result["features_target_met"] is None
