"""The semantic answer cache (RAG_ANSWER_CACHE=semantic): the guard's properties, the calibration eval, and
`Pipeline.ask` over the embedded Postgres with the real embedding model and, for the costed answers, the real
`openai` client against a scripted server on loopback."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool

from evals.cache import PAIRS_FILE, Pair, load_pairs, run_cache_eval, threshold_file
from ingest.pipeline import Ingestion, IngestOptions
from rag_server.answer.abstention import Calibration
from rag_server.answer.signals import FEATURES
from rag_server.config import Settings
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.pipeline import AskRequest, Pipeline
from rag_server.pipeline.cache import packaged_threshold, semantic_threshold
from rag_server.pipeline.paraphrase import differences, same_specifics, specifics
from rag_server.resources import package_path
from rag_server.retrieval.analyzer import Analyzer
from rag_server.retrieval.search import Searcher
from tests.scripted_llm import ScriptedLLM

# --- the guard ---

# Questions with one number in them, written as a user would.
NUMBER_TEMPLATES = (
    "Can annual subscriptions be refunded within {} days?",
    "Which {} customers paid the most in 2024?",
    "How many Team customers have more than {} seats?",
    "what happens after {} failed login attempts",
    "Is the API limit {} calls per day?",
)
NEGATIONS = (
    ("Can Viewers edit dashboards?", "Can Viewers not edit dashboards?"),
    ("Can Viewers edit dashboards?", "Can't Viewers edit dashboards?"),
    ("Does the Team plan include audit logs?", "Doesn't the Team plan include audit logs?"),
    ("Which plans include single sign-on?", "Which plans never include single sign-on?"),
    ("Can I sign up with a credit card?", "Can I sign up without a credit card?"),
    ("Which customers opened a ticket?", "Which customers opened no ticket?"),
)
WORDS = st.sampled_from(
    [
        "how",
        "long",
        "can",
        "deleted",
        "dashboards",
        "be",
        "restored",
        "from",
        "the",
        "trash",
        "which",
        "plans",
        "include",
        "sso",
        "what",
        "is",
        "the",
        "price",
        "of",
        "a",
        "seat",
        "does",
        "support",
        "answer",
        "on",
        "weekends",
        "are",
        "backups",
        "encrypted",
        "who",
        "can",
        "invite",
        "teammates",
    ]
)
NEGATION_CUES = st.sampled_from(["not", "never", "no", "without", "except", "cannot", "don't", "isn't"])
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
ONES_WORDS = [*ONES.split(), "seventeen", "eighteen", "nineteen"]
TENS_WORDS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spelled(number: int) -> str:
    """0..99 in words, as a person writes them: "seven", "twenty-five", "forty"."""
    if number < 20:
        return ONES_WORDS[number]
    tens, ones = divmod(number, 10)
    return TENS_WORDS[tens] + (f"-{ONES_WORDS[ones]}" if ones else "")


def _written(number: int, style: int) -> str:
    return [str(number), f"{number:,}", _spelled(number) if number < 100 else str(number)][style]


@given(
    st.sampled_from(NUMBER_TEMPLATES),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 2),
    st.integers(0, 2),
)
def test_a_question_whose_number_changed_is_never_served(
    template: str, first: int, second: int, style: int, other_style: int
) -> None:
    stored, asked = template.format(_written(first, style)), template.format(_written(second, other_style))
    assert same_specifics(stored, asked) == (first == second), (stored, asked)


@given(st.lists(WORDS, min_size=2, max_size=12), st.data())
def test_a_question_with_a_negation_added_is_never_served(words: list[str], data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(words)))
    negated = [*words[:position], data.draw(NEGATION_CUES), *words[position:]]
    question, changed = " ".join(words) + "?", " ".join(negated) + "?"
    assert same_specifics(question, question)
    assert "negation" in differences(specifics(question), specifics(changed)), changed


@pytest.mark.parametrize(("stored", "asked"), NEGATIONS)
def test_negated_wordings_are_told_apart(stored: str, asked: str) -> None:
    assert differences(specifics(stored), specifics(asked)) == ["negation"]


@given(
    st.sampled_from(["ERR-", "SYNC-", "E-AUTH-", "SKU-", "BILL-"]), st.integers(1, 9999), st.integers(1, 9999)
)
def test_an_identifier_change_is_never_served(prefix: str, first: int, second: int) -> None:
    stored, asked = f"What does {prefix}{first} mean?", f"what does {prefix.lower()}{second} mean"
    assert same_specifics(stored, asked) == (first == second)


@pytest.mark.parametrize(
    ("stored", "asked", "found"),
    [
        ("What changed in v2.4.0?", "What changed in v2.4.1?", ["numbers", "identifiers"]),
        ("What changed in v2.3.1?", "what's new in version 2.3.1", []),
        ("Refunds approved in January 2026", "Refunds approved in February 2026", ["dates"]),
        ("How many payments failed last month?", "How many payments failed this month?", ["dates"]),
        ('Find tickets mentioning "late fee"', 'Find tickets mentioning "late fees"', ["quoted"]),
        ("How do I upgrade to Business?", "How do I downgrade to Business?", ["opposites"]),
        ("Price per seat billed monthly?", "Price per seat billed annually?", ["opposites"]),
        ("Audit logs on the Business plan?", "Audit logs on the Enterprise plan?", ["identifiers"]),
        ("Audit logs on the Business plan?", "audit logs on the business plan", []),
        ("Can I refund within 14 days?", "Can I refund within fourteen days?", []),
        ("Can I refund within 14 days?", "Can I refund within a 14-day window?", []),
        ("How do I pick a fresh one?", "How do I pick a new one?", []),
        ("Is SAML supported?", "is saml supported", []),
        ("Total over 1,000 dollars", "Total over 1000 dollars", []),
    ],
)
def test_the_guard_finds_what_differs(stored: str, asked: str, found: list[str]) -> None:
    assert differences(specifics(stored), specifics(asked)) == found


# --- the calibration eval ---


def test_the_packaged_threshold_is_what_the_shipped_pairs_give(embedder: SentenceTransformerEmbedder) -> None:
    pairs = load_pairs(PAIRS_FILE)
    assert len(pairs) >= 60 and sum(not p.same for p in pairs) >= len(pairs) / 2
    report = run_cache_eval(embedder, pairs, margin=0.02)
    shipped = json.loads(package_path("pipeline", "semantic_cache.json").read_text())
    assert shipped == threshold_file(report, PAIRS_FILE)  # rerun `rag-server eval cache --write` after edits
    assert report["all"]["false_hits"] == 0 and report["all"]["hits"] > 0
    assert packaged_threshold().threshold == report["threshold"]
    # The guard refuses every negative that differs in a number, date, identifier or negation.
    kinds = {row["id"]: row for row in report["per_pair"]}
    assert all(
        kinds[p.id]["differences"] and not kinds[p.id]["served"]
        for p in pairs
        if p.kind in {"number", "date", "identifier", "negation"}
    )


def test_the_threshold_clears_the_highest_negative_the_guard_lets_through(
    embedder: SentenceTransformerEmbedder,
) -> None:
    pairs = [
        Pair("a", "How do I reset my password?", "How can I reset my password?", True, "paraphrase"),
        Pair("b", "How do I reset my password?", "How do I change my email address?", False, "topic"),
        Pair("c", "What does ERR-4013 mean?", "What does ERR-4012 mean?", False, "identifier"),
    ]
    report = run_cache_eval(embedder, pairs, margin=0.02)
    topic = next(row for row in report["per_pair"] if row["id"] == "b")
    assert (
        report["threshold"] >= topic["similarity"] + 0.02
        and report["threshold"] <= topic["similarity"] + 0.03
    )
    assert report["all"]["hit_recall"] == 1.0 and report["all"]["false_hits"] == 0
    # Without the guard the identifier pair (cosine about 0.9) would have to be cleared too.
    assert report["without_guard"]["threshold"] > report["threshold"]


# --- the cache, over Postgres ---

DOMAIN = "semantic"
OTHER_DOMAIN = "semantic-other"
DOCUMENTS = {
    "refunds.md": "# Refund policy\n\nAnnual subscriptions can be refunded in full within 30 days of the charge. "
    "Monthly renewal charges are not refundable.\n",
    "sso.md": "# Single sign-on\n\nSAML single sign-on is available on the Business and Enterprise plans. "
    "Okta and Azure AD are supported identity providers.\n",
}
QUESTION = "Within how many days can annual subscriptions be refunded?"
PARAPHRASE = "Within how many days can an annual subscription be refunded?"
COVERAGE = Calibration(
    FEATURES,
    tuple(0.5 if f == "sentence_coverage" else 0.0 for f in FEATURES),
    tuple(0.1 if f == "sentence_coverage" else 1.0 for f in FEATURES),
    tuple(1.0 if f == "sentence_coverage" else 0.0 for f in FEATURES),
    0.0,
    {"cautious": 0.5, "balanced": 0.5},
    support_threshold=0.5,
)


class CountingEmbedder:
    """The real model, with every list of texts it was asked to embed kept."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def searcher(
    module_pool: ConnectionPool,
    module_settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Searcher:
    folder: Path = tmp_path_factory.mktemp("semantic")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    ingestion = Ingestion(module_pool, embedder, Analyzer(), IngestOptions.from_settings(module_settings))
    ingestion.run([folder], DOMAIN)
    ingestion.run([folder], OTHER_DOMAIN)
    return Searcher(module_pool, CountingEmbedder(embedder), module_settings)


def _pipeline(searcher: Searcher, **settings: object) -> Pipeline:
    changed = searcher.settings.model_copy(update={"answer_cache": "semantic", **settings})
    return Pipeline(Searcher(searcher.pool, searcher.embedder, changed), changed, COVERAGE)


def _ask(question: str, domain: str = DOMAIN, k: int = 3) -> AskRequest:
    return AskRequest(question=question, domain=domain, route="hybrid", k=k)


def _forget(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        conn.execute("DELETE FROM answer_cache")


def _cosine(embedder: SentenceTransformerEmbedder, first: str, second: str) -> float:
    vectors = embedder.embed([first, second])
    return float(vectors[0] @ vectors[1])


def test_a_paraphrase_replays_the_stored_answer_at_no_cost(searcher: Searcher) -> None:
    _forget(searcher.pool)
    with ScriptedLLM(lambda body: "Within 30 days of the charge [1].", cached_tokens=10) as llm:
        pipeline = _pipeline(searcher, openai_base_url=llm.base_url)
        assert pipeline.semantic_threshold == packaged_threshold().threshold  # the packaged one, no override
        first = pipeline.ask(_ask(QUESTION))
        again = pipeline.ask(_ask(PARAPHRASE))
        exact = pipeline.ask(_ask(QUESTION.upper()))
    assert len(llm.requests) == 1
    assert (first.cache, first.cache_match) == ("miss", None) and first.usage.cost_usd > 0
    assert (again.cache, again.cache_match) == ("hit", "semantic")
    assert again.question == PARAPHRASE and again.cached_question == QUESTION
    assert again.cache_similarity is not None and again.cache_similarity >= pipeline.semantic_threshold
    assert again.answer == first.answer and again.citations == first.citations
    assert again.usage.prompt_tokens == again.usage.completion_tokens == 0 and again.usage.cost_usd == 0
    assert again.model_calls == [] and again.request_id != first.request_id
    assert (exact.cache, exact.cache_match, exact.cache_similarity) == ("hit", "exact", None)


def test_a_miss_embeds_the_question_once(searcher: Searcher) -> None:
    _forget(searcher.pool)
    counting = searcher.embedder
    assert isinstance(counting, CountingEmbedder)
    counting.calls.clear()
    response = _pipeline(searcher).ask(_ask(QUESTION))
    assert response.cache == "miss"
    assert counting.calls.count([QUESTION]) == 1
    with searcher.pool.connection() as conn:
        stored = conn.execute(
            "SELECT question, settings_key IS NOT NULL, vector_dims(embedding) FROM answer_cache"
        ).fetchall()
    assert stored == [(QUESTION, True, counting.dimension)]


@pytest.mark.parametrize(
    "asked",
    [
        "Within how many days can annual subscriptions not be refunded?",  # negated
        "Can annual subscriptions be refunded within 60 days?",  # the stored one says 30
        "Within how many days can monthly subscriptions be refunded?",  # the opposite billing cycle
    ],
)
def test_a_question_that_differs_in_a_specific_is_a_miss_however_similar(
    searcher: Searcher, embedder: SentenceTransformerEmbedder, asked: str
) -> None:
    _forget(searcher.pool)
    stored = "Can annual subscriptions be refunded within 30 days?" if "60" in asked else QUESTION
    # A low threshold, so that only the guard can refuse: the two are far above it.
    pipeline = _pipeline(searcher, semantic_cache_threshold=0.8)
    assert _cosine(embedder, stored, asked) >= 0.9
    assert pipeline.ask(_ask(stored)).cache == "miss"
    response = pipeline.ask(_ask(asked))
    assert (response.cache, response.cache_match) == ("miss", None)
    assert pipeline.ask(_ask(PARAPHRASE if stored == QUESTION else stored)).cache == "hit"  # the control


def test_an_ingest_into_the_domain_makes_a_paraphrase_a_miss(searcher: Searcher, tmp_path: Path) -> None:
    _forget(searcher.pool)
    pipeline = _pipeline(searcher)
    assert pipeline.ask(_ask(QUESTION)).cache == "miss"
    assert pipeline.ask(_ask(PARAPHRASE)).cache == "hit"
    (tmp_path / "invoices.md").write_text("# Invoices\n\nInvoices are sent on the first day of each month.\n")
    Ingestion(
        searcher.pool, searcher.embedder, Analyzer(), IngestOptions.from_settings(searcher.settings)
    ).run([tmp_path], DOMAIN)
    after = pipeline.ask(_ask(PARAPHRASE))
    assert after.cache == "miss"
    # The stale entry is never served again: the question is now answered from the paraphrase's fresh entry.
    again = pipeline.ask(_ask(QUESTION))
    assert (again.cache, again.cache_match, again.cached_question) == ("hit", "semantic", PARAPHRASE)


def test_another_domain_or_other_settings_never_hit(searcher: Searcher) -> None:
    _forget(searcher.pool)
    pipeline = _pipeline(searcher)
    assert pipeline.ask(_ask(QUESTION)).cache == "miss"
    for asked in (QUESTION, PARAPHRASE):
        assert pipeline.ask(_ask(asked, OTHER_DOMAIN)).cache == "miss"
        _forget_domain(searcher.pool, OTHER_DOMAIN)
    assert pipeline.ask(_ask(PARAPHRASE, k=2)).cache == "miss"  # another k changes the answer


def _forget_domain(pool: ConnectionPool, domain: str) -> None:
    with pool.connection() as conn:
        conn.execute(
            "DELETE FROM answer_cache WHERE domain_id = (SELECT id FROM domains WHERE name = %s)", (domain,)
        )


def test_the_exact_cache_ignores_paraphrases(searcher: Searcher) -> None:
    _forget(searcher.pool)
    pipeline = _pipeline(searcher, answer_cache="exact")
    assert pipeline.semantic_threshold is None
    assert pipeline.ask(_ask(QUESTION)).cache == "miss"
    assert pipeline.ask(_ask(PARAPHRASE)).cache == "miss"


def test_the_packaged_threshold_holds_only_for_its_model(module_settings: Settings) -> None:
    packaged = packaged_threshold()
    assert semantic_threshold(module_settings, packaged.model) == packaged.threshold
    assert semantic_threshold(module_settings, "some/other-model") is None
    chosen = module_settings.model_copy(update={"semantic_cache_threshold": 0.9})
    assert semantic_threshold(chosen, "some/other-model") == 0.9
