"""`rag-server search QUESTION`: ranked chunks and per-stage timings from any route."""

from __future__ import annotations

import json

import typer

from rag_server.api.schemas import SearchResponse
from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.documents import check_filter_keys
from rag_server.embedding import get_embedder
from rag_server.errors import RetrievalError
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import ROUTES, SearchRequest


@reports_errors
def search(
    query: str = typer.Argument(..., help="The question or keywords."),
    domain: str = typer.Option(
        None, "--domain", "-d", help="Domain to search (default: RAG_DEFAULT_DOMAIN)."
    ),
    route: str = typer.Option(
        None, "--route", "-r", help=f"One of {', '.join(ROUTES)} (default: RAG_DEFAULT_ROUTE, the router)."
    ),
    k: int = typer.Option(10, "--k", "-k", min=1, max=1000, help="How many chunks."),
    filters: str = typer.Option(
        None, "--filter", help='Document metadata to match, as JSON: \'{"format": "md"}\'.'
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search a domain and print the ranked chunks with the time each stage took."""
    current = settings()
    request = SearchRequest(query, domain or current.default_domain, route, k, _filters(filters))  # type: ignore[arg-type]
    with database(current) as pool:
        with pool.connection() as conn:
            check_filter_keys(conn, request.domain, request.filters)
        result = Searcher(pool, get_embedder(current), current).search(request)
    if as_json:
        # The same body as POST /v1/search answers.
        print_json(SearchResponse.of(result).model_dump(mode="json"))
        return
    if result.sql is not None:
        _print_rows(result.sql.sql, result.sql.columns, result.sql.rows, result.sql.truncated)
    for rank, chunk in enumerate(result.chunks, start=1):
        snippet = " ".join(chunk.text.split())[:160]
        typer.echo(f"{rank:>3}. {chunk.score:8.4f}  {chunk.external_id}#{chunk.ordinal}  {snippet}")
    stages = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in result.timings_ms.items())
    if result.routing is not None and result.routing.decided_by != "request":
        routing = result.routing
        typer.echo(
            f"routed to {routing.route} ({routing.confidence:.2f}, {routing.decided_by}): {'; '.join(routing.reasons)}",
            err=True,
        )
    typer.echo(f"{result.route}: {len(result.chunks)} results; {stages}", err=True)


def _print_rows(sql: str, columns: list[str], rows: list[list[object]], truncated: bool) -> None:
    typer.echo(sql, err=True)
    typer.echo("\t".join(columns))
    for row in rows:
        typer.echo("\t".join("" if value is None else str(value) for value in row))
    if truncated:
        typer.echo(f"(first {len(rows)} rows: the row cap RAG_SQL_ROW_CAP cut the rest)", err=True)


def _filters(raw: str | None) -> dict[str, object]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RetrievalError(f"--filter is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RetrievalError('--filter must be a JSON object, e.g. \'{"format": "md"}\'')
    return value
