"""How well evidence covers a question: sentence scores for the extractive answerer, citation support, and
the answerability features that calibrated abstention reads.

Terms are the keyword route's (same analyzer: stemmed, stopwords out) and weighted by the domain's BM25 idf,
so a rare term the evidence lacks ("Normandy" in a question about Normans) weighs more than a common one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag_server.answer.evidence import Evidence
from rag_server.retrieval.analyzer import Analyzer

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"')\]]*|\n|$)")
_NUMBER = re.compile(r"\d")
_CAPITALIZED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_NUMBERS = re.compile(r"\b\d[\d,.]*\b")
# Capitalized words that are not names.
_STOP_NAMES = {"what", "which", "who", "when", "where", "why", "how", "i", "the", "a", "an", "in", "of"}
_NEGATION = re.compile(r"\b(not|never|no|n't|without|none|neither|nor)\b", re.IGNORECASE)
# Question words that ask for a number or date, or for a name.
_ASKS_NUMBER = re.compile(
    r"\b(how (many|much|long|old|far|often)|what (year|percentage|number|date)|when)\b", re.I
)
_ASKS_NAME = re.compile(r"\b(who|whom|whose|where|which)\b", re.I)

FEATURES: tuple[str, ...] = (
    "sentence_coverage",
    "evidence_coverage",
    "missing_idf",
    "sentence_cosine",
    "answer_type",
    "negation",
    "margin",
    "sql_rows",
    "name_missing",
    "number_missing",
    "best_score",
    "name_missing_sentence",
    "evidence_gap",
)
# The features the packaged calibration is fitted on: the subset that best separated answerable from
# unanswerable SQuAD 2.0 questions in cross-validation on the calibration questions (docs/answers.md); the
# others are still computed and reported with each answer.
CALIBRATED: tuple[str, ...] = (
    "best_score",
    "evidence_coverage",
    "name_missing",
    "name_missing_sentence",
    "answer_type",
    "evidence_gap",
)


@dataclass(frozen=True)
class Sentence:
    """A sentence of one evidence item, with its offsets in the evidence text."""

    evidence: Evidence
    start: int
    end: int
    rank: int

    @property
    def text(self) -> str:
        return self.evidence.text[self.start : self.end].strip()


@dataclass(frozen=True)
class Scored:
    sentence: Sentence
    coverage: float
    cosine: float
    score: float


@dataclass(frozen=True)
class Lexicon:
    """The domain's analyzer and idf; a term no chunk holds weighs as much as the rarest one."""

    analyzer: Analyzer
    idf: Callable[[str], float]
    max_idf: float

    def terms(self, text: str) -> set[str]:
        return set(self.analyzer.terms(text))

    def weight(self, term: str) -> float:
        known = self.idf(term)
        return known if known > 0 else self.max_idf

    def coverage(self, question: set[str], text_terms: set[str]) -> float:
        """The idf-weighted share of the question's terms the text holds."""
        total = sum(self.weight(t) for t in question)
        return sum(self.weight(t) for t in question & text_terms) / total if total else 0.0


def sentences(evidence: Sequence[Evidence]) -> list[Sentence]:
    """The sentences of every chunk (a table's rows are one sentence: the answer states the rows)."""
    found: list[Sentence] = []
    for rank, item in enumerate(evidence):
        if item.kind == "table":
            found.append(Sentence(item, 0, len(item.text), rank))
            continue
        for match in _SENTENCE.finditer(item.text):
            if len(match.group().strip()) >= 12:
                found.append(Sentence(item, match.start(), match.end(), rank))
    return found


def score_sentences(
    question: str,
    question_vector: np.ndarray,
    candidates: Sequence[Sentence],
    lexicon: Lexicon,
    embed: Callable[[list[str]], np.ndarray],
    embedded: int = 8,
) -> list[Scored]:
    """Candidates by how well they answer, best first: idf-weighted term coverage, and the embedding cosine
    of the `embedded` candidates with the best coverage (embedding every sentence would cost more than the
    whole search)."""
    if not candidates:
        return []
    asked = lexicon.terms(question)
    coverages = [lexicon.coverage(asked, lexicon.terms(c.text)) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (-coverages[i], candidates[i].rank))
    chosen = order[:embedded]
    cosines = dict.fromkeys(range(len(candidates)), 0.0)
    vectors = embed([candidates[i].text for i in chosen])
    for i, vector in zip(chosen, vectors, strict=True):
        cosines[i] = float(vector @ question_vector)
    scored = []
    for i, candidate in enumerate(candidates):
        # Earlier evidence ranked higher by retrieval (and rerank): a small prior breaks near-ties.
        prior = 0.05 / (1 + candidate.rank)
        value = 0.55 * coverages[i] + 0.45 * cosines[i] + prior
        scored.append(Scored(candidate, coverages[i], cosines[i], value))
    return sorted(scored, key=lambda s: -s.score)


def features(question: str, ranked: Sequence[Scored], lexicon: Lexicon) -> dict[str, float]:
    """What abstention reads: how well the best sentence and its evidence cover the question."""
    if not ranked:
        return dict.fromkeys(FEATURES, 0.0)
    best = ranked[0]
    asked = lexicon.terms(question)
    evidence_terms = lexicon.terms(best.sentence.evidence.text)
    missing = [lexicon.weight(t) / lexicon.max_idf for t in asked - evidence_terms] if lexicon.max_idf else []
    table = best.sentence.evidence.kind == "table"
    return {
        "sentence_coverage": best.coverage,
        "evidence_coverage": lexicon.coverage(asked, evidence_terms),
        "missing_idf": max(missing, default=0.0),
        "sentence_cosine": best.cosine,
        "answer_type": answer_type_found(question, best.sentence.text),
        "negation": float(bool(_NEGATION.search(question))),
        "margin": best.score - ranked[1].score if len(ranked) > 1 else best.score,
        "sql_rows": float(table and bool(best.sentence.evidence.rows)),
        "name_missing": _missing(_names(question), best.sentence.evidence.text),
        "number_missing": _missing(set(_NUMBERS.findall(question)), best.sentence.evidence.text),
        "best_score": best.score,
        "name_missing_sentence": _missing(_names(question), best.sentence.text),
        "evidence_gap": _evidence_gap(ranked),
    }


def _evidence_gap(ranked: Sequence[Scored]) -> float:
    """How far the first evidence's retrieval score leads the second's (0 with one, or with a table)."""
    by_rank = {s.sentence.rank: s.sentence.evidence.score for s in ranked}
    first, second = by_rank.get(0), by_rank.get(1)
    return first - second if first is not None and second is not None else 0.0


def _names(question: str) -> set[str]:
    """Capitalized words past the question's first word (names, places, titles)."""
    words = re.findall(r"\b[\w'-]+\b", question)
    return {w for w in words[1:] if w[0].isupper() and w.lower() not in _STOP_NAMES}


def _missing(needles: set[str], text: str) -> float:
    """The share of the question's names (or numbers) the passage does not mention."""
    if not needles:
        return 0.0
    lowered = text.lower()
    return sum(needle.lower() not in lowered for needle in needles) / len(needles)


def answer_type_found(question: str, sentence: str) -> float:
    """1 when the sentence holds the kind of thing asked for (a number, a name) beyond the question's own
    words, 0 when it does not, 0.5 when the question asks for no particular kind."""
    asked = set(re.findall(r"\w+", question.lower()))
    if _ASKS_NUMBER.search(question):
        return float(any(_NUMBER.search(w) and w.lower() not in asked for w in re.findall(r"\w+", sentence)))
    if _ASKS_NAME.search(question):
        return float(any(w.lower() not in asked for w in _CAPITALIZED.findall(sentence)))
    return 0.5


def support(claim: str, evidence: Evidence, lexicon: Lexicon) -> float:
    """How much of a claim's (idf-weighted) terms the cited evidence holds."""
    return lexicon.coverage(lexicon.terms(claim), lexicon.terms(evidence.text))
