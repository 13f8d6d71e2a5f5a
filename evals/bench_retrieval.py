"""The retrieval benchmark on a synthetic corpus of N chunks, measured side by side in one run.

Per route p50/p95 latency (query embedding excluded: vectors are given); BM25 against rank-bm25 on the same
corpus; semantic recall@10 against exact search and HNSW speed against numpy brute force.

The corpus: Zipf-distributed words from a fixed vocabulary (with identifiers such as ERR-1234 sprinkled in)
and embedding-like vectors: random topic and subtopic directions plus noise, normalized, so that
neighbourhoods have structure at several scales as real embeddings do, rather than uniform noise.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import psutil
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import HnswOptions, delete_domain, ensure_domain_index, get_domain
from rag_server.retrieval.analyzer import configured_analyzer
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.semantic import semantic_search
from rag_server.retrieval.types import SearchRequest

DIMENSION = 384
BENCH_MODEL = "bench-synthetic-384"
_VOCABULARY = 30_000
_TOPICS = 256
_SUBTOPICS = 32
_WORDS_PER_CHUNK = (40, 120)


@dataclass
class RouteLatency:
    p50_ms: float
    p95_ms: float
    mean_ms: float


@dataclass
class RetrievalBenchResult:
    """Everything one run measured; ratios are ours against the reference in the same run."""

    chunks: int
    queries: int
    load_seconds: float
    index_seconds: float
    routes: dict[str, RouteLatency] = field(default_factory=dict)
    semantic_recall_at_10: float = 0.0
    brute_force_ms_p50: float = 0.0
    hnsw_speedup_vs_brute_force: float = 0.0
    bm25_index_ms_p50: float = 0.0
    rank_bm25_ms_p50: float | None = None
    bm25_speedup_vs_rank_bm25: float | None = None
    bm25_scores_equal_rank_bm25: bool | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyntheticCorpus:
    """Deterministic pseudo-text and embedding-like vectors."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.words = [_word(index) for index in range(_VOCABULARY)]
        ranks = np.arange(1, _VOCABULARY + 1)
        self.word_p = (1.0 / ranks**1.07) / np.sum(1.0 / ranks**1.07)
        self.topics = _normalize(self.rng.standard_normal((_TOPICS, DIMENSION)).astype(np.float32))
        self.subtopics = _normalize(
            self.rng.standard_normal((_TOPICS * _SUBTOPICS, DIMENSION)).astype(np.float32)
        )

    def texts(self, count: int) -> Iterator[str]:
        low, high = _WORDS_PER_CHUNK
        for _ in range(count):
            picks = self.rng.choice(_VOCABULARY, size=int(self.rng.integers(low, high)), p=self.word_p)
            words = [self.words[pick] for pick in picks]
            if self.rng.random() < 0.1:
                words.insert(int(self.rng.integers(len(words))), f"ERR-{int(self.rng.integers(1000, 9999))}")
            yield " ".join(words)

    def vectors(self, count: int) -> np.ndarray:
        # Topics, subtopics within them, then a little noise: neighbourhoods at several scales, as in real
        # sentence embeddings (uniform noise around a few centres would make every neighbour equidistant).
        topic = self.rng.integers(_TOPICS, size=count)
        subtopic = self.rng.integers(_SUBTOPICS, size=count)
        mixed = (
            self.topics[topic]
            + 0.7 * self.subtopics[topic * _SUBTOPICS % len(self.subtopics) + subtopic]
            + 0.35 * _normalize(self.rng.standard_normal((count, DIMENSION)).astype(np.float32))
        )
        return _normalize(mixed.astype(np.float32))

    def queries(self, count: int, corpus_vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        texts = [" ".join(text.split()[:4]) for text in self.texts(count)]
        near = corpus_vectors[self.rng.integers(len(corpus_vectors), size=count)]
        noise = 0.3 * _normalize(self.rng.standard_normal(near.shape).astype(np.float32))
        return texts, _normalize(near + noise)


def _word(index: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = ""
    index += 26 * 26
    while index:
        index, rest = divmod(index, 26)
        out += letters[rest]
    return out + "o"


def _normalize(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _latency(samples: list[float]) -> RouteLatency:
    values = np.asarray(samples)
    return RouteLatency(
        round(float(np.percentile(values, 50)), 3),
        round(float(np.percentile(values, 95)), 3),
        round(float(values.mean()), 3),
    )


def _time_ms(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def load_corpus(
    pool: ConnectionPool,
    settings: Settings,
    domain: str,
    count: int,
    progress: Callable[[int], None],
    seed: int = 7,
) -> tuple[np.ndarray, list[list[str]], float, float]:
    """Write the synthetic corpus into a fresh domain; returns vectors, terms and load/index seconds."""
    corpus = SyntheticCorpus(seed)
    analyzer = configured_analyzer(settings)
    with pool.connection() as conn:
        delete_domain(conn, domain, missing_ok=True)
        with conn.transaction():
            conn.execute(
                "INSERT INTO embedding_models (name, dimension) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (BENCH_MODEL, DIMENSION),
            )
            model_id = conn.execute(
                "SELECT id FROM embedding_models WHERE name = %s", (BENCH_MODEL,)
            ).fetchone()[0]  # type: ignore[index]
            # The domain is made here without its index: building it once after loading is several times faster.
            domain_id = conn.execute(
                "INSERT INTO domains (name, embedding_model_id) VALUES (%s, %s) RETURNING id",
                (domain, model_id),
            ).fetchone()[0]  # type: ignore[index]
        started = time.perf_counter()
        vectors = corpus.vectors(count)
        all_terms: list[list[str]] = []
        batch = 10_000
        texts = corpus.texts(count)
        for offset in range(0, count, batch):
            size = min(batch, count - offset)
            with conn.transaction():
                document_id = conn.execute(
                    "INSERT INTO documents (domain_id, external_id, source, content_hash, ingest_signature)"
                    " VALUES (%s, %s, 'synthetic', '\\x00', 'bench') RETURNING id",
                    (domain_id, f"batch-{offset}"),
                ).fetchone()[0]  # type: ignore[index]
                with (
                    conn.cursor() as cursor,
                    cursor.copy(
                        "COPY chunks (document_id, domain_id, ordinal, text, token_count, embedding_model_id,"
                        " embedding, terms) FROM STDIN WITH (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(["int8", "int4", "int4", "text", "int4", "int4", "vector", "text[]"])
                    for row in range(size):
                        text = next(texts)
                        terms = analyzer.terms(text)
                        all_terms.append(terms)
                        copy.write_row(
                            (
                                document_id,
                                domain_id,
                                row,
                                text,
                                len(terms),
                                model_id,
                                vectors[offset + row],
                                terms,
                            )
                        )
            progress(size)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        ensure_domain_index(conn, get_domain(conn, domain), HnswOptions.from_settings(settings))
        conn.execute("UPDATE domains SET generation = generation + 1 WHERE id = %s", (domain_id,))
        conn.execute("ANALYZE chunks")
        index_seconds = time.perf_counter() - started
    return vectors, all_terms, load_seconds, index_seconds


def run_retrieval_bench(
    pool: ConnectionPool,
    settings: Settings,
    searcher: Searcher,
    domain: str,
    count: int,
    queries: int,
    rank_bm25_limit: int,
    progress: Callable[[int], None],
) -> RetrievalBenchResult:
    """Load N synthetic chunks and measure every route, with the references beside them."""
    vectors, all_terms, load_seconds, index_seconds = load_corpus(pool, settings, domain, count, progress)
    texts, query_vectors = SyntheticCorpus(seed=11).queries(queries, vectors)
    result = RetrievalBenchResult(count, queries, round(load_seconds, 2), round(index_seconds, 2))
    result.machine = {"cpus": psutil.cpu_count(), "python": platform.python_version()}

    with pool.connection() as conn:
        found = get_domain(conn, domain)
        # Build the BM25 index before timing; its ids are the chunk ids in insertion order, i.e. vector order.
        chunk_ids = searcher.keyword.current(conn, found).index.ids
    for route in ("semantic", "keyword", "hybrid"):
        samples = []
        for text, vector in zip(texts, query_vectors, strict=True):
            request = SearchRequest(text, domain, route, 10)  # type: ignore[arg-type]
            samples.append(searcher.search(request, vector).total_ms)
        result.routes[route] = _latency(samples)

    # Semantic recall@10 against exact search, and HNSW speed against numpy brute force.
    hits = 0
    brute = []
    with pool.connection() as conn:
        for vector in query_vectors:
            approx = {
                c.chunk_id
                for c in semantic_search(
                    conn, found, vector, 10, {}, settings.ef_search, settings.vector_precision
                )
            }
            started = time.perf_counter()
            exact_rows = np.argpartition(-(vectors @ vector), 10)[:10]
            brute.append((time.perf_counter() - started) * 1000)
            exact_ids = set(chunk_ids[exact_rows].tolist())
            hits += len(approx & exact_ids)
    result.semantic_recall_at_10 = round(hits / (10 * len(query_vectors)), 4)
    result.brute_force_ms_p50 = round(float(np.median(brute)), 3)
    result.hnsw_speedup_vs_brute_force = round(
        result.brute_force_ms_p50 / result.routes["semantic"].p50_ms, 2
    )

    _bench_bm25(result, searcher, pool, found, texts, all_terms, rank_bm25_limit)
    return result


def _bench_bm25(
    result: RetrievalBenchResult,
    searcher: Searcher,
    pool: ConnectionPool,
    domain: Any,
    texts: list[str],
    all_terms: list[list[str]],
    rank_bm25_limit: int,
) -> None:
    """Our BM25 index against rank-bm25 on the same corpus and queries (scores compared too)."""
    with pool.connection() as conn:
        built = searcher.keyword.current(conn, domain)
    analyzer = searcher.keyword.analyzer
    query_terms = [analyzer.terms(text) for text in texts]
    result.bm25_index_ms_p50 = round(
        float(np.median([_time_ms(lambda q=q: built.index.search(q, 10)) for q in query_terms])), 3
    )
    if len(all_terms) > rank_bm25_limit:
        return
    from rank_bm25 import BM25Okapi

    parameters = searcher.keyword.parameters
    reference = BM25Okapi(all_terms, k1=parameters.k1, b=parameters.b, epsilon=parameters.epsilon)
    sample = query_terms[: min(len(query_terms), 20)]
    reference_ms = []
    equal = True
    for terms in sample:
        started = time.perf_counter()
        scores = reference.get_scores(terms)
        top = np.argsort(-scores, kind="stable")[:10]
        reference_ms.append((time.perf_counter() - started) * 1000)
        ours = built.index.search(terms, 10)
        ours_scores = np.array([score for _, score in ours])
        equal = equal and np.allclose(ours_scores, scores[top][: len(ours)], atol=1e-6)
    result.rank_bm25_ms_p50 = round(float(np.median(reference_ms)), 3)
    result.bm25_speedup_vs_rank_bm25 = round(result.rank_bm25_ms_p50 / result.bm25_index_ms_p50, 1)
    result.bm25_scores_equal_rank_bm25 = bool(equal)
