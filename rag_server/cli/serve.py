"""`rag-server serve [--demo] [--workers N]`: the HTTP API."""

from __future__ import annotations

import logging

import typer

from rag_server.cli._common import reports_errors, settings
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
    from rag_server.services.demo import setup_demo

    current = settings()
    # First of all, so that every line on stderr has the format RAG_LOG_FORMAT asks for (JSON: one object each).
    logging.config.dictConfig(log_config(current))
    current = _auth_policy(current, host, demo)
    if demo:
        setup_demo(current, port)
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
        from rag_server.api.workers import run_workers

        run_workers(uvicorn.Config("rag_server.api.app:create_app", factory=True, workers=workers, **options))


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
