"""`rag-server serve [--demo]`: the HTTP API."""

from __future__ import annotations

import typer
from psycopg_pool import ConnectionPool

from rag_server.cli._common import database, reports_errors, settings
from rag_server.config import Settings


@reports_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    demo: bool = typer.Option(
        False,
        "--demo",
        help="First ingest the packaged demo corpus into domain 'demo', the default domain of requests.",
    ),
) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import uvicorn

    from rag_server.api.app import create_app

    current = settings()
    if demo:
        ingest_demo(current, port)
        if "default_domain" not in current.model_fields_set:
            # Requests without a domain search the demo, unless RAG_DEFAULT_DOMAIN says otherwise.
            from rag_server.demo import DEMO_DOMAIN

            current = current.model_copy(update={"default_domain": DEMO_DOMAIN})
    uvicorn.run(create_app(current), host=host, port=port, log_level=current.log_level.lower())


def ingest_demo(current: Settings, port: int = 8000) -> None:
    """Ingest the demo corpus (incremental: instant when already there)."""
    from ingest.pipeline import Ingestion
    from ingest.tables import import_table_files
    from rag_server.demo import DEMO_DOMAIN, DEMO_TYPES, corpus_dir, table_files

    with database(current) as pool:
        ingestion = Ingestion.from_settings(pool, current)
        summary = ingestion.run([corpus_dir()], DEMO_DOMAIN)
        tables = import_table_files(pool, ingestion.domain(DEMO_DOMAIN), table_files(), DEMO_TYPES)
        trained = train_demo_router(pool, current)
    for failure in tables["failed"]:
        typer.echo(f"demo table {failure['path']} failed: {failure['reason']}", err=True)
    if trained:
        typer.echo(f"demo router trained: {trained}", err=True)
    curl = f"curl -s localhost:{port}/v1/search -H 'content-type: application/json' -d"
    typer.echo(
        f"demo corpus in domain '{DEMO_DOMAIN}': {summary.documents_added} added, "
        f"{summary.documents_unchanged} unchanged; {len(tables['imported'])} tables. Try:\n"
        f'  {curl} \'{{"query": "what does ERR-4012 mean", "domain": "{DEMO_DOMAIN}"}}\'\n'
        f'  {curl} \'{{"query": "how many refunds were approved per plan in 2025", "domain": "{DEMO_DOMAIN}", '
        f'"route": "sql"}}\'',
        err=True,
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
    model = train_with_default(load_labeled(routing_data()), embedder, 1.0, vocabulary)
    model.metrics.update(source="demo", fingerprint=fingerprint)
    with pool.connection() as conn, conn.transaction():
        version = save_model(conn, domain.id, model)
    return f"v{version}, cross-validated accuracy {model.metrics['cv_accuracy']:.3f}"
