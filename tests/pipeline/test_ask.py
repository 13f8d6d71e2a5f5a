"""`Pipeline.ask` end to end on a small corpus in the embedded Postgres: the extractive answerer offline,
and the generative one through the real `openai` client against a scripted server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.answer import prompt
from rag_server.answer.abstention import Calibration
from rag_server.answer.signals import FEATURES
from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.errors import ModelError
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from rag_server.trace import RequestTrace
from tests.scripted_llm import Fault, ScriptedLLM, last_user_message

DOMAIN = "answers"
DOCUMENTS = {
    "refunds.md": "# Refund policy\n\nAnnual subscriptions can be refunded in full within 30 days of the charge. "
    "Monthly renewal charges are not refundable.\n",
    "sso.md": "# Single sign-on\n\nSAML single sign-on is available on the Business and Enterprise plans. "
    "Okta and Azure AD are supported identity providers.\n",
    "backups.md": "# Backups\n\nEncrypted database backups are kept on a rolling 35-day cycle.\n",
}

# Answer when the best sentence covers at least half of the question's (idf-weighted) terms.
COVERAGE = Calibration(
    FEATURES,
    tuple(0.5 if f == "sentence_coverage" else 0.0 for f in FEATURES),
    tuple(0.1 if f == "sentence_coverage" else 1.0 for f in FEATURES),
    tuple(1.0 if f == "sentence_coverage" else 0.0 for f in FEATURES),
    0.0,
    {"cautious": 0.5, "balanced": 0.5},
    support_threshold=0.5,
)


@pytest.fixture(scope="module")
def searcher(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tmp_path_factory,
) -> Searcher:
    folder: Path = tmp_path_factory.mktemp("answers")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    Ingestion(module_pool, embedder, Analyzer(), IngestOptions.from_settings(module_settings)).run(
        [folder], DOMAIN
    )
    return Searcher(module_pool, embedder, module_settings)


def _pipeline(searcher: Searcher, **settings: object) -> Pipeline:
    changed = searcher.settings.model_copy(update={"answer_cache": "off", **settings})
    return Pipeline(Searcher(searcher.pool, searcher.embedder, changed), changed, COVERAGE)


def _ask(question: str) -> AskRequest:
    return AskRequest(question=question, domain=DOMAIN, route="hybrid", k=3)


def test_extractive_answer_quotes_and_cites_its_evidence(searcher: Searcher) -> None:
    response = _pipeline(searcher).ask(_ask("Within how many days can annual subscriptions be refunded?"))
    assert not response.abstained
    assert "30 days" in response.answer
    assert response.answerer == "extractive"
    cited = response.citations[0]
    assert cited.document_id == "refunds.md" and cited.supported
    assert response.answer[cited.span[0] : cited.span[1]].endswith(f"[{cited.number}].")
    assert response.usage.cost_usd == 0 and response.model_calls == []
    assert {"embed", "semantic", "keyword", "fuse", "rerank", "assess", "ttft", "total"} <= set(
        response.timings_ms
    )


def test_weak_evidence_abstains_with_a_reason_and_no_model_call(searcher: Searcher) -> None:
    with ScriptedLLM(lambda body: "should not be called [1]") as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url, model_free=True)
        response = pipeline.ask(_ask("What is the CEO's favourite colour?"))
    assert response.abstained and response.answer.startswith("I don't know")
    assert "favourite" in (response.abstention_reason or "") or "colour" in (response.abstention_reason or "")
    assert llm.requests == [] and response.usage.cost_usd == 0


def test_generative_answer_maps_citations_and_counts_usage(searcher: Searcher) -> None:
    reply = "Annual subscriptions are refunded within 30 days [1]. Bananas are blue [2][7]."
    with ScriptedLLM(lambda body: reply, cached_tokens=40) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url, openai_model="gpt-4o-mini")
        response = pipeline.ask(_ask("Within how many days can annual subscriptions be refunded?"))
    assert response.answerer == "llm" and not response.abstained
    assert "[7]" not in response.answer and response.dropped_citations == 1
    supported = {c.number: c.supported for c in response.citations}
    assert supported[1] is True and supported[2] is False
    assert response.unsupported_citations == 1
    assert response.usage.cached_prompt_tokens == 40 and response.usage.cost_usd > 0
    assert [call.purpose for call in response.model_calls] == ["answer"]
    assert "ttft" in response.timings_ms and "generate" in response.timings_ms


def test_prompt_prefix_is_identical_across_questions(searcher: Searcher) -> None:
    with ScriptedLLM(lambda body: "It is so [1].") as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url)
        pipeline.ask(_ask("Within how many days can annual subscriptions be refunded?"))
        pipeline.ask(_ask("Which identity providers does SAML single sign-on support?"))
    first, second = (body["messages"] for body in llm.requests)
    static = len(prompt.static_prefix())
    assert first[:static] == second[:static] == prompt.static_prefix()
    assert first[static] != second[static]
    assert last_user_message(llm.requests[1]).endswith(
        "Question: Which identity providers does SAML single sign-on support?"
    )


def test_model_not_in_context_reply_is_an_abstention(searcher: Searcher) -> None:
    with ScriptedLLM(lambda body: "NOT_IN_CONTEXT: the passages do not name the providers' prices.") as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url)
        events = list(
            pipeline.events(
                _ask("Which identity providers does SAML single sign-on support?"), RequestTrace()
            )
        )
    tokens = "".join(e.data["text"] for e in events if e.name == "token")
    done = events[-1].data
    assert done["abstained"] and "NOT_IN_CONTEXT" not in tokens
    assert tokens == done["answer"] == "I don't know: the passages do not name the providers' prices."
    assert done["usage"]["model_calls"] == 1


def test_a_429_is_retried_honouring_retry_after(searcher: Searcher) -> None:
    with ScriptedLLM(
        lambda body: "Refunds within 30 days [1].", faults=[Fault(status=429, retry_after=0)]
    ) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url)
        response = pipeline.ask(_ask("Within how many days can annual subscriptions be refunded?"))
    assert len(llm.requests) == 2 and "30 days" in response.answer


def test_provider_failures_are_clear_errors(searcher: Searcher) -> None:
    question = _ask("Within how many days can annual subscriptions be refunded?")
    with ScriptedLLM(lambda body: "x", faults=[Fault(status=500)] * 3) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url, openai_max_retries=1)
        with pytest.raises(ModelError, match="InternalServerError"):
            pipeline.ask(question)
    with ScriptedLLM(lambda body: "x", faults=[Fault(sleep=3.0)]) as llm:
        pipeline = _pipeline(
            searcher, openai_base_url=llm.base_url, openai_timeout_s=0.5, openai_max_retries=0
        )
        events = list(pipeline.events(question, RequestTrace()))
    assert events[-1].name == "error" and "Timeout" in events[-1].data["message"]


def test_a_stream_cut_mid_answer_ends_with_an_error_event(searcher: Searcher) -> None:
    reply = "Annual subscriptions are refunded within thirty days of the charge [1]."
    with ScriptedLLM(lambda body: reply, faults=[Fault(cut_after=3)]) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url, openai_max_retries=0)
        events: Iterator = pipeline.events(
            _ask("Within how many days can annual subscriptions be refunded?"), RequestTrace()
        )
        names = [event.name for event in events]
    assert names[:2] == ["route", "evidence"] and names[-1] == "error"
    assert "token" in names and "done" not in names


def test_usage_is_counted_with_tiktoken_when_the_server_reports_none(searcher: Searcher) -> None:
    with ScriptedLLM(lambda body: "Refunds within 30 days [1].", usage=False) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url)
        response = pipeline.ask(_ask("Within how many days can annual subscriptions be refunded?"))
    call = response.model_calls[0]
    assert call.counted_by == "tiktoken" and call.prompt_tokens > 100 and call.completion_tokens > 3


def test_an_unpriced_model_is_refused_unless_priced_or_free(searcher: Searcher) -> None:
    from rag_server.errors import ConfigError

    with pytest.raises(ConfigError, match="RAG_MODEL_PRICES"):
        _pipeline(searcher, openai_base_url="http://127.0.0.1:9/v1", openai_model="my-llama")
    priced = _pipeline(
        searcher,
        openai_base_url="http://127.0.0.1:9/v1",
        openai_model="my-llama",
        model_prices={"my-llama": (1.0, 0.5, 2.0)},
    )
    assert priced.searcher.model is not None


def test_max_tokens_and_stop_sequences_reach_the_model(searcher: Searcher) -> None:
    with ScriptedLLM(lambda body: "Refunds within 30 days [1].") as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url)
        question = _ask("Within how many days can annual subscriptions be refunded?")
        pipeline.ask(question.model_copy(update={"max_tokens": 37}))
        pipeline.ask(question)
    assert [body["max_tokens"] for body in llm.requests] == [37, searcher.settings.answer_max_tokens]
    assert llm.requests[0]["stop"] == prompt.STOP and llm.requests[0]["stream"] is True


def test_a_repeated_question_is_answered_from_the_cache_until_the_domain_changes(
    searcher: Searcher, tmp_path: Path
) -> None:
    question = "Which identity providers does SAML single sign-on support?"
    with ScriptedLLM(lambda body: "Okta and Azure AD are supported [1].", cached_tokens=10) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url, answer_cache="exact")
        first = pipeline.ask(_ask(question))
        again = pipeline.ask(_ask("  which identity providers does SAML single sign-on SUPPORT "))
        assert len(llm.requests) == 1
        assert (first.cache, again.cache) == ("miss", "hit")
        assert again.answer == first.answer and again.citations == first.citations
        assert again.usage.cost_usd == 0 and again.model_calls == [] and first.usage.cost_usd > 0
        assert again.request_id != first.request_id
        other = pipeline.ask(_ask(question).model_copy(update={"k": 2}))
        assert other.cache == "miss"  # another setting that changes the answer
        (tmp_path / "new.md").write_text("# New\n\nA new page about invoices.\n")
        Ingestion(
            searcher.pool, searcher.embedder, Analyzer(), IngestOptions.from_settings(searcher.settings)
        ).run([tmp_path], DOMAIN)
        after = pipeline.ask(_ask(question))
    assert after.cache == "miss" and len(llm.requests) == 3
