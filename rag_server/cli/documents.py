"""`rag-server documents list|show|delete`."""

from __future__ import annotations

from dataclasses import asdict

import typer

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.documents import delete_document, document_chunks, get_document, list_documents

app = typer.Typer(help="List, show and delete stored documents.", no_args_is_help=True)

DomainOption = typer.Option(..., "--domain", "-d", help="The domain the documents belong to.")


@app.command("list")
@reports_errors
def list_command(
    domain: str = DomainOption,
    limit: int = typer.Option(100, min=1, max=100_000, help="How many to show."),
    offset: int = typer.Option(0, min=0, help="How many to skip."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a domain's documents by external id."""
    with database(settings()) as pool, pool.connection() as conn:
        total, documents = list_documents(conn, domain, limit, offset)
    if as_json:
        print_json({"total": total, "documents": [asdict(document) for document in documents]})
        return
    for document in documents:
        typer.echo(f"{document.external_id}\t{document.chunk_count} chunks\t{document.title or ''}")
    typer.echo(f"{len(documents)} of {total} documents in {domain}", err=True)


@app.command("show")
@reports_errors
def show_command(
    external_id: str = typer.Argument(..., help="The document's external id."),
    domain: str = DomainOption,
    chunks: bool = typer.Option(False, "--chunks", help="Also print its chunks."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one document (and optionally its chunks)."""
    with database(settings()) as pool, pool.connection() as conn:
        document = get_document(conn, domain, external_id)
        stored = document_chunks(conn, document.id) if chunks else []
    if as_json:
        print_json({**asdict(document), "chunks": [asdict(chunk) for chunk in stored]})
        return
    for key, value in asdict(document).items():
        typer.echo(f"{key:<12} {value}")
    for chunk in stored:
        heading = " > ".join(chunk.heading_path)
        typer.echo(f"\n--- chunk {chunk.ordinal} ({chunk.token_count} tokens) {heading}\n{chunk.text}")


@app.command("delete")
@reports_errors
def delete_command(
    external_ids: list[str] = typer.Argument(..., help="External ids of the documents to delete."),
    domain: str = DomainOption,
) -> None:
    """Delete documents and their chunks."""
    with database(settings()) as pool, pool.connection() as conn:
        for external_id in external_ids:
            delete_document(conn, domain, external_id)
            typer.echo(f"deleted {external_id}")
