"""`rag-server serve [--demo] [--workers N]`: the HTTP API."""

from __future__ import annotations

import logging
import time

import typer
from psycopg_pool import ConnectionPool
from tqdm import tqdm

from rag_server.cli._common import database, reports_errors, settings
from rag_server.config import Settings

# What serve says (the auth policy, the demo's steps) goes through logging, in RAG_LOG_FORMAT like the rest.
log = logging.getLogger("rag_server.serve")


@reports_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    demo: bool = typer.Option(
        False,
        "--demo/--no-demo",
        envvar="RAG_DEMO",
        help="First ingest the packaged demo corpus into domain 'demo', the default domain of requests "
        "(RAG_DEMO=1 turns it on, as in the Docker image; --no-demo or RAG_DEMO=0 off).",
    ),
    workers: int = typer.Option(
        1,
        min=1,
        max=64,
        envvar="RAG_WORKERS",
        help="Worker processes; they share nothing but the database, so any number serve the same answers.",
    ),
) -> None:
    """Serve the API (OpenAPI docs at /docs) until Ctrl-C or SIGTERM, which let requests in flight finish
    (RAG_SHUTDOWN_GRACE_S)."""
    import logging.config
    import os
    import sys

    import uvicorn

    from rag_server.api.app import SERVER_OPTIONS, create_app
    from rag_server.api.logs import log_config

    current = settings()
    # First of all, so that every line on stderr has the format RAG_LOG_FORMAT asks for (JSON: one object each).
    logging.config.dictConfig(log_config(current))
    current = _auth_policy(current, host, demo)
    if demo:
        ingest_demo(current, port)
        if "default_domain" not in current.model_fields_set:
            # Requests without a domain search the demo, unless RAG_DEFAULT_DOMAIN says otherwise.
            from rag_server.demo import DEMO_DOMAIN

            current = current.model_copy(update={"default_domain": DEMO_DOMAIN})
            # Workers are new processes that read their settings from the environment.
            os.environ["RAG_DEFAULT_DOMAIN"] = DEMO_DOMAIN
    options = {
        **SERVER_OPTIONS,
        "host": host,
        "port": port,
        "log_config": log_config(current),
        "log_level": current.log_level.lower(),
        "access_log": False,  # ours (api/logs.py) names no query string
        "timeout_graceful_shutdown": current.shutdown_grace_s,
    }
    if workers == 1:
        uvicorn.run(create_app(current), **options)
    else:
        # Worker processes are spawned; multiprocessing's resource tracker would print a plain-text warning
        # on shutdown about the locks each worker's progress bars made (it frees them): not a log line.
        sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
        # Each worker builds the app from the environment (create_app() with no settings).
        uvicorn.run("rag_server.api.app:create_app", factory=True, workers=workers, **options)


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _auth_policy(current: Settings, host: str, demo: bool) -> Settings:
    """Keys are needed unless auth is off, which only a server on loopback may be: the demo there turns it off
    by itself (and says so) unless RAG_AUTH_DISABLED is set either way."""
    import os

    from rag_server.errors import ConfigError

    loopback = host in LOOPBACK or host.startswith("127.")
    if demo and loopback and "auth_disabled" not in current.model_fields_set:
        current = current.model_copy(update={"auth_disabled": True})
        os.environ["RAG_AUTH_DISABLED"] = "1"  # for worker processes
    if current.auth_disabled and not loopback:
        raise ConfigError(
            f"RAG_AUTH_DISABLED is for a server on loopback only, not on {host}: create keys instead "
            "(rag-server keys create --name NAME)"
        )
    if current.auth_disabled:
        log.warning("auth is off (loopback only): requests need no API key")
    else:
        log.info("requests need an API key ('Authorization: Bearer KEY'): rag-server keys create --name NAME")
    return current


def ingest_demo(current: Settings, port: int = 8000) -> None:
    """Ingest the demo corpus and tables and train its router (incremental: quick when already there),
    saying on stderr what each step does, with a progress bar on a terminal (the first run takes minutes)."""
    from ingest.pipeline import Ingestion, IngestSummary
    from ingest.tables import import_table_files
    from rag_server.demo import DEMO_DOMAIN, DEMO_TYPES, corpus_dir, table_files, try_commands

    documents = [path for path in corpus_dir().rglob("*") if path.is_file()]
    with database(current) as pool:
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
