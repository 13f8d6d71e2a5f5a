"""The ingestion benchmark: end-to-end chunks/s against raw encode chunks/s on the same chunks, peak RSS."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from psycopg_pool import ConnectionPool

from ingest.pipeline import Ingestion, IngestOptions
from rag_server.domains import delete_domain, get_domain
from rag_server.embedding import SentenceTransformerEmbedder
from rag_server.retrieval.analyzer import Analyzer


@dataclass
class IngestBenchResult:
    """Figures of one benchmark run; `ratio` is end-to-end over raw encode throughput."""

    corpus: str
    documents: int
    chunks: int
    ingest_seconds: float
    ingest_chunks_per_s: float
    encode_seconds: float
    encode_chunks_per_s: float
    ratio: float
    peak_rss_mb: float
    rss_mb_by_quarter: list[float] = field(default_factory=list)
    batch_chunks: int = 0
    embedding_batch_size: int = 0
    machine: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RssSampler:
    """Samples this process's RSS every few milliseconds while a block runs."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()

    @contextmanager
    def running(self) -> Iterator[_RssSampler]:
        process = psutil.Process()
        thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def _sample(self, process: psutil.Process) -> None:
        while not self._stop.is_set():
            self.samples.append(process.memory_info().rss / 2**20)
            time.sleep(self.every_s)

    def by_quarter(self) -> list[float]:
        """Peak RSS in each quarter of the run: flat means memory does not grow with the corpus."""
        if not self.samples:
            return []
        quarter = max(len(self.samples) // 4, 1)
        return [
            round(max(self.samples[i : i + quarter]), 1)
            for i in range(0, quarter * 4, quarter)
            if self.samples[i : i + quarter]
        ]


def run_ingest_bench(
    pool: ConnectionPool,
    embedder: SentenceTransformerEmbedder,
    analyzer: Analyzer,
    options: IngestOptions,
    corpus: Path,
    domain: str,
) -> IngestBenchResult:
    """Ingest `corpus` into a fresh `domain`, then encode the very same chunks with the bare model."""
    with pool.connection() as conn:
        delete_domain(conn, domain, missing_ok=True)
    embedder.embed(["warm up the model"] * 8)
    sampler = _RssSampler()
    with sampler.running():
        summary = Ingestion(pool, embedder, analyzer, options).run([corpus], domain)
    with pool.connection() as conn:
        found = get_domain(conn, domain)
        texts = [row[0] for row in conn.execute("SELECT text FROM chunks WHERE domain_id = %s", (found.id,))]
        documents_row = conn.execute(
            "SELECT count(*) FROM documents WHERE domain_id = %s", (found.id,)
        ).fetchone()
    started = time.perf_counter()
    embedder.model.encode(
        texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    encode_seconds = time.perf_counter() - started
    ingest_rate = len(texts) / summary.seconds
    encode_rate = len(texts) / encode_seconds
    return IngestBenchResult(
        corpus=str(corpus),
        documents=documents_row[0] if documents_row else 0,
        chunks=len(texts),
        ingest_seconds=round(summary.seconds, 3),
        ingest_chunks_per_s=round(ingest_rate, 1),
        encode_seconds=round(encode_seconds, 3),
        encode_chunks_per_s=round(encode_rate, 1),
        ratio=round(ingest_rate / encode_rate, 3),
        peak_rss_mb=round(max(sampler.samples, default=0.0), 1),
        rss_mb_by_quarter=sampler.by_quarter(),
        batch_chunks=options.batch_chunks,
        embedding_batch_size=embedder.batch_size,
        machine={"cpus": psutil.cpu_count(), "python": platform.python_version()},
    )
