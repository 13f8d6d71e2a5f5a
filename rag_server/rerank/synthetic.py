"""Synthetic training questions for a domain with no labels: one question per sampled chunk, judged against
that chunk's document, written as a BEIR folder that `train-reranker` and `tune` read with `--no-ingest`.

Sampling (`sample`): the domain's chunks with at least `MIN_TERMS` keyword terms, documents in a seeded
random order, one chunk of each document per round (so N questions spread over N documents before any
document gets a second one). The same seed on the same domain gives the same chunks.

Generators (`QuestionGenerator`, one question per chunk or None to skip it):

- `HeuristicGenerator` (the default: offline, no key, deterministic). Each word of the chunk is weighted by
  its idf in the domain's own BM25 index times 1 + ln(its count in the chunk): words the chunk dwells on and
  the domain rarely has (numbers alone are passed over). The *key sentence* is the one with the most weight
  per square root of its number of distinct words (neither the longest sentence nor a fragment wins); a
  sentence that merely repeats the document's title is passed over. From it, the `KEY_TERMS` heaviest
  distinct words, in the order the sentence has them and as written; when the document's title is
  *distinctive* (no other document of the domain has it, and it has a word in at most 5% of the chunks, or
  in one), up to `TITLE_TERMS` of its rarest words not already taken. They are phrased as a question by one
  of a few fixed templates ("what is known about ...?"), chosen by the chunk id and the seed.

  Why not the sentence itself: a question that is a sentence of its passage verbatim is found by BM25 at
  rank 1 every time, and a reranker trained on such labels learns "exact match = relevant", which real
  questions (shorter, worded differently) do not reward. A few rare words keep the question answerable by
  that passage while leaving the rest of the wording to retrieval.

- `ModelGenerator`: the configured chat model (`rag_server.llm.ChatModel`) is asked for one question the
  passage answers; the first line of its reply is taken. Every call's usage and cost is kept (`calls`).

The limitation: the label says the question's own source document is the relevant one and nothing else, so
other documents that answer it count as negatives; and a generated question names its passage's words more
often than a user's question would. docs/rerankers.md has what that costs on a data set with real labels.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import psycopg

from rag_server.config import Settings
from rag_server.domains import Domain
from rag_server.errors import RagError
from rag_server.feedback import Labels, write_beir
from rag_server.llm import ChatModel, ModelCall
from rag_server.retrieval.analyzer import Analyzer, configured_analyzer
from rag_server.retrieval.bm25 import BM25Index
from rag_server.retrieval.keyword import BM25Parameters, KeywordIndexes
from rag_server.trace import Usage

# A chunk with fewer keyword terms says too little to ask about.
MIN_TERMS = 8
# Words of the key sentence, and of a distinctive title, that make a heuristic question.
KEY_TERMS = 4
TITLE_TERMS = 2
# A sentence needs this many distinct known terms to be a key sentence.
MIN_SENTENCE_TERMS = 3
# A title is distinctive when one of its words is in at most this share of the domain's chunks (or one).
DISTINCTIVE_SHARE = 0.05
# The manifest written beside the questions (what made them), ignored by the BEIR readers.
MANIFEST = "synthetic.json"
# Chunk texts are read from the database this many at a time.
_BATCH = 256
# One sentence: up to a full stop, question or exclamation mark followed by white space, or a line break.
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_WORDS = re.compile(r"[^\W_]+(?:[-._][^\W_]+)*")
TEMPLATES: tuple[str, ...] = (
    "what is known about {words}?",
    "what does the literature say about {words}?",
    "how is {words} described?",
    "what are the findings on {words}?",
)


@dataclass(frozen=True)
class SampledChunk:
    """A chunk to ask about, with its document's external id and title."""

    chunk_id: int
    document_id: str
    title: str | None
    title_shared: bool  # another document of the domain has the same title
    text: str


@dataclass(frozen=True)
class SyntheticQuestion:
    """A generated question and the document it is judged relevant to (its chunk's)."""

    query_id: str
    text: str
    document_id: str
    chunk_id: int


class QuestionGenerator(Protocol):
    """Writes one question a chunk answers; None when the chunk gives nothing to ask."""

    name: str

    def question(self, chunk: SampledChunk) -> str | None: ...


@dataclass
class Generated:
    """What `generate` made: the questions, the chunks that gave none, and the model calls it took."""

    questions: list[SyntheticQuestion]
    skipped: int
    generator: str
    seed: int
    calls: list[ModelCall] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        return Usage.of(self.calls)


def sample_order(conn: psycopg.Connection[Any], domain: Domain, seed: int) -> list[int]:
    """The ids of the domain's chunks worth asking about, in sampling order (documents shuffled by the seed,
    one chunk of each document per round; within a document, its chunks shuffled too)."""
    rows = conn.execute(
        "SELECT document_id, id FROM chunks WHERE domain_id = %s AND cardinality(terms) >= %s"
        " ORDER BY document_id, id",
        (domain.id, MIN_TERMS),
    ).fetchall()
    by_document: dict[int, list[int]] = {}
    for document_id, chunk_id in rows:
        by_document.setdefault(document_id, []).append(chunk_id)
    rng = np.random.default_rng(seed)
    documents = [by_document[key] for key in sorted(by_document)]
    order = rng.permutation(len(documents))
    queues = [[chunks[i] for i in rng.permutation(len(chunks))] for chunks in documents]
    picked: list[int] = []
    for round_number in range(max((len(queue) for queue in queues), default=0)):
        picked += [queues[i][round_number] for i in order if round_number < len(queues[i])]
    return picked


def sampled_chunks(
    conn: psycopg.Connection[Any], domain: Domain, chunk_ids: Sequence[int]
) -> list[SampledChunk]:
    """The chunks of `chunk_ids`, in that order, with their documents' ids and titles."""
    rows = conn.execute(
        """SELECT c.id, d.external_id, d.title, c.text,
                  d.title IS NOT NULL AND EXISTS (
                      SELECT 1 FROM documents o
                      WHERE o.domain_id = d.domain_id AND o.id <> d.id AND lower(o.title) = lower(d.title))
           FROM chunks c JOIN documents d ON d.id = c.document_id
           WHERE c.domain_id = %s AND c.id = ANY(%s)""",
        (domain.id, list(chunk_ids)),
    ).fetchall()
    by_id = {row[0]: SampledChunk(row[0], row[1], row[2], bool(row[4]), row[3]) for row in rows}
    return [by_id[chunk_id] for chunk_id in chunk_ids if chunk_id in by_id]


def generate(
    conn: psycopg.Connection[Any],
    domain: Domain,
    generator: QuestionGenerator,
    questions: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Generated:
    """Up to `questions` questions, one per sampled chunk (chunks that give none, or a question already
    asked, are passed over for the next in the sampling order); RagError when the domain has no chunk to
    ask about."""
    if questions < 1:
        raise RagError("the number of questions must be at least 1")
    order = sample_order(conn, domain, seed)
    if not order:
        raise RagError(
            f"domain {domain.name!r} has no chunk of {MIN_TERMS} or more terms to ask about; ingest documents first"
        )
    made: list[SyntheticQuestion] = []
    seen: set[str] = set()
    skipped = 0
    for chunk in _chunks(conn, domain, order):
        text = generator.question(chunk)
        key = " ".join(text.casefold().split()) if text else ""
        if not key or key in seen:
            skipped += 1
            continue
        seen.add(key)
        made.append(SyntheticQuestion(f"c{chunk.chunk_id}", text or "", chunk.document_id, chunk.chunk_id))
        if progress:
            progress(1)
        if len(made) == questions:
            break
    calls = list(getattr(generator, "calls", []))
    return Generated(made, skipped, generator.name, seed, calls)


def _chunks(conn: psycopg.Connection[Any], domain: Domain, order: list[int]) -> Iterator[SampledChunk]:
    for start in range(0, len(order), _BATCH):
        yield from sampled_chunks(conn, domain, order[start : start + _BATCH])


def write_folder(found: Generated, folder: Path, domain: str) -> int:
    """Write the questions as a BEIR folder (queries.jsonl, qrels/train.tsv) and a manifest; RagError when
    `folder` exists and is not an empty folder (nothing is overwritten)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RagError(f"{folder} exists and is not an empty folder: give a new one")
    if not found.questions:
        raise RagError(f"no question could be generated from domain {domain!r}'s chunks")
    labels = Labels(
        {q.query_id: q.text for q in found.questions},
        {q.query_id: {q.document_id: 1} for q in found.questions},
    )
    written = write_beir(labels, folder, "train")
    manifest = {
        "domain": domain,
        "generator": found.generator,
        "seed": found.seed,
        "questions": len(found.questions),
        "skipped_chunks": found.skipped,
        "usage": asdict(found.usage),
        "chunks": {q.query_id: q.chunk_id for q in found.questions},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written


class HeuristicGenerator:
    """Offline questions from a chunk's key sentence's rarest words (and a distinctive title's): see the
    module docstring.

    >>> from rag_server.retrieval.bm25 import BM25Index
    >>> analyzer = Analyzer()
    >>> texts = ["The pump failed.", "The pump was fixed.", "Turbine blades crack under cyclic thermal load."]
    >>> index = BM25Index([1, 2, 3], [analyzer.terms(text) for text in texts])
    >>> chunk = SampledChunk(3, "doc-3", None, False, texts[2])
    >>> HeuristicGenerator(index, analyzer).question(chunk)
    'what are the findings on turbine blades crack cyclic?'
    """

    name = "heuristic"

    def __init__(self, index: BM25Index, analyzer: Analyzer, seed: int = 0) -> None:
        self.index = index
        self.analyzer = analyzer
        self.seed = seed
        size = max(index.size, 1)
        rare_df = max(DISTINCTIVE_SHARE * size, 1.0)
        # The idf of a term in DISTINCTIVE_SHARE of the chunks, or in one (BM25Okapi's formula).
        self._distinctive_idf = float(np.log(size - rare_df + 0.5) - np.log(rare_df + 0.5))

    @classmethod
    def for_domain(
        cls, conn: psycopg.Connection[Any], domain: Domain, settings: Settings, seed: int = 0
    ) -> HeuristicGenerator:
        """The generator over the domain's keyword index, analyzed as the settings say."""
        analyzer = configured_analyzer(settings)
        indexes = KeywordIndexes(
            analyzer, BM25Parameters(settings.bm25_k1, settings.bm25_b, settings.bm25_epsilon)
        )
        return cls(indexes.current(conn, domain).index, analyzer, seed)

    def question(self, chunk: SampledChunk) -> str | None:
        title_terms = set(self.analyzer.terms(chunk.title or ""))
        counts = Counter(self.analyzer.terms(chunk.text))
        best: tuple[float, list[tuple[str, str, float]]] | None = None
        for sentence in _SENTENCES.split(chunk.text):
            words = self._words(sentence, counts)
            distinct = {term: weight for _, term, weight in words}
            if len(distinct) < MIN_SENTENCE_TERMS or (title_terms and distinct.keys() <= title_terms):
                continue
            score = sum(distinct.values()) / np.sqrt(len(distinct))
            if best is None or score > best[0]:
                best = (score, words)
        if best is None:
            return None
        chosen = _rarest(best[1], KEY_TERMS)
        picked = _in_order(best[1], chosen)
        if self._distinctive(chunk):
            title_words = [word for word in self._words(chunk.title or "", counts) if word[1] not in chosen]
            tail = _in_order(title_words, _rarest(title_words, TITLE_TERMS))
            if tail:
                picked += ["in", *tail]
        template = TEMPLATES[(chunk.chunk_id + self.seed) % len(TEMPLATES)]
        return template.format(words=" ".join(picked))

    def _words(self, text: str, counts: Counter[str] | None = None) -> list[tuple[str, str, float]]:
        """(word as written, lower-cased; its term; its weight) for each word of `text` that is a known term
        with a letter in it; the weight is the term's idf times 1 + ln(its count in the chunk, `counts`)."""
        found = []
        for word in _WORDS.findall(text):
            terms = self.analyzer.terms(word) if any(ch.isalpha() for ch in word) else []
            idf = self.index.idf(terms[0]) if len(terms) == 1 else 0.0
            if idf > 0:
                tf = counts.get(terms[0], 1) if counts else 1
                found.append((word.lower(), terms[0], idf * (1 + float(np.log(max(tf, 1))))))
        return found

    def _distinctive(self, chunk: SampledChunk) -> bool:
        if not chunk.title or chunk.title_shared or chunk.title == chunk.document_id:
            return False
        return any(idf >= self._distinctive_idf for _, _, idf in self._words(chunk.title))


def _rarest(words: list[tuple[str, str, float]], count: int) -> set[str]:
    """The `count` distinct terms of `words` with the highest weight (ties: the earlier word)."""
    weight: dict[str, float] = {}
    for _, term, value in words:
        weight.setdefault(term, value)
    return set(sorted(weight, key=lambda term: -weight[term])[:count])


def _in_order(words: list[tuple[str, str, float]], terms: set[str]) -> list[str]:
    """The first word of each of `terms`, in the order `words` has them."""
    seen: set[str] = set()
    picked = []
    for word, term, _ in words:
        if term in terms and term not in seen:
            seen.add(term)
            picked.append(word)
    return picked


# What the model is asked; the passage follows.
PROMPT = (
    "Write one question that the passage below answers, as a user of a search engine would ask it: do not "
    "copy a sentence of the passage, and do not mention 'the passage'. Reply with the question only, on one "
    "line."
)
# A question longer than this is a reply that went wrong.
MAX_QUESTION_CHARS = 300
_PREFIX = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*[:.)-]|\d+\s*[.)-]|[-*•])\s*", re.IGNORECASE)


class ModelGenerator:
    """Questions written by the configured chat model; each call's usage is kept in `calls`."""

    name = "llm"

    def __init__(self, model: ChatModel, max_tokens: int = 80, max_passage_chars: int = 4000) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.max_passage_chars = max_passage_chars
        self.calls: list[ModelCall] = []

    def question(self, chunk: SampledChunk) -> str | None:
        passage = chunk.text[: self.max_passage_chars]
        if chunk.title:
            passage = f"Title: {chunk.title}\n\n{passage}"
        reply = self.model.complete(
            "synthetic question",
            [{"role": "system", "content": PROMPT}, {"role": "user", "content": passage}],
            max_tokens=self.max_tokens,
        )
        self.calls.append(reply.call)
        return parse_question(reply.text)


def parse_question(reply: str) -> str | None:
    """The question in a model's reply: its first non-empty line, without a label, numbering or quotes.

    >>> parse_question('Question: "How long are backups kept?"\\nThey are kept 30 days.')
    'How long are backups kept?'
    >>> parse_question("   ") is None
    True
    """
    for line in reply.splitlines():
        text = _PREFIX.sub("", line).strip().strip("\"'`“”").strip()
        if text:
            return text if len(text) <= MAX_QUESTION_CHARS else None
    return None
