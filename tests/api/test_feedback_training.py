"""The feedback loop: answers asked over HTTP, feedback posted on them, then `train-reranker --from-feedback`
and `train-router --from-feedback` learn from it (a decision recorded, the labels counted)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from tests.api.conftest import LiveServer, ingest
from tests.conftest import run_cli

TOPICS = {
    "refunds.md": ("Refunds are approved within 14 days of a request.", "How long do refunds take?"),
    "invoices.md": ("Invoices are sent on the first day of each month.", "When are invoices sent?"),
    "shipping.md": ("Orders ship within two business days.", "How fast do orders ship?"),
    "passwords.md": ("Passwords must be at least twelve characters long.", "How long must a password be?"),
    "support.md": ("Support answers tickets within four hours.", "How quickly does support answer?"),
    "backups.md": ("Backups are taken every night and kept for 30 days.", "How long are backups kept?"),
    "exports.md": ("Data exports are available as CSV and JSON files.", "Which export formats exist?"),
    "seats.md": ("The Team plan includes ten seats.", "How many seats does the Team plan include?"),
    "regions.md": ("Data is stored in the EU region by default.", "Where is data stored?"),
    "sso.md": ("Single sign-on is available on the Enterprise plan.", "Which plan has single sign-on?"),
    "audit.md": ("Audit logs are kept for one year.", "How long are audit logs kept?"),
    "api.md": ("The API allows 600 requests per minute.", "What is the API rate limit?"),
}


@pytest.fixture(scope="module")
def server(
    module_settings: Settings, embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("loop")
    for name, (text, _) in TOPICS.items():
        (root / name).write_text(f"# {name[:-3].title()}\n\n{text}\n")
    ingest(module_settings, embedder, root, "loop")
    with LiveServer(module_settings.model_copy(update={"default_domain": "loop"})) as live:
        yield f"http://127.0.0.1:{live.port}"


def test_train_reranker_and_router_from_feedback(server: str, module_settings: Settings) -> None:
    env = {"RAG_DATABASE_URL": module_settings.database_url.get_secret_value()}  # type: ignore[union-attr]
    too_early = run_cli("train-reranker", "--domain", "loop", "--from-feedback", env=env)
    assert too_early.returncode != 0 and "needs at least" in too_early.stderr
    with httpx.Client(timeout=180) as http:
        for name, (_, question) in TOPICS.items():
            answer = http.post(f"{server}/v1/ask", json={"question": question, "route": "hybrid"}).json()
            right = [e["number"] for e in answer["evidence"] if e["document_id"] == name]
            feedback = {"request_id": answer["request_id"], "helpful": bool(right) and right[0] == 1}
            if right:
                feedback["correct_evidence"] = right[:1]
            assert http.post(f"{server}/v1/feedback", json=feedback).status_code == 201
    trained = run_cli(
        "train-reranker", "--domain", "loop", "--from-feedback", "--folds", "3", "--json", env=env
    )
    assert trained.returncode == 0, trained.stderr
    decision = json.loads(trained.stdout)
    assert decision["training_questions"] == len(TOPICS) and decision["split"] == "train"
    assert "promoted" in decision
    listed = run_cli("rerankers", "list", "--domain", "loop", "--json", env=env)
    assert [row["id"] for row in json.loads(listed.stdout)] == [decision["id"]]
    router = run_cli("train-router", "--domain", "loop", "--from-feedback", env=env)
    assert router.returncode == 0, router.stderr
    assert "helpful answers of domain 'loop'" in router.stderr
    # A dozen answers leave too few held-out questions for the gate: refused, unless told to store anyway.
    assert "gate: refused" in router.stdout and "stored as" not in router.stdout
    forced = run_cli("train-router", "--domain", "loop", "--from-feedback", "--no-gate", env=env)
    assert forced.returncode == 0 and "stored as loop v" in forced.stdout
