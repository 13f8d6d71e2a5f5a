"""The remote reranker against a scripted rerank endpoint on loopback (real HTTP through httpx): the order
it gives, its retries, its fallback to the fused order, and an answer through the pipeline it reorders."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool
from pydantic import SecretStr, ValidationError

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import ConfigError
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.rerank.remote import RemoteReranker
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import ScoredChunk
from tests.scripted_llm import Fault
from tests.scripted_rerank import ScriptedReranker

KEY = "sk-rerank-secret-123"
QUESTION = "which identity providers work with single sign-on"
TEXTS = (
    "Annual plans are refunded in full within 30 days.",
    "Backups are kept for 35 days.",
    "Single sign-on works with the identity providers Okta and Azure AD.",
    "Invoices are sent on the first of the month.",
)


def _candidates() -> list[ScoredChunk]:
    """Four chunks in a fused order that puts the answer third."""
    return [
        ScoredChunk(i, i, f"doc-{i}.md", None, text, 0, (), 1.0 - i / 10, "hybrid")
        for i, text in enumerate(TEXTS)
    ]


def _ids(chunks: list[ScoredChunk]) -> list[int]:
    return [chunk.chunk_id for chunk in chunks]


def test_the_order_follows_the_endpoint_scores() -> None:
    with ScriptedReranker() as server:
        reranker = RemoteReranker(server.url, model="rerank-small", api_key=KEY)
        ranked = reranker.rerank(QUESTION, None, _candidates())
    assert _ids(ranked)[0] == 2 and not reranker.fell_back
    body = server.requests[0]
    assert body == {"query": QUESTION, "documents": list(TEXTS), "top_n": 4, "model": "rerank-small"}
    assert server.authorizations == [f"Bearer {KEY}"]


def test_teis_shape_is_asked_and_read() -> None:
    with ScriptedReranker() as server:
        reranker = RemoteReranker(server.tei_url, api="tei")
        ranked = reranker.rerank(QUESTION, None, _candidates())
    assert _ids(ranked)[0] == 2
    assert server.requests[0] == {"query": QUESTION, "texts": list(TEXTS), "truncate": True}
    assert server.authorizations == [None]  # no key configured, no header


def test_ties_and_documents_the_endpoint_left_out_keep_the_fused_order() -> None:
    # Scored only the last two (top_n cut by the server): they go first, the others follow in fused order.
    def last_two(query: str, documents: list[str]) -> list[float]:
        return [0.0, 0.0, 0.5, 0.5]

    with ScriptedReranker(last_two) as server:
        reranker = RemoteReranker(server.url)
        assert _ids(reranker.rerank(QUESTION, None, _candidates())) == [2, 3, 0, 1]


def test_a_429_is_retried_after_what_retry_after_says() -> None:
    waits: list[float] = []
    with ScriptedReranker(faults=[Fault(status=429, retry_after=0.2)]) as server:
        reranker = RemoteReranker(server.url, sleep=waits.append)
        ranked = reranker.rerank(QUESTION, None, _candidates())
    assert len(server.requests) == 2 and waits == [0.2]
    assert _ids(ranked)[0] == 2 and not reranker.fell_back


def test_a_5xx_is_retried_with_backoff_and_a_4xx_is_not() -> None:
    waits: list[float] = []
    with ScriptedReranker(faults=[Fault(status=503), Fault(status=502)]) as server:
        reranker = RemoteReranker(server.url, max_retries=2, sleep=waits.append)
        assert _ids(reranker.rerank(QUESTION, None, _candidates()))[0] == 2
    assert len(server.requests) == 3 and waits == [0.25, 0.5]
    with ScriptedReranker(faults=[Fault(status=401)]) as server:
        reranker = RemoteReranker(server.url, sleep=waits.append)
        assert _ids(reranker.rerank(QUESTION, None, _candidates())) == [0, 1, 2, 3]
    assert len(server.requests) == 1 and reranker.fell_back


def test_a_failing_endpoint_leaves_the_fused_order_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fused = _ids(_candidates())
    caplog.set_level(logging.WARNING, logger="rag_server.rerank.remote")
    with ScriptedReranker(faults=[Fault(status=500)] * 2) as server:
        reranker = RemoteReranker(f"{server.url}?key={KEY}", api_key=KEY, max_retries=1, sleep=lambda s: None)
        assert _ids(reranker.rerank(QUESTION, None, _candidates())) == fused and reranker.fell_back
    assert len(server.requests) == 2
    assert "HTTP 500 after 2 attempts" in caplog.text and KEY not in caplog.text
    # A Retry-After longer than the call's timeout is not waited for.
    with ScriptedReranker(faults=[Fault(status=429, retry_after=60)]) as server:
        reranker = RemoteReranker(server.url, timeout_s=2, sleep=lambda s: pytest.fail("waited"))
        assert _ids(reranker.rerank(QUESTION, None, _candidates())) == fused and reranker.fell_back
    # A timeout is not retried: its wait was the budget.
    with ScriptedReranker(faults=[Fault(sleep=1.5)]) as server:
        reranker = RemoteReranker(server.url, timeout_s=0.3)
        assert _ids(reranker.rerank(QUESTION, None, _candidates())) == fused and reranker.fell_back
        assert len(server.requests) == 1
        # The next call succeeds, and says so.
        assert _ids(reranker.rerank(QUESTION, None, _candidates()))[0] == 2 and not reranker.fell_back
    # Nobody listening at all.
    reranker = RemoteReranker(server.url, max_retries=0)
    assert _ids(reranker.rerank(QUESTION, None, _candidates())) == fused and reranker.fell_back


def test_settings_need_a_url_for_remote_and_never_show_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="RAG_RERANK_URL"):
        Settings(reranker="remote", _env_file=None)
    with pytest.raises(ConfigError, match="http"):
        RemoteReranker("ftp://example.com/rerank")
    configured = Settings(
        reranker="remote",
        rerank_url="http://127.0.0.1:9/v1/rerank",
        rerank_api_key=SecretStr(KEY),
        _env_file=None,
    )
    assert configured.masked()["rerank_api_key"] == "***" and KEY not in repr(configured)
    assert RemoteReranker.from_settings(configured).host == "127.0.0.1:9"


DOMAIN = "remote-answers"
DOCUMENTS = {
    "refunds.md": "# Refund policy\n\nAnnual subscriptions can be refunded in full within 30 days of the charge.\n",
    "sso.md": "# Single sign-on\n\nSAML single sign-on works with the identity providers Okta and Azure AD.\n",
    "backups.md": "# Backups\n\nEncrypted database backups are kept on a rolling 35-day cycle.\n",
}


@pytest.fixture(scope="module")
def searcher(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Searcher:
    folder: Path = tmp_path_factory.mktemp("remote")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    Ingestion(module_pool, embedder, Analyzer(), IngestOptions.from_settings(module_settings)).run(
        [folder], DOMAIN
    )
    return Searcher(module_pool, embedder, module_settings)


def _pipeline(searcher: Searcher, **changes: object) -> Pipeline:
    changed = searcher.settings.model_copy(update=changes)
    return Pipeline(Searcher(searcher.pool, searcher.embedder, changed), changed)


def test_ask_with_the_remote_reranker_names_it_and_survives_its_failure(searcher: Searcher) -> None:
    question = AskRequest(question="Which identity providers work with SAML single sign-on?", domain=DOMAIN)
    with ScriptedReranker(faults=[None, Fault(status=500)]) as server:
        pipeline = _pipeline(
            searcher, reranker="remote", rerank_url=server.url, rerank_max_retries=0, answer_cache="exact"
        )
        reranked = pipeline.ask(question)
        assert server.requests[0]["query"] == question.question
        assert reranked.reranker == "remote" and reranked.evidence[0].document_id == "sso.md"
        # Not answered from the cache: the 500 is the next request's.
        failed = pipeline.ask(question.model_copy(update={"k": 2}))
        assert failed.reranker == "remote (failed)" and failed.answer and "rerank" in failed.timings_ms
        again = pipeline.ask(question.model_copy(update={"k": 2}))
    assert again.cache == "miss" and again.reranker == "remote"  # the failed answer was not cached
    assert len(server.requests) == 3
    assert _pipeline(searcher, reranker="none", answer_cache="off").ask(question).reranker == "none"
