"""The `rag-server` command line, one module per command group."""

from __future__ import annotations

import typer

from rag_server.cli import bench, config, documents, ingest

app = typer.Typer(
    name="rag-server",
    help="Hybrid-retrieval RAG server: ingest documents, search them, evaluate and benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ingest")(ingest.ingest)
app.command("config")(config.show_config)
app.add_typer(documents.app, name="documents")
app.add_typer(bench.app, name="bench")


def main() -> None:
    """Entry point of the console script."""
    app()
