"""`rag-server bench domains`: both index layouts measured on the same scratch domains, which it then drops."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from rag_server.config import Settings
from tests.conftest import run_cli


def test_bench_domains_measures_both_layouts_and_cleans_up(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    env = {"DATABASE_URL": url, "RAG_DATA_DIR": str(settings.data_dir)}
    args = ("--domains", "2", "--chunks", "1000", "--queries", "5", "--rounds", "1", "--json", str(out))
    done = run_cli("bench", "domains", *args, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["searches"] == 10 and result["chunks_per_domain"] == 1000
    for layout in ("per_domain", "per_model"):
        assert result[layout]["p50_ms"] > 0
        # The synthetic queries sit near corpus vectors: an index that answers at all finds most neighbours.
        assert 0.8 <= result[layout]["recall_at_10"] <= 1
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM domains WHERE name LIKE 'bench-domains-%'").fetchone()
        indexes = {
            row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")
        }
    assert left == (0,)
    assert not any("hnsw" in name for name in indexes)  # neither layout outlives its domains
