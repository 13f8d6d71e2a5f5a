"""Setting up the demo: its corpus, tables and router in domain 'demo' (what `serve --demo` and the benchmarks
run first). Incremental: quick when it is already there."""

from __future__ import annotations

import logging
import time

from psycopg_pool import ConnectionPool
from tqdm import tqdm

from rag_server.config import Settings
from rag_server.db import open_pool

log = logging.getLogger("rag_server.demo")


def setup_demo(current: Settings, port: int = 8000) -> None:
    """Ingest the demo corpus and tables and train its router (incremental: quick when already there),
    saying on stderr what each step does, with a progress bar on a terminal (the first run takes minutes)."""
    from ingest.pipeline import Ingestion, IngestSummary
    from ingest.tables import import_table_files
    from rag_server.demo import DEMO_DOMAIN, DEMO_TYPES, corpus_dir, table_files, try_commands

    documents = [path for path in corpus_dir().rglob("*") if path.is_file()]
    with open_pool(current) as pool:
        _step(f"loading the embedding model {current.embedding_model}")
        ingestion = Ingestion.from_settings(pool, current)
        _step(
            f"ingesting {len(documents)} documents into domain '{DEMO_DOMAIN}' (chunking and embedding the new ones)"
        )
        # disable=None: a bar on a terminal only; logs get the step lines.
        with tqdm(total=len(documents), desc="demo corpus", unit=" doc", disable=None) as bar:

            def progress(summary: IngestSummary) -> None:
                bar.n = summary.documents_seen + summary.documents_failed + summary.documents_removed
                bar.set_postfix(chunks=summary.chunks_embedded)

            summary = ingestion.run([corpus_dir()], DEMO_DOMAIN, progress)
        _step(f"{summary.chunks_embedded} chunks embedded in {summary.seconds:.0f} s")
        _step(f"importing {len(table_files())} tables")
        tables = import_table_files(pool, ingestion.domain(DEMO_DOMAIN), table_files(), DEMO_TYPES)
        trained = train_demo_router(pool, current)
    for failure in tables["failed"]:
        log.warning("demo table %s failed: %s", failure["path"], failure["reason"])
    if trained:
        log.info("demo router trained: %s", trained)
    commands = "\n".join(f"  {command}" for command in try_commands(port))
    log.info(
        "demo corpus in domain '%s': %d added, %d unchanged; %d tables. Try:\n%s",
        DEMO_DOMAIN,
        summary.documents_added,
        summary.documents_unchanged,
        len(tables["imported"]),
        commands,
    )


def train_demo_router(pool: ConnectionPool, current: Settings) -> str | None:
    """Train the demo domain's router on its own labeled questions (plus the built-in set), when it has none
    or when the one it has was trained by the demo on other data or code (an upgrade). A model trained with
    `train-router` is kept."""
    from rag_server.demo import DEMO_DOMAIN, routing_data
    from rag_server.domains import get_domain
    from rag_server.embedding import get_embedder
    from rag_server.routing.model import (
        DEFAULT_DATA,
        latest_version,
        load_labeled,
        load_model,
        save_model,
        train_with_default,
        training_fingerprint,
    )
    from rag_server.routing.router import QueryRouter

    embedder = get_embedder(current)
    fingerprint = training_fingerprint(embedder, DEFAULT_DATA, routing_data())
    with pool.connection() as conn:
        domain = get_domain(conn, DEMO_DOMAIN)
        version = latest_version(conn, domain.id)
        if version is not None:
            stored = load_model(conn, domain.id, version).metrics
            if stored.get("source", "demo") != "demo" or stored.get("fingerprint") == fingerprint:
                return None
    vocabulary = QueryRouter(pool, embedder, current).vocabulary(domain)
    rows = load_labeled(routing_data())
    _step(
        f"training the demo router on its {len(rows)} questions and the {len(load_labeled(DEFAULT_DATA))} "
        "built-in ones (embedding them, then 5-fold cross-validation)"
    )
    started = time.monotonic()
    model = train_with_default(rows, embedder, 1.0, vocabulary)
    model.metrics.update(source="demo", fingerprint=fingerprint)
    with pool.connection() as conn, conn.transaction():
        version = save_model(conn, domain.id, model)
    seconds = time.monotonic() - started
    return f"v{version}, cross-validated accuracy {model.metrics['cv_accuracy']:.3f}, in {seconds:.0f} s"


def _step(message: str) -> None:
    """One line on stderr saying what `serve --demo` is doing."""
    log.info("demo: %s", message)
