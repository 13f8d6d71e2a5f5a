"""`rag-server bench router`: the JSON it writes, and the share of questions routed before embedding."""

from __future__ import annotations

import json
from pathlib import Path

from rag_server.config import Settings
from rag_server.db import open_pool
from rag_server.domains import HnswOptions, ensure_domain
from rag_server.embedding import Embedder
from tests.conftest import run_cli


def test_bench_router_writes_latencies_and_the_surface_share(
    settings: Settings, tmp_path: Path, embedder: Embedder
) -> None:
    with open_pool(settings) as pool, pool.connection() as conn:
        ensure_domain(conn, "kb", embedder.name, embedder.dimension, HnswOptions())
    questions = tmp_path / "questions.jsonl"
    texts = ["ERR-4012", "why does my dashboard stop refreshing when I close the laptop overnight"]
    questions.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    out = tmp_path / "bench.json"
    env = {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]
    done = run_cli(
        "bench",
        "router",
        "--domain",
        "kb",
        "--questions",
        str(questions),
        "--rounds",
        "2",
        "--json",
        str(out),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["samples"] == 4 and result["questions"] == 2
    assert result["router_ms"]["p50"] > 0 and result["embed_ms"]["p50"] > 0
    # The error code is routed by the surface model, the natural question is not.
    assert result["routed_before_embedding"] == 0.5
    assert result["routed_before_embedding_by_route"] == {"keyword": 0.5}
    assert "routed before embedding 50% (keyword 50%)" in done.stdout
