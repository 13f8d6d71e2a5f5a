"""The streaming ingestion pipeline: load -> chunk -> embed in batches -> binary COPY, in one pass.

Three threads keep the embedding model busy, since it is the slowest step:

    loader thread   files -> documents -> skip unchanged (hash lookup) -> chunk + analyze  ─┐ queue (bounded)
    caller thread   batches of ~N chunks -> embedder.embed()                              <─┘ ─┐ queue (2)
    writer thread   one transaction per batch: upsert documents, replace chunks, COPY     <────┘

Memory is bounded by the two queues, whatever the corpus size. Each batch commits whole documents, so a run
killed part-way leaves only complete documents behind and a second run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from ingest.chunkers import Chunker, make_chunker
from ingest.loaders import NO_CONTENT, iter_documents
from ingest.records import LoadFailure, SourceDocument
from ingest.store import PreparedDocument, prune, remove_documents, stored_versions, write_batch
from ingest.tokenizer import HFTokenizer
from rag_server.config import Settings
from rag_server.domains import Domain, HnswOptions, ensure_domain
from rag_server.embedding import Embedder
from rag_server.errors import IngestError
from rag_server.retrieval.analyzer import Analyzer

log = logging.getLogger(__name__)

# How many loaded documents the loader thread looks up in one query.
_LOOKUP_BATCH = 64
# Batches of prepared chunks waiting for the embedder, and embedded batches waiting for the writer.
_PREPARED_QUEUE_BATCHES = 2
_WRITE_QUEUE_BATCHES = 2
# Chunks per embedding call when the embedder does not say its batch size.
_EMBED_SLICE = 64


@dataclass
class IngestSummary:
    """What a run did; `documents_failed` counts the files skipped, `errors` says which and why.

    `documents_removed` counts the documents deleted because their file is now empty (or has no text left),
    `removed` says which.

    While the run goes on, `documents_read` (loaded and compared with the stored version) and
    `chunks_embedded` move as the work happens; the added/updated counts and `chunks_written` move when a
    batch commits.
    """

    domain: str
    documents_read: int = 0
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_failed: int = 0
    documents_pruned: int = 0
    documents_removed: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)
    run_id: int | None = None

    @property
    def documents_seen(self) -> int:
        return self.documents_added + self.documents_updated + self.documents_unchanged

    @property
    def documents_processed(self) -> int:
        """Documents read, failed or removed so far: what a progress bar counts."""
        return self.documents_read + self.documents_failed + self.documents_removed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestOptions:
    """How documents become chunks; defaults come from the settings."""

    chunker: str
    chunk_size: int
    chunk_overlap: int
    batch_chunks: int
    prune: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> IngestOptions:
        values = {
            "chunker": settings.chunker,
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
            "batch_chunks": settings.ingest_batch_chunks,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        options = cls(**values)
        if options.chunk_overlap >= options.chunk_size:
            raise IngestError(
                f"chunk overlap ({options.chunk_overlap}) must be smaller than chunk size ({options.chunk_size})"
            )
        return options


Progress = Callable[[IngestSummary], None]


class _Chunkers:
    """The chunker for each document: `auto` picks the Markdown one for Markdown files."""

    def __init__(self, options: IngestOptions, tokenizer: HFTokenizer) -> None:
        names = ("markdown", "recursive") if options.chunker == "auto" else (options.chunker,) * 2
        self.markdown = make_chunker(names[0], tokenizer, options.chunk_size, options.chunk_overlap)
        self.other = make_chunker(names[1], tokenizer, options.chunk_size, options.chunk_overlap)

    def for_document(self, document: SourceDocument) -> Chunker:
        return self.markdown if document.metadata.get("format") == "md" else self.other


def content_hash(document: SourceDocument) -> bytes:
    """sha256 of everything a loader gave for the document."""
    payload = json.dumps(
        [document.text, document.title, document.metadata], sort_keys=True, ensure_ascii=False, default=str
    )
    return hashlib.sha256(payload.encode()).digest()


# How far into a document its title is looked for before it is prepended to the text.
_TITLE_WINDOW = 300


def with_title(document: SourceDocument) -> SourceDocument:
    """The document with its title as the first line, unless the text already starts with it.

    Records (BEIR, JSON lines) keep the title apart from the text, but it is often what a question names
    (an entity, a product): the first chunk must carry it to be found by either route.
    """
    title = document.title
    # A title cut short (a plain-text file's long first line) ends in an ellipsis the text does not have.
    if not title or title.removesuffix("…").casefold() in document.text[:_TITLE_WINDOW].casefold():
        return document
    text = f"{title}\n\n{document.text}" if document.text.strip() else title
    return replace(document, text=text)


def ingest_signature(options: IngestOptions, analyzer: Analyzer) -> str:
    """The chunking and analysis that make a document's chunks; changing it re-processes every document."""
    return (
        f"chunker={options.chunker}:{options.chunk_size}:{options.chunk_overlap};title=first-line;"
        f"analyzer=v1:{analyzer!r}"
    )


def embedding_tokenizer(embedder: Embedder) -> HFTokenizer:
    """A copy of the embedding model's own tokenizer, so chunk sizes count the tokens the model sees."""
    import tokenizers

    backend = getattr(getattr(embedder, "model", None), "tokenizer", None)
    backend = getattr(backend, "backend_tokenizer", None)
    if backend is None:
        return HFTokenizer.from_model_dir()
    # A copy: HFTokenizer switches truncation off, which must not change the model's own tokenizer.
    return HFTokenizer(tokenizers.Tokenizer.from_str(backend.to_str()))


class Ingestion:
    """One ingestion run of some paths into a domain."""

    def __init__(
        self,
        pool: ConnectionPool,
        embedder: Embedder,
        analyzer: Analyzer,
        options: IngestOptions,
        hnsw: HnswOptions | None = None,
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.analyzer = analyzer
        self.hnsw = hnsw or HnswOptions()
        self.tokenizer = embedding_tokenizer(embedder)
        self.base_options = options
        # The chunk options a domain's promoted tuning replaces in `run` (those not given explicitly).
        self.domain_tuned: frozenset[str] = frozenset()
        self._configure(options)

    def _configure(self, options: IngestOptions) -> None:
        self.options = options
        self.chunkers = _Chunkers(options, self.tokenizer)
        self.signature = ingest_signature(options, self.analyzer)

    @classmethod
    def from_settings(cls, pool: ConnectionPool, settings: Settings, **overrides: Any) -> Ingestion:
        """An ingestion as the settings configure it; `overrides` replace IngestOptions fields.

        The chunk size and overlap not given in `overrides` follow the target domain's promoted tuning
        (`rag-server tune --chunk-sizes`), else the settings.
        """
        from rag_server.embedding import get_embedder
        from rag_server.retrieval.analyzer import configured_analyzer
        from rag_server.retrieval.tuning import CHUNKING

        ingestion = cls(
            pool,
            get_embedder(settings),
            configured_analyzer(settings),
            IngestOptions.from_settings(settings, **overrides),
            HnswOptions.from_settings(settings),
        )
        ingestion.domain_tuned = frozenset(name for name in CHUNKING if overrides.get(name) is None)
        return ingestion

    def _follow_tuning(self, conn: psycopg.Connection[Any], domain: Domain) -> None:
        """Chunk as the domain's promoted tuning says where the options came from the global settings."""
        if not self.domain_tuned:
            return
        from rag_server.retrieval.tuning import tuned_chunking

        tuned = {
            name: value
            for name, value in tuned_chunking(conn, domain.id).items()
            if name in self.domain_tuned
        }
        options = replace(self.base_options, **tuned)
        if options.chunk_overlap >= options.chunk_size:
            raise IngestError(
                f"chunk overlap ({options.chunk_overlap}) must be smaller than domain {domain.name!r}'s tuned "
                f"chunk size ({options.chunk_size})"
            )
        if options != self.options:
            self._configure(options)

    def domain(self, name: str) -> Domain:
        """The domain, created bound to this ingestion's embedding model if new."""
        with self.pool.connection() as conn:
            return ensure_domain(conn, name, self.embedder.name, self.embedder.dimension, self.hnsw)

    def run(self, paths: Sequence[Path], domain_name: str, progress: Progress | None = None) -> IngestSummary:
        """Ingest every document under `paths` into the domain; failures are reported, not raised."""
        started = time.perf_counter()
        missing = [str(path) for path in paths if not Path(path).exists()]
        if missing:
            raise IngestError(f"no such file or directory: {', '.join(missing)}")
        with self.pool.connection() as conn:
            domain = ensure_domain(conn, domain_name, self.embedder.name, self.embedder.dimension, self.hnsw)
            self._follow_tuning(conn, domain)
            run_id = _start_run(conn, domain, paths)
        summary = IngestSummary(domain=domain.name, run_id=run_id)
        try:
            self._stream(paths, domain, summary, progress or (lambda summary: None))
        except BaseException:
            summary.seconds = time.perf_counter() - started
            self._finish_run(summary, "interrupted")
            raise
        summary.seconds = time.perf_counter() - started
        self._finish_run(summary, "finished")
        return summary

    # --- the three stages ---

    def _stream(
        self, paths: Sequence[Path], domain: Domain, summary: IngestSummary, progress: Progress
    ) -> None:
        prepared: queue.Queue[list[PreparedDocument] | BaseException | None] = queue.Queue(
            _PREPARED_QUEUE_BATCHES
        )
        to_write: queue.Queue[tuple[list[PreparedDocument], np.ndarray] | None] = queue.Queue(
            _WRITE_QUEUE_BATCHES
        )
        seen: set[str] = set()
        failed_sources: set[str] = set()
        stop = threading.Event()
        lock = threading.Lock()
        write_error: list[BaseException] = []

        def load() -> None:
            try:
                for batch in self._prepared_batches(
                    paths, domain, summary, seen, failed_sources, lock, progress
                ):
                    if not _put(prepared, batch, stop):
                        return
                _put(prepared, None, stop)
            except BaseException as error:
                _put(prepared, error, stop)

        def write() -> None:
            try:
                with self.pool.connection() as conn:
                    while (item := to_write.get()) is not None:
                        documents, vectors = item
                        result = write_batch(conn, domain, documents, vectors, self.signature)
                        with lock:
                            summary.documents_added += result.added
                            summary.documents_updated += result.updated
                            summary.chunks_written += result.chunks_written
                        progress(summary)
            except BaseException as error:
                write_error.append(error)
                stop.set()
                # Drain so the embedding thread never blocks on a full queue.
                while to_write.get() is not None:
                    pass

        loader = threading.Thread(target=load, name="ingest-loader", daemon=True)
        writer = threading.Thread(target=write, name="ingest-writer", daemon=True)
        loader.start()
        writer.start()
        try:
            while (batch := prepared.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                if stop.is_set():
                    break
                to_write.put((batch, self._embed(batch, summary, lock, progress)))
        finally:
            stop.set()
            to_write.put(None)
            writer.join()
        if write_error:
            raise write_error[0]
        if self.options.prune:
            with self.pool.connection() as conn:
                summary.documents_pruned = prune(conn, domain, seen, failed_sources)
            progress(summary)

    def _embed(
        self, batch: list[PreparedDocument], summary: IngestSummary, lock: threading.Lock, progress: Progress
    ) -> np.ndarray:
        """The batch's chunk vectors, in order, embedded a model batch at a time so that progress moves.

        Chunks go to the model longest first, as sentence-transformers orders one call's texts, so that each
        model batch pads to similar lengths: as fast as one call for the whole batch.
        """
        chunks = [chunk for document in batch for chunk in document.chunks]
        order = sorted(range(len(chunks)), key=lambda index: -chunks[index].token_count)
        size = max(1, int(getattr(self.embedder, "batch_size", _EMBED_SLICE)))
        vectors: np.ndarray | None = None
        for start in range(0, len(order), size):
            indices = order[start : start + size]
            embedded = self.embedder.embed([chunks[index].text for index in indices])
            if vectors is None:
                vectors = np.empty((len(chunks), embedded.shape[1]), dtype=embedded.dtype)
            vectors[indices] = embedded
            with lock:
                summary.chunks_embedded += len(indices)
            progress(summary)
        return vectors if vectors is not None else np.empty((0, self.embedder.dimension), dtype=np.float32)

    def _prepared_batches(
        self,
        paths: Sequence[Path],
        domain: Domain,
        summary: IngestSummary,
        seen: set[str],
        failed_sources: set[str],
        lock: threading.Lock,
        progress: Progress,
    ) -> Iterator[list[PreparedDocument]]:
        """Batches of whole changed documents holding about `batch_chunks` chunks."""
        batch: list[PreparedDocument] = []
        size = 0
        with self.pool.connection() as conn:

            def failed(failure: LoadFailure) -> None:
                self._failed(conn, domain, failure, summary, failed_sources, lock)

            for documents in _groups(iter_documents(paths), _LOOKUP_BATCH, failed):
                for document in self._changed(conn, domain, documents, summary, seen, lock):
                    batch.append(document)
                    size += len(document.chunks)
                    if size >= self.options.batch_chunks:
                        yield batch
                        batch, size = [], 0
                progress(summary)
        if batch:
            yield batch

    def _changed(
        self,
        conn: psycopg.Connection[Any],
        domain: Domain,
        documents: list[SourceDocument],
        summary: IngestSummary,
        seen: set[str],
        lock: threading.Lock,
    ) -> Iterator[PreparedDocument]:
        with conn.transaction():
            stored = stored_versions(conn, domain.id, [document.external_id for document in documents])
        for document in documents:
            with lock:
                summary.documents_read += 1
            if self.options.prune:
                seen.add(document.external_id)
            digest = content_hash(document)
            version = stored.get(document.external_id)
            if version and version.content_hash == digest and version.ingest_signature == self.signature:
                with lock:
                    summary.documents_unchanged += 1
                continue
            chunks = self.chunkers.for_document(document).chunk(with_title(document))
            terms = [self.analyzer.terms(chunk.text) for chunk in chunks]
            yield PreparedDocument(document, digest, chunks, terms)

    def _failed(
        self,
        conn: psycopg.Connection[Any],
        domain: Domain,
        failure: LoadFailure,
        summary: IngestSummary,
        failed_sources: set[str],
        lock: threading.Lock,
    ) -> None:
        """Count a file that did not load, or remove its document if the file has been emptied since."""
        # Left in place, the old version would stay searchable although the file says nothing now.
        if (
            failure.external_id is not None
            and failure.reason in NO_CONTENT
            and remove_documents(conn, domain, [failure.external_id])
        ):
            log.debug("removed %s: now %s", failure.path, failure.reason)
            with lock:
                summary.documents_removed += 1
                summary.removed.append({"path": str(failure.path), "reason": f"now {failure.reason}"})
            return
        log.debug("skipped %s: %s", failure.path, failure.reason)
        failed_sources.add(os.path.abspath(failure.path))
        with lock:
            summary.documents_failed += 1
            summary.errors.append({"path": str(failure.path), "reason": failure.reason})

    def _finish_run(self, summary: IngestSummary, status: str) -> None:
        try:
            with self.pool.connection() as conn:
                _finish_run(conn, summary, status)
        except psycopg.Error as error:
            log.warning("could not record the end of ingestion run %s: %s", summary.run_id, error)


def _groups(
    loaded: Iterator[SourceDocument | LoadFailure], size: int, failed: Callable[[LoadFailure], None]
) -> Iterator[list[SourceDocument]]:
    """Documents in groups of `size`; failures go to `failed` as they come.

    A failure is logged at debug level only: it is in the summary, which the caller reports once. A document
    whose id came earlier in the run is a failure too.
    """
    group: list[SourceDocument] = []
    ids: set[str] = set()
    for item in loaded:
        if isinstance(item, LoadFailure):
            failed(item)
            continue
        if item.external_id in ids:
            # Two versions of one document in one ingest: which is meant is not ours to guess.
            failed(LoadFailure(Path(item.source), f"id {item.external_id!r} again: the first one is kept"))
            continue
        ids.add(item.external_id)
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def _put(target: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put `item` unless the run is stopping; False if it stopped first."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _start_run(conn: psycopg.Connection[Any], domain: Domain, paths: Sequence[Path]) -> int:
    import psutil

    host = socket.gethostname()
    with conn.transaction():
        # Runs of this host whose process is gone were killed part-way: say so.
        running = conn.execute(
            "SELECT id, pid FROM ingestion_runs WHERE status = 'running' AND hostname = %s", (host,)
        ).fetchall()
        dead = [run_id for run_id, pid in running if pid is None or not psutil.pid_exists(pid)]
        if dead:
            conn.execute("UPDATE ingestion_runs SET status = 'interrupted' WHERE id = ANY(%s)", (dead,))
        row = conn.execute(
            "INSERT INTO ingestion_runs (domain_id, paths, pid, hostname) VALUES (%s, %s, %s, %s) RETURNING id",
            (domain.id, [os.path.abspath(path) for path in paths], os.getpid(), host),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _finish_run(conn: psycopg.Connection[Any], summary: IngestSummary, status: str) -> None:
    with conn.transaction():
        conn.execute(
            """UPDATE ingestion_runs SET status = %s, finished_at = now(), documents_added = %s,
                   documents_updated = %s, documents_unchanged = %s, documents_failed = %s,
                   documents_pruned = %s, chunks_written = %s, errors = %s
               WHERE id = %s""",
            (
                status,
                summary.documents_added,
                summary.documents_updated,
                summary.documents_unchanged,
                summary.documents_failed,
                summary.documents_pruned,
                summary.chunks_written,
                json.dumps(summary.errors),
                summary.run_id,
            ),
        )
