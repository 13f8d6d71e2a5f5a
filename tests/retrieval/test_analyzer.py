"""The keyword route's analyzer: tokens, identifiers, Unicode, stop words, stemming, configuration."""

from __future__ import annotations

import threading

import pytest

from rag_server.retrieval.analyzer import STOPWORDS, Analyzer

PLAIN = Analyzer(stemmer=None, stopwords=False)


@pytest.mark.parametrize(
    "identifier",
    ["ERR-4012", "E-AUTH-017", "SYNC-409", "v2.3.1", "2.4.0", "user_id", "api.example.com", "2024-01-15"],
)
def test_identifiers_are_kept_whole_with_nothing_else(identifier: str) -> None:
    assert PLAIN.terms(identifier) == [identifier.casefold()]
    assert Analyzer().terms(f"The {identifier}, failing.") == [identifier.casefold(), "fail"]


def test_identifiers_are_never_stemmed_nor_stop_words() -> None:
    analyzer = Analyzer()
    assert analyzer.terms("running_jobs retries.json was_it") == ["running_jobs", "retries.json", "was_it"]


def test_identifier_boundaries() -> None:
    # Trailing punctuation is no connector; a connector needs letters or digits on both sides.
    assert PLAIN.terms("see api.example.com. Then ERR-4012- and -SYNC-409") == [
        "see",
        "api.example.com",
        "then",
        "err-4012",
        "and",
        "sync-409",
    ]
    # Runs of underscores join; leading and trailing ones do not belong to the token.
    assert PLAIN.terms("__init__ user__id _private") == ["init", "user__id", "private"]
    # Other punctuation splits: commas, slashes, colons, apostrophes, double hyphens.
    assert PLAIN.terms("1,000 /api/v2/users a:b it's foo--bar") == [
        "1",
        "000",
        "api",
        "v2",
        "users",
        "a",
        "b",
        "it",
        "s",
        "foo",
        "bar",
    ]


def test_plain_hyphenated_words_split_whatever_their_case() -> None:
    assert PLAIN.terms("re-ingest well-known") == ["re", "ingest", "well", "known"]
    # The rule ignores case, so a document and a lower-case query agree.
    assert PLAIN.terms("Well-Known X-Request-ID E-AUTH") == PLAIN.terms("well-known x-request-id e-auth")
    assert PLAIN.terms("E-AUTH") == ["e", "auth"]
    assert Analyzer().terms("Re-ingesting documents") == ["ingest", "document"]  # "re" is a stop word


def test_case_folding() -> None:
    assert PLAIN.terms("Error ERROR error") == ["error"] * 3
    # casefold maps ß to "ss": all spellings of Straße meet.
    assert PLAIN.terms("STRASSE Straße straße strasse") == ["strasse"] * 4
    assert Analyzer().terms("STRASSE") == Analyzer().terms("straße")


def test_unicode_letters_and_normalization() -> None:
    assert PLAIN.terms("Ärger über naïve Café") == ["ärger", "über", "naïve", "café"]
    # Decomposed and precomposed forms are one term; so are compatibility forms (ligatures, full width).
    assert PLAIN.terms("nai\u0308ve cafe\u0301") == ["naïve", "café"]
    assert PLAIN.terms("ﬁle ＡＢＣ１２３") == ["file", "abc123"]
    # Combining marks belong to their word, in any script.
    assert PLAIN.terms("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert PLAIN.terms("Ωμέγα кириллица 東京") == ["ωμέγα", "кириллица", "東京"]
    assert Analyzer().terms("naïve Ärger") == ["naïv", "ärger"]


def test_stop_words_toggle() -> None:
    text = "What is the status of the sync job"
    assert Analyzer(stemmer=None).terms(text) == ["status", "sync", "job"]
    assert PLAIN.terms(text) == ["what", "is", "the", "status", "of", "the", "sync", "job"]
    assert 100 <= len(STOPWORDS) <= 150
    assert all(word == word.casefold() and word.isalpha() for word in STOPWORDS)
    assert Analyzer(stemmer=None).terms("THE The the") == []


def test_stemming_toggle() -> None:
    text = "Running jobs retried connections"
    assert Analyzer().terms(text) == ["run", "job", "retri", "connect"]
    assert Analyzer(stemmer=None).terms(text) == ["running", "jobs", "retried", "connections"]
    # Words with digits are not stemmed.
    assert Analyzer().terms("http2s mp3s") == ["http2s", "mp3s"]
    assert Analyzer(stemmer="german").terms("Häuser") == ["haus"]


def test_empty_and_punctuation_only() -> None:
    assert Analyzer().terms("") == []
    assert Analyzer().terms("  ... --- ___ !!! ") == []


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"unknown stemmer 'klingon'; available: .*english"):
        Analyzer(stemmer="klingon")
    with pytest.raises(TypeError):
        Analyzer(stemmer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Analyzer(stopwords="yes")  # type: ignore[arg-type]
    assert Analyzer(stemmer=None, stopwords=False) == PLAIN
    assert repr(Analyzer()) == "Analyzer(stemmer='english', stopwords=True)"


def test_threads_agree() -> None:
    analyzer = Analyzer()
    text = "Connections retried while running ERR-4012 on nodes " * 20
    expected = analyzer.terms(text)
    results: list[list[str]] = []

    def work() -> None:
        for _ in range(50):
            results.append(analyzer.terms(text))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 200
    assert all(result == expected for result in results)
