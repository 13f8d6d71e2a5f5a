"""The `rag-server` command line, one module per command group."""

from __future__ import annotations

import typer

from rag_server import __version__
from rag_server.cli import ask, bench, config, documents, evaluate, ingest, router, search, serve, sql, tables
from rag_server.cli import keys as keys_cli
from rag_server.cli import llm as llm_cli
from rag_server.cli import questions as questions_cli
from rag_server.cli import rerank as rerank_cli
from rag_server.cli import tune as tune_cli

app = typer.Typer(
    name="rag-server",
    help="Hybrid-retrieval RAG server: ingest documents and tables, search them, evaluate and benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rag-server {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    # The options of `rag-server` itself, before a command (the app's help text is the Typer's `help`).
    pass


app.command("serve")(serve.serve)
app.command("ingest")(ingest.ingest)
app.command("search")(search.search)
app.command("ask")(ask.ask)
app.command("config")(config.show_config)
app.command("train-router")(router.train_router)
app.command("train-reranker")(rerank_cli.train_reranker)
app.add_typer(rerank_cli.app, name="rerankers")
app.command("tune")(tune_cli.tune)
app.add_typer(tune_cli.app, name="tunings")
app.add_typer(questions_cli.app, name="questions")
app.add_typer(documents.app, name="documents")
app.add_typer(tables.app, name="tables")
app.add_typer(sql.app, name="sql")
app.add_typer(evaluate.app, name="eval")
app.add_typer(bench.app, name="bench")
app.add_typer(llm_cli.app, name="llm")
app.add_typer(keys_cli.keys_app, name="keys")
app.add_typer(keys_cli.projects_app, name="projects")


def main() -> None:
    """Entry point of the console script."""
    app()
