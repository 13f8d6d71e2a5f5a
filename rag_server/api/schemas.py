"""What the HTTP API takes and returns, as pydantic models; the CLI's `--json` prints the same ones.

Every body is typed (no free-form objects but the request's metadata filters and a SQL row's values), so
`/openapi.json` documents the real shape. Errors share one shape, `ErrorResponse`, whatever the status.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from rag_server.documents import DocumentInfo
from rag_server.domains import Domain
from rag_server.pipeline.schemas import ModelCallOut, RoutingOut
from rag_server.retrieval.search import MAX_K
from rag_server.retrieval.types import Route, ScoredChunk, SearchResult
from rag_server.validation import CleanStr, Filters


class SearchBody(BaseModel):
    """POST /v1/search: a question to one domain."""

    # A misspelled field ("filter", "top_k") is an error, not a silently unfiltered search.
    model_config = ConfigDict(extra="forbid")

    query: CleanStr = Field(min_length=1, max_length=4000, description="The question or keywords.")
    domain: CleanStr | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Domain to search (default: RAG_DEFAULT_DOMAIN).",
    )
    route: Route | None = Field(
        default=None, description="The route to take; none: RAG_DEFAULT_ROUTE (auto)."
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many chunks.")
    filters: Filters = Field(
        default_factory=dict,
        max_length=50,
        description="Document metadata to match (contained in the document's metadata, jsonb `@>`); "
        "every key must be one some document of the domain has.",
    )


class ChunkOut(BaseModel):
    """One ranked chunk and its document."""

    chunk_id: int
    document_id: int
    external_id: str
    title: str | None
    text: str
    ordinal: int
    heading_path: list[str]
    score: float
    route: str

    @classmethod
    def of(cls, chunk: ScoredChunk) -> ChunkOut:
        return cls(
            chunk_id=chunk.chunk_id,
            document_id=chunk.document_id,
            external_id=chunk.external_id,
            title=chunk.title,
            text=chunk.text,
            ordinal=chunk.ordinal,
            heading_path=list(chunk.heading_path),
            score=chunk.score,
            route=chunk.route,
        )


class Citation(BaseModel):
    """How an answer cites a chunk (`kind` chunk) or the SQL that ran (`kind` table)."""

    kind: str
    ref: str
    title: str | None
    text: str


class SqlAttempt(BaseModel):
    """A statement that failed before the one that ran."""

    sql: str
    error: str


class SqlOut(BaseModel):
    """What the sql route ran and found; `rows` hold JSON values (numbers, strings, dates as ISO text)."""

    sql: str
    columns: list[str]
    rows: list[list[JsonValue]]
    row_count: int
    truncated: bool
    tables: list[str]
    generator: str
    attempts: list[SqlAttempt]
    model_calls: list[ModelCallOut]
    citation: Citation


class SearchResponse(BaseModel):
    """The ranked chunks (and on the sql route the query's rows), with the time each stage took."""

    route: str = Field(description="The route that ran (the router's choice when `auto` was asked).")
    timings_ms: dict[str, float]
    results: list[ChunkOut]
    citations: list[Citation]
    sql: SqlOut | None
    sql_error: str | None = Field(description="Why the sql part of a fan-out found nothing.")
    routing: RoutingOut | None
    model_calls: list[ModelCallOut]
    tuning: str = Field(
        default="defaults", description="The domain's tuning that served: `tuning#ID` or `defaults`."
    )

    @classmethod
    def of(cls, result: SearchResult) -> SearchResponse:
        citations = [chunk.citation() for chunk in result.chunks]
        if result.sql is not None:
            citations.append(result.sql.citation())
        return cls.model_validate(
            {
                "route": result.route,
                "timings_ms": result.timings_ms,
                "results": [ChunkOut.of(chunk) for chunk in result.chunks],
                "citations": citations,
                "sql": result.sql.as_dict() if result.sql else None,
                "sql_error": result.sql_error,
                "routing": result.routing.as_dict() if result.routing else None,
                "model_calls": [call.as_dict() for call in result.model_calls],
                "tuning": result.tuning,
            }
        )


class DomainOut(BaseModel):
    """A domain and the model its chunks are embedded with."""

    name: str
    embedding_model: str
    dimension: int

    @classmethod
    def of(cls, domain: Domain) -> DomainOut:
        return cls(name=domain.name, embedding_model=domain.model.name, dimension=domain.model.dimension)


class DomainsResponse(BaseModel):
    domains: list[DomainOut]


class DocumentOut(BaseModel):
    """A stored document without its chunks; `source` is relative to the folder it was ingested from."""

    id: int
    domain: str
    external_id: str
    source: str = Field(
        description="The file, relative to the folder named at ingestion (never a server path)."
    )
    title: str | None
    metadata: dict[str, JsonValue]
    chunk_count: int
    content_hash: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, document: DocumentInfo) -> DocumentOut:
        return cls(
            id=document.id,
            domain=document.domain,
            external_id=document.external_id,
            source=relative_source(document),
            title=document.title,
            metadata=document.metadata,
            chunk_count=document.chunk_count,
            content_hash=document.content_hash,
            created_at=document.created_at,
            updated_at=document.updated_at,
        )


def relative_source(document: DocumentInfo) -> str:
    """The document's file as the user named it under the ingested folder, not where it lies on the server.

    A file's metadata keeps its path relative to that folder; a JSONL record's does not, so it gets the
    file's name (a record's own id is its external id).
    """
    path = document.metadata.get("path")
    if isinstance(path, str) and document.source.endswith(path):
        return path
    return PurePosixPath(document.source).name


class DocumentsPage(BaseModel):
    """One page of a domain's documents, by external id, and how many it has in all."""

    total: int
    documents: list[DocumentOut]


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]
    version: str


class ErrorDetail(BaseModel):
    """One thing wrong with a request: where (`loc`), what, and a short prefix of the value sent."""

    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str
    input: str | None = Field(default=None, description="The offending value, cut to a short prefix.")


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable, e.g. not_found, validation_error, body_too_large.")
    message: str
    request_id: str = Field(description="The X-Request-ID of the request (sent, or made up by the server).")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every error response of the API, whatever its status."""

    error: ErrorBody


def error_content(code: str, message: str, request_id: str, details: list[ErrorDetail] | None = None) -> Any:
    """The JSON of an error response."""
    body = ErrorBody(code=code, message=message, request_id=request_id, details=details or [])
    return ErrorResponse(error=body).model_dump(mode="json")


class DocumentIn(BaseModel):
    """One document to ingest: its id in the domain, text, and optional title and metadata."""

    model_config = ConfigDict(extra="forbid")

    id: CleanStr = Field(min_length=1, max_length=500)
    text: CleanStr = Field(min_length=1)
    title: CleanStr | None = Field(default=None, max_length=1000)
    metadata: Filters = Field(default_factory=dict, max_length=50)


class DocumentsIn(BaseModel):
    """POST /v1/domains/{domain}/documents (owner keys): documents added or updated (same id) in the domain."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


class IngestOut(BaseModel):
    domain: str
    added: int
    updated: int
    unchanged: int
    failed: int
    chunks_embedded: int
    failures: list[dict[str, str]]


class DeletedOut(BaseModel):
    domain: str
    document_id: str
    deleted: bool = True


class KeyIn(BaseModel):
    """POST /v1/keys (owner keys): a new key of the caller's project."""

    model_config = ConfigDict(extra="forbid")

    name: CleanStr = Field(min_length=1, max_length=200)
    role: Literal["reader", "owner"] = "reader"
    domains: list[CleanStr] | None = Field(default=None, max_length=1000, description="None: every domain.")
    requests_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=1_000_000_000)


class KeyOut(BaseModel):
    """A key as listed: never the key itself (`key` only in the answer that creates it)."""

    id: int
    project: str
    name: str
    prefix: str
    role: str
    domains: list[str] | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = Field(default=None, description="The key, shown once, at creation.")

    @classmethod
    def of(cls, info: Any, key: str | None = None) -> KeyOut:
        return cls(**{**info.__dict__, "key": key})


class KeysOut(BaseModel):
    keys: list[KeyOut]


class FeedbackIn(BaseModel):
    """POST /v1/feedback: was the answer of request `request_id` helpful; optionally which evidence was right."""

    model_config = ConfigDict(extra="forbid")

    request_id: CleanStr = Field(min_length=1, max_length=200)
    helpful: bool
    comment: CleanStr | None = Field(default=None, max_length=4000)
    correct_evidence: list[Annotated[int, Field(ge=1, le=1000)] | CleanStr] | None = Field(
        default=None,
        max_length=100,
        description="Evidence numbers of that answer ([n]) or document ids that held the answer.",
    )


class FeedbackOut(BaseModel):
    id: int


class UsageTotals(BaseModel):
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: float
    cache_hits: int
    abstentions: int
    errors: int


class UsageRowOut(UsageTotals):
    """One day, route (or endpoint, when no route was taken) and key."""

    day: date
    route: str
    key_id: int | None


class BudgetOut(BaseModel):
    month: date
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float
    used: float | None
    alert_at: float
    # Past the alert share of the budget: a notice to act before requests are refused (402).
    alert: bool


class UsageOut(BaseModel):
    """GET /v1/usage: a project's requests and spend by day, route and key, and its month's budget."""

    project: str
    key_id: int | None
    days: int
    totals: UsageTotals
    rows: list[UsageRowOut]
    budget: BudgetOut


def as_json(model: BaseModel) -> Response:
    """A response model we built ourselves, as its JSON: returned as an object, FastAPI would validate it
    once more on the way out (a cached answer spends as long there as in its lookup)."""
    return Response(model.model_dump_json(), media_type="application/json")
