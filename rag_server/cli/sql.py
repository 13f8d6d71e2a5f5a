"""`rag-server sql run|examples`: run SQL through the validator and sandbox; manage verified examples."""

from __future__ import annotations

from dataclasses import asdict

import typer

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.domains import get_domain
from rag_server.embedding import get_embedder
from rag_server.sql.examples import delete_example, list_examples
from rag_server.sql.route import SqlRoute

app = typer.Typer(
    help="The sql route: run SQL in the sandbox, manage few-shot examples.", no_args_is_help=True
)
examples = typer.Typer(
    help="Verified question -> SQL examples the model sees as few-shot.", no_args_is_help=True
)
app.add_typer(examples, name="examples")

DomainOption = typer.Option(..., "--domain", "-d", help="The domain whose tables the SQL reads.")


@app.command("run")
@reports_errors
def run_command(
    statement: str = typer.Argument(..., help="One SELECT over the domain's tables."),
    domain: str = DomainOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Validate a statement and run it in the read-only sandbox, as the sql route would."""
    current = settings()
    with database(current) as pool:
        route = SqlRoute(pool, get_embedder(current), current)
        result = route.run_sql(statement, route.catalog(domain)[1])
    if as_json:
        print_json(asdict(result))
        return
    typer.echo(result.sql, err=True)
    typer.echo("\t".join(result.columns))
    for row in result.rows:
        typer.echo("\t".join("" if value is None else str(value) for value in row))


@examples.command("add")
@reports_errors
def add_command(
    question: str = typer.Option(..., "--question", "-q", help="The question."),
    statement: str = typer.Option(..., "--sql", help="Its SQL (validated and run before it is stored)."),
    domain: str = DomainOption,
) -> None:
    """Store a verified question -> SQL pair: the SQL must pass the validator and run in the sandbox."""
    current = settings()
    with database(current) as pool:
        result = SqlRoute(pool, get_embedder(current), current).add_example(domain, question, statement)
    typer.echo(f"stored: {len(result.rows)} rows when verified")


@examples.command("list")
@reports_errors
def list_command(
    domain: str = DomainOption, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the domain's examples."""
    with database(settings()) as pool, pool.connection() as conn:
        found = list_examples(conn, get_domain(conn, domain))
    if as_json:
        print_json([asdict(example) for example in found])
        return
    for example in found:
        typer.echo(f"{example.question}\n    {example.sql}")


@examples.command("delete")
@reports_errors
def delete_command(
    question: str = typer.Argument(..., help="The example's question."), domain: str = DomainOption
) -> None:
    """Delete an example."""
    with database(settings()) as pool, pool.connection() as conn:
        if not delete_example(conn, get_domain(conn, domain), question):
            raise typer.BadParameter(f"no example with that question in {domain}")
    typer.echo("deleted")
