"""`rag-server tables list|show|register|describe|join|drop`: the sql route's catalog of a domain's tables."""

from __future__ import annotations

from dataclasses import asdict

import typer

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.domains import get_domain
from rag_server.sql.catalog import add_join, describe, drop_table, load_catalog, register_table

app = typer.Typer(
    help="The tables a domain's questions may query (import files with `rag-server ingest`).",
    no_args_is_help=True,
)

DomainOption = typer.Option(..., "--domain", "-d", help="The domain the tables belong to.")


@app.command("list")
@reports_errors
def list_command(
    domain: str = DomainOption, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the domain's tables with their row counts and joins."""
    with database(settings()) as pool, pool.connection() as conn:
        catalog = load_catalog(conn, get_domain(conn, domain))
    if as_json:
        print_json(
            {
                "tables": [
                    {**asdict(table), "columns": [asdict(c) for c in table.columns]}
                    for table in catalog.tables.values()
                ],
                "joins": [asdict(join) for join in catalog.joins],
            }
        )
        return
    for table in catalog.tables.values():
        typer.echo(f"{table.name}\t{table.row_count} rows\t{table.origin}\t{table.description}")
    for join in catalog.joins:
        typer.echo(f"join\t{join}")


@app.command("show")
@reports_errors
def show_command(
    table: str = typer.Argument(..., help="The table's name."), domain: str = DomainOption
) -> None:
    """Show a table's columns: type, description and known values."""
    with database(settings()) as pool, pool.connection() as conn:
        found = load_catalog(conn, get_domain(conn, domain)).table(table)
    typer.echo(
        f"{found.name}: {found.row_count} rows, {found.origin} from {found.source}\n{found.description}"
    )
    for column in found.columns:
        values = ", ".join(str(value) for value in column.sample_values[:10])
        typer.echo(f"  {column.name:<24} {column.data_type:<18} {column.description}  [{values}]")


@app.command("register")
@reports_errors
def register_command(
    relation: str = typer.Argument(
        ..., help="An existing table or view: schema.name (default schema public)."
    ),
    domain: str = DomainOption,
    name: str = typer.Option(None, help="The name questions use (default: the relation's name)."),
    description: str = typer.Option(None, help="What the table holds."),
) -> None:
    """Expose an existing table or view of the database to the domain's sql route (read-only)."""
    with database(settings()) as pool, pool.connection() as conn:
        registered = register_table(conn, get_domain(conn, domain), relation, name, description)
    typer.echo(f"registered {relation} as {registered}")


@app.command("describe")
@reports_errors
def describe_command(
    target: str = typer.Argument(..., help="table or table.column"),
    text: str = typer.Argument(..., help="The description."),
    domain: str = DomainOption,
) -> None:
    """Set the description of a table or a column (the model reads it)."""
    with database(settings()) as pool, pool.connection() as conn:
        describe(conn, get_domain(conn, domain), target, text)
    typer.echo(f"described {target}")


@app.command("join")
@reports_errors
def join_command(
    left: str = typer.Argument(..., help="table.column"),
    right: str = typer.Argument(..., help="table.column"),
    domain: str = DomainOption,
) -> None:
    """Declare a join the generators may use: LEFT = RIGHT."""
    with database(settings()) as pool, pool.connection() as conn:
        join = add_join(conn, get_domain(conn, domain), left, right)
    typer.echo(f"join {join}")


@app.command("drop")
@reports_errors
def drop_command(
    table: str = typer.Argument(..., help="The table's name."), domain: str = DomainOption
) -> None:
    """Remove a table from the catalog (an imported one is dropped from the database too)."""
    with database(settings()) as pool, pool.connection() as conn:
        drop_table(conn, get_domain(conn, domain), table)
    typer.echo(f"dropped {table}")
