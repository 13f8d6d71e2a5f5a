"""`rag-server ask QUESTION`: a cited answer (or an abstention with its reason), streamed to the terminal."""

from __future__ import annotations

import sys
from typing import Any

import typer

from rag_server.cli._common import database, print_json, reports_errors, settings
from rag_server.embedding import get_embedder
from rag_server.errors import ModelError
from rag_server.local_llm import local_model
from rag_server.pipeline import AskRequest, AskResponse, Pipeline
from rag_server.retrieval.search import Searcher
from rag_server.retrieval.types import ROUTES
from rag_server.trace import RequestTrace


@reports_errors
def ask(
    question: str = typer.Argument(..., help="The question."),
    domain: str = typer.Option(None, "--domain", "-d", help="Domain to ask (default: RAG_DEFAULT_DOMAIN)."),
    route: str = typer.Option(
        None, "--route", "-r", help=f"One of {', '.join(ROUTES)} (default: RAG_DEFAULT_ROUTE, the router)."
    ),
    k: int = typer.Option(
        None, "--k", "-k", min=1, max=50, help="Evidence passages (default: RAG_ANSWER_EVIDENCE)."
    ),
    filters: str = typer.Option(
        None, "--filter", help='Document metadata to match, as JSON: \'{"format": "md"}\'.'
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the response as JSON (the body of POST /v1/ask)."
    ),
) -> None:
    """Answer a question from a domain's documents and tables, with citations, or say why it cannot."""
    from rag_server.cli.search import _filters

    current = settings()
    request = AskRequest(
        question=question,
        domain=domain,
        route=route,
        k=k,
        filters=_filters(filters),  # type: ignore[arg-type]
    )
    with local_model(current) as current, database(current) as pool:
        pipeline = Pipeline(Searcher(pool, get_embedder(current), current), current)
        if as_json:
            print_json(pipeline.ask(request).model_dump(mode="json"))
            return
        response = _stream(pipeline, request)
    _print_sources(response)


def _stream(pipeline: Pipeline, request: AskRequest) -> AskResponse:
    """Print the answer as it is written; the sources and costs follow on stderr."""
    for event in pipeline.events(request, RequestTrace()):
        if event.name == "route" and event.data["routing"]:
            routing: dict[str, Any] = event.data["routing"]
            typer.echo(
                f"route: {routing['route']} ({routing['confidence']:.2f}, {routing['decided_by']})", err=True
            )
        elif event.name == "token":
            sys.stdout.write(event.data["text"])
            sys.stdout.flush()
        elif event.name == "error":
            sys.stdout.write("\n")
            raise ModelError(event.data["message"])
        elif event.name == "done":
            sys.stdout.write("\n")
            return AskResponse.model_validate(event.data)
    raise ModelError("the answer ended without a result")


def _print_sources(response: AskResponse) -> None:
    for citation in response.citations:
        mark = "" if citation.supported else "  (unsupported)"
        typer.echo(f"[{citation.number}] {citation.ref}  {citation.title or ''}{mark}", err=True)
    if response.abstained:
        typer.echo(f"abstained: {response.abstention_reason}", err=True)
    usage = response.usage
    stages = ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in response.timings_ms.items())
    typer.echo(
        f"{response.answerer}; answerable {response.answerable:.2f}; {usage.prompt_tokens}+{usage.completion_tokens} "
        f"tokens ({usage.cached_prompt_tokens} cached), ${usage.cost_usd:.6f}; {stages}",
        err=True,
    )
