"""What `ask` takes and returns: the same models for HTTP (`/v1/ask`), the CLI's `--json` and the SSE events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from rag_server.retrieval.types import Route
from rag_server.validation import CleanStr, Filters

MAX_QUESTION_CHARS = 4000


class AskRequest(BaseModel):
    """POST /v1/ask."""

    model_config = ConfigDict(extra="forbid")

    question: CleanStr = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    domain: CleanStr | None = Field(default=None, min_length=1, max_length=200)
    # None: the default route (the router, unless RAG_DEFAULT_ROUTE says otherwise).
    route: Route | None = None
    filters: Filters = Field(default_factory=dict, max_length=50)
    # Evidence passages the answer may cite (default RAG_ANSWER_EVIDENCE).
    k: int | None = Field(default=None, ge=1, le=50)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=8000)


class ModelCallOut(BaseModel):
    """One call to the model: what for, tokens, latency and cost."""

    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ms: float
    cost_usd: float
    # provider: the server reported the usage; tiktoken: counted here.
    counted_by: str = "provider"


class RoutingOut(BaseModel):
    """Where the query router sent the question and why."""

    route: str
    confidence: float
    reasons: list[str]
    decided_by: str
    probabilities: dict[str, float]
    fanout_sql: bool
    fanout_documents: bool
    model_calls: list[ModelCallOut]
    before_embedding: bool


class UsageOut(BaseModel):
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model_calls: int


class CitationOut(BaseModel):
    number: int
    ref: str
    kind: str
    document_id: str | None
    title: str | None
    sql: str | None
    span: list[int]
    snippet: str
    supported: bool
    support: float


class EvidenceOut(BaseModel):
    number: int
    kind: Literal["chunk", "table"]
    ref: str
    document_id: str | None
    title: str | None
    text: str
    score: float | None
    route: str
    sql: str | None = None
    columns: list[str] | None = None
    rows: list[list[JsonValue]] | None = None


class AskResponse(BaseModel):
    """An answer with its citations and evidence, or an abstention with its reason; and what it cost."""

    request_id: str
    # hit: replayed from the answer cache (no search, no model call); miss: answered and stored; off.
    cache: Literal["hit", "miss", "off"]
    # On a hit: `exact` (the same normalized question) or `semantic` (RAG_ANSWER_CACHE=semantic: a paraphrase
    # of `cached_question`, whose embedding's cosine with this one is `cache_similarity`).
    cache_match: Literal["exact", "semantic"] | None = None
    cached_question: str | None = None
    cache_similarity: float | None = None
    question: str
    domain: str
    answer: str
    abstained: bool
    abstention_reason: str | None
    # The calibrated probability that the evidence answers the question (1 for a query that found rows).
    answerable: float
    # What `answerable` was computed from (answer.signals.FEATURES).
    signals: dict[str, float]
    answerer: str
    reranker: str
    # The domain's retrieval tuning the search used: `tuning#ID` (`rag-server tunings list`) or `defaults`.
    tuning: str = "defaults"
    citations: list[CitationOut]
    # Citation numbers the answerer wrote that map to no evidence (removed from the answer).
    dropped_citations: int
    unsupported_citations: int
    evidence: list[EvidenceOut]
    routing: RoutingOut | None
    sql_error: str | None
    timings_ms: dict[str, float]
    usage: UsageOut
    model_calls: list[ModelCallOut]
