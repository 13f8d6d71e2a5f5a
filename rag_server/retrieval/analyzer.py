"""The text analyzer of the keyword route: the same text -> terms at ingest (stored per chunk) and at query.

Rules, in order:

1. Normalize: NFKC, Unicode case folding (``str.casefold``), NFKC again. So full-width and ligature forms
   fold to their plain letters ("ﬁle" -> "file"), a decomposed "naïve" equals the precomposed one, and
   "STRASSE", "Straße" and "strasse" all become "strasse" (casefold maps ß to "ss"). Accents are kept:
   "Ärger" -> "ärger", "naïve" -> "naïve" (then stemmed as any word, "naïv" in English).
2. Tokens are runs of Unicode letters and digits (combining marks inside a run belong to it, so
   "हिन्दी" is one token), joined by single connectors: "-", ".", or a run of "_" between two such runs.
3. A joined token is an *identifier*, kept whole as one term, when it contains "." or "_", or it contains
   "-" and at least one digit: ``ERR-4012``, ``E-AUTH-017``, ``SYNC-409``, ``v2.3.1``, ``2.4.0``,
   ``user_id``, ``api.example.com``, ``config.yaml``, ``2024-01-15``. Identifiers are emitted alone (no
   sub-terms), never stemmed and never dropped as stop words. Any other hyphenated token ("re-ingest",
   "well-known", "E-AUTH") is split into its words, which are then treated as plain words.

   Why this rule: it only looks at characters that survive case folding, so a text analyzes the same
   whatever its case, and a query typed in lower case ("err-4012", "x-request-id") gets the same terms as
   the document ("ERR-4012", "X-Request-ID"). A case-based rule (keep "ALLCAPS-CODES" whole) would index
   the title-case heading "Well-Known Ports" as "well-known" but analyze the query "well-known ports" as
   "well", "known": a silent miss. Dots and underscores almost never join plain prose words, digits in a
   hyphenated token almost always mean a code, version or date; letter-only hyphen codes ("E-AUTH") are
   still found, as their words.
4. Plain words: dropped when stop words are on and the word is in ``STOPWORDS``; stemmed with the
   configured Snowball stemmer (PyStemmer) when it consists of letters only (so "v2", "404", "http2" stay
   as they are).

The analyzer's output is stored at ingest: changing these rules or the configuration requires re-ingest.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import unicodedata
from dataclasses import dataclass

import Stemmer

from rag_server.config import Settings
from rag_server.errors import ConfigError

# A small English stop-word list: articles, pronouns, auxiliaries, prepositions, conjunctions, and the
# fragments that apostrophes leave behind ("don't" -> "don", "t"; "we're" -> "we", "re").
# fmt: off
STOPWORDS: frozenset[str] = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
    "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has",
    "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if",
    "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor",
    "not", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over",
    "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under",
    "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom",
    "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "s", "t", "d", "ll",
    "m", "re", "ve", "don",
})
# fmt: on

_DIGIT = re.compile(r"\d")


def _mark_ranges() -> str:
    """A regex character-class body of every combining mark (Unicode category M*).

    Marks exist only in planes 0-2 and in plane 14 (variation selectors), so only those are scanned.
    """
    parts: list[str] = []
    for low, high in ((0, 0x2FFFF), (0xE0000, min(0xE0FFF, sys.maxunicode))):
        start = None
        for cp in range(low, high + 2):
            is_mark = cp <= high and unicodedata.category(chr(cp))[0] == "M"
            if is_mark and start is None:
                start = cp
            elif not is_mark and start is not None:
                parts.append(f"\\U{start:08x}-\\U{cp - 1:08x}")
                start = None
    return "".join(parts)


@functools.cache
def _token_pattern() -> re.Pattern[str]:
    """Words (letters and digits, with their combining marks) joined by "-", "." or runs of "_"."""
    word = rf"[^\W_]+(?:[{_mark_ranges()}]+[^\W_]*)*"
    return re.compile(rf"{word}(?:(?:[-.]|_+){word})*")


_local = threading.local()


def _stemmer(name: str) -> Stemmer.Stemmer:
    """The stemmer for `name`, one per thread (PyStemmer's stemmers are not thread-safe)."""
    stemmers: dict[str, Stemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    stemmer = stemmers.get(name)
    if stemmer is None:
        stemmer = stemmers[name] = Stemmer.Stemmer(name)
    return stemmer


@dataclass(frozen=True)
class Analyzer:
    """Text -> terms for BM25; see the module docstring for the rules.

    `stemmer`: a PyStemmer algorithm name (``Stemmer.algorithms()``), or None for no stemming.
    `stopwords`: whether words in ``STOPWORDS`` are dropped.

    >>> Analyzer().terms("Sync fails with ERR-4012 on v2.3.1 for user_id, see api.example.com")
    ['sync', 'fail', 'err-4012', 'v2.3.1', 'user_id', 'see', 'api.example.com']
    >>> Analyzer(stemmer=None, stopwords=False).terms("Well-known STRASSE, Straße")
    ['well', 'known', 'strasse', 'strasse']
    """

    stemmer: str | None = "english"
    stopwords: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.stopwords, bool):
            raise TypeError(f"stopwords must be a bool, not {type(self.stopwords).__name__}")
        if self.stemmer is not None:
            if not isinstance(self.stemmer, str):
                raise TypeError(f"stemmer must be a str or None, not {type(self.stemmer).__name__}")
            try:
                _stemmer(self.stemmer)
            except KeyError:
                available = ", ".join(Stemmer.algorithms())
                raise ValueError(
                    f"unknown stemmer {self.stemmer!r}; available: {available} (or None for no stemming)"
                ) from None

    def terms(self, text: str) -> list[str]:
        """The terms of `text`, in order of appearance, repeats kept."""
        if not text:
            return []
        text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
        stop = STOPWORDS if self.stopwords else frozenset()
        stem = self.stemmer is not None
        terms: list[str] = []
        to_stem: list[int] = []  # positions in `terms` of the words to stem
        for token in _token_pattern().findall(text):
            if "." in token or "_" in token or ("-" in token and _DIGIT.search(token)):
                terms.append(token)  # an identifier: whole, as it is
                continue
            for word in token.split("-") if "-" in token else (token,):
                if word in stop:
                    continue
                if stem and word.isalpha():
                    to_stem.append(len(terms))
                terms.append(word)
        if to_stem:
            stemmed = _stemmer(self.stemmer).stemWords([terms[i] for i in to_stem])  # type: ignore[arg-type]
            for i, word in zip(to_stem, stemmed, strict=True):
                terms[i] = word
        return terms


def configured_analyzer(settings: Settings) -> Analyzer:
    """The analyzer the settings ask for (RAG_BM25_STEMMER, RAG_BM25_STOPWORDS)."""
    try:
        return Analyzer(stemmer=settings.bm25_stemmer, stopwords=settings.bm25_stopwords)
    except ValueError as error:
        raise ConfigError(f"RAG_BM25_STEMMER: {error}") from None
