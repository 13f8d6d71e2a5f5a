"""What the router looks at: cheap surface features of the question, its matches against the domain's tables,
and the query embedding that semantic search computes anyway."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from rag_server.sql import deterministic
from rag_server.sql.catalog import Catalog, CatalogTable

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/#]*")
_QUESTION_START = re.compile(
    r"^\s*(what|how|why|when|where|who|whom|whose|which|can|could|does|do|did|is|are|was|were|should|would|"
    r"will|explain|describe|tell|give|show|list|find)\b",
    re.IGNORECASE,
)
# ERR-4012, SYNC-409, v2.4.1, max_connections, getUserById, HTTP 502, SKU12345, #1234, file.txt
_IDENTIFIER = re.compile(
    r"(?:\b[A-Za-z]+[-_]\d+[\w-]*\b|\b\d+[-_][A-Za-z]+\b|\bv?\d+\.\d+(?:\.\d+)+\b|\b[a-z]+_[a-z0-9_]+\b|"
    r"\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z]{2,}\d*\b|#\d+|\b\w+\.(?:txt|csv|json|py|md|pdf|yaml|yml|log)\b|"
    r"\b[A-Z]+\d+[A-Z0-9]*\b)"
)
# The router's aggregation words: the offline generator's (one lexicon for both) and wider asks it declines.
_AGGREGATE = re.compile(
    r"\b("
    + "|".join(
        sorted({re.escape(w.strip()) for _, words in deterministic.AGGREGATES for w in words}, key=len)[::-1]
    )
    + r"|counts|totals|median|most|least|fewest|top \d+|ratio|percentage|percent|share of|rate|per|"
    r"breakdown|broken down|grouped|group by|each|every|distribution|trend|monthly|quarterly|yearly|annual)\b",
    re.IGNORECASE,
)
_LISTING = re.compile(r"^\s*(list|show|which|find|give me|display)\b", re.IGNORECASE)
_MONTH = re.compile(
    r"\b(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(t(ember)?)?|oct(ober)?|"
    r"nov(ember)?|dec(ember)?|q[1-4]|quarter|last (week|month|year)|this (week|month|year))\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(19|20)\d{2}\b")
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "this",
        "that",
        "what",
        "how",
        "why",
        "when",
        "where",
        "who",
        "which",
        "do",
        "does",
        "did",
        "can",
        "i",
        "my",
        "we",
        "our",
        "you",
        "your",
        "from",
        "by",
        "at",
        "as",
        "about",
        "into",
        "than",
        "then",
        "there",
        "their",
        "them",
    ]
)

FEATURE_NAMES: tuple[str, ...] = (
    "log_words",
    "one_word",
    "few_words",
    "question_start",
    "question_mark",
    "identifiers",
    "identifier_share",
    "quotes",
    "digit_share",
    "year",
    "month_or_period",
    "iso_date",
    "aggregate_words",
    "how_many",
    "listing",
    "has_tables",
    "table_mentions",
    "column_mentions",
    "value_mentions",
    "capitalized_share",
    "stopword_share",
    "mean_word_length",
    "sql_expressible",
)


@dataclass(frozen=True)
class Vocabulary:
    """The domain's table words: table names, column name words and known values, lower case."""

    tables: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()
    phrases: tuple[str, ...] = field(default=())
    # The domain's full catalog, when known: the offline SQL generator then tells whether the question maps
    # onto the tables (training rows described by names only have none).
    catalog: Catalog | None = None

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Vocabulary:
        names = [
            f"{table.name}.{column.name}" for table in catalog.tables.values() for column in table.columns
        ]
        values = [
            str(value)
            for table in catalog.tables.values()
            for column in table.columns
            for value in column.text_values
        ]
        found = cls.from_schema(names, values)
        labels = set().union(*(_forms(label) for label in map(_described_as, catalog.tables.values())))
        return cls(found.tables | labels, found.columns, found.values, found.phrases, catalog)

    @classmethod
    def from_schema(cls, names: Iterable[str], values: Iterable[str] = ()) -> Vocabulary:
        """From "table.column" names (training rows) or table and column names and values (a catalog)."""
        tables: set[str] = set()
        columns: set[str] = set()
        for name in names:
            table, _, column = name.lower().partition(".")
            tables |= _forms(table)
            for word in column.split("_"):
                if len(word) > 2 and word not in {"id"}:
                    columns |= _forms(word)
        phrases = tuple(sorted({value.lower() for value in values if len(value) > 2 and " " in value}))
        singles = {value.lower() for value in values if len(value) > 1 and " " not in value}
        return cls(frozenset(tables), frozenset(columns), frozenset(singles), phrases)

    @property
    def empty(self) -> bool:
        return not self.tables


def _described_as(table: CatalogTable) -> str:
    """The noun a table's description opens with as its label ("Invoices: one row per charge" -> invoices):
    users ask about invoices, not orders. Only a short label before a colon counts."""
    label, colon, _ = table.description.partition(":")
    words = label.split()
    return words[-1] if colon and 0 < len(words) <= 4 else ""


def _forms(word: str) -> set[str]:
    word = word.strip().lower()
    if not word:
        return set()
    forms = {word, word.replace("_", " ")}
    for part in word.split("_"):
        forms |= {part, part.rstrip("s"), part + "s"} if len(part) > 2 else set()
    return forms


def handcrafted(question: str, vocabulary: Vocabulary, expressible: bool | None = None) -> np.ndarray:
    """The surface features of a question, in FEATURE_NAMES order. `expressible`: whether the offline
    generator maps it onto the vocabulary's catalog, when the caller already knows (else it is tried)."""
    if expressible is None:
        expressible = deterministic.draft(question, vocabulary.catalog) is not None
    words = _WORD.findall(question)
    lowered = [word.lower().strip(".-/#") for word in words]
    count = max(len(words), 1)
    identifiers = _IDENTIFIER.findall(question)
    text = question.lower()
    table_hits = sum(word in vocabulary.tables for word in lowered)
    column_hits = sum(word in vocabulary.columns for word in lowered)
    value_hits = sum(word in vocabulary.values for word in lowered) + sum(
        phrase in text for phrase in vocabulary.phrases
    )
    capitalized = sum(word[:1].isupper() for word in words[1:])
    return np.array(
        [
            math.log1p(len(words)),
            float(len(words) <= 1),
            float(len(words) <= 3),
            float(bool(_QUESTION_START.match(question))),
            float("?" in question),
            float(len(identifiers)),
            len(identifiers) / count,
            float(bool(re.search(r"[\"“”'`].+[\"“”'`]", question))),
            sum(char.isdigit() for char in question) / max(len(question), 1),
            float(bool(_YEAR.search(question))),
            float(bool(_MONTH.search(question))),
            float(bool(_ISO_DATE.search(question))),
            float(len(_AGGREGATE.findall(question))),
            float(bool(re.search(r"\b(how many|number of)\b", text))),
            float(bool(_LISTING.match(question))),
            float(not vocabulary.empty),
            min(table_hits, 3) / 3,
            min(column_hits, 3) / 3,
            min(value_hits, 3) / 3,
            capitalized / count,
            sum(word in _STOPWORDS for word in lowered) / count,
            sum(len(word) for word in words) / count,
            float(expressible),
        ],
        dtype=np.float32,
    )
