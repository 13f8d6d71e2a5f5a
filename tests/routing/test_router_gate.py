"""train-router's gate: a domain's router is stored only when, trained on part of the domain's questions, it
routes the held-out rest better than the router serving the domain now (the built-in one, then its own)."""

from __future__ import annotations

import json
from pathlib import Path

from rag_server.config import Settings
from rag_server.db import open_pool
from rag_server.domains import HnswOptions, ensure_domain
from rag_server.embedding import Embedder
from tests.conftest import run_cli

TOPICS = [
    "invoices",
    "refunds",
    "passwords",
    "exports",
    "backups",
    "seats",
    "regions",
    "webhooks",
    "audit logs",
]


def test_a_better_router_is_promoted_and_the_same_one_refused(
    settings: Settings, tmp_path: Path, embedder: Embedder
) -> None:
    with open_pool(settings) as pool, pool.connection() as conn:
        ensure_domain(conn, "kb", embedder.name, embedder.dimension, HnswOptions())
    # This domain's labels disagree with the built-in router on purpose: its keyword index answers whole
    # questions best, and its bare topic words are better served by semantic search.
    rows = [
        {"text": text.format(topic), "route": "keyword"}
        for topic in TOPICS
        for text in ("tell me about {}", "why would {} fail for a customer", "what should I know about {}")
    ]
    rows += [
        {"text": text.format(topic), "route": "semantic"}
        for topic in TOPICS
        for text in ("{}", "{} settings")
    ]
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = {"DATABASE_URL": settings.database_url.get_secret_value(), "RAG_DATA_DIR": str(settings.data_dir)}  # type: ignore[union-attr]
    first = run_cli("train-router", "--data", str(data), "--domain", "kb", "--json", env=env)
    assert first.returncode == 0, first.stderr
    decision = json.loads(first.stdout)
    gate = decision["gate"]
    assert gate["against"] == "builtin" and gate["promoted"], json.dumps(gate)
    assert gate["candidate_accuracy"] > gate["current_accuracy"] and decision["version"] == 1
    # The same labels again: no better than the stored v1, so nothing is stored.
    again = run_cli("train-router", "--data", str(data), "--domain", "kb", env=env)
    assert again.returncode == 0, again.stderr
    assert "gate: refused" in again.stdout and "against" not in again.stdout
    assert "stored as" not in again.stdout
